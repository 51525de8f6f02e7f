using System.Security.Cryptography;
using System.Text;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;
using Mtfm.Engine.Serving;
using Mtfm.Tests.Data;

namespace Mtfm.Tests.Fuzz;

/// <summary>
/// The parsers under fuzzing, each with the one behaviour allowed on any input: success, or its documented exception
/// naming the file (or the request field). Anything else throws <see cref="FuzzFailure"/>, and the input is saved under
/// <c>Mtfm.Tests/Fuzz/Corpus/&lt;target&gt;/</c> (the regression corpus that <see cref="FuzzCorpusTests"/> replays).
/// </summary>
internal static class FuzzTargets
{
    public const string Csv = "csv", Parquet = "parquet", Schema = "schema", Safetensors = "safetensors", Request = "request";
    public static readonly string[] All = [Csv, Parquet, Schema, Safetensors, Request];

    /// <summary>Inputs are cut to this size: every parser is at most linear in its input, so this bounds each run.</summary>
    public const int MaxInputBytes = 8192;

    private static readonly Lazy<DatasetSchema> SchemaOfCsv = new(() => DatasetSchema.Load(DataTestPaths.Malformed("schema.json")));

    // The Parquet seed is written by EventLogWriter, which cannot write hashed features: item_id becomes categorical.
    private static readonly Lazy<DatasetSchema> SchemaOfParquet = new(() => DatasetSchema.Parse(
        File.ReadAllText(DataTestPaths.Malformed("schema.json")).Replace(
            "{ \"name\": \"item_id\", \"kind\": \"hashed\", \"buckets\": 1000 }",
            "{ \"name\": \"item_id\", \"kind\": \"categorical\", \"vocabulary\": [\"i1\", \"i2\", \"i3\"], \"oov\": \"bucket\" }", StringComparison.Ordinal),
        "schema.json (item_id categorical)"));

    public sealed class FuzzFailure(string message, Exception? inner) : Exception(message, inner);

    /// <summary>Valid inputs the mutations start from.</summary>
    public static byte[][] Seeds(string target) => target switch
    {
        Csv => [File.ReadAllBytes(DataTestPaths.Malformed("valid.csv"))],
        Parquet => [ValidParquet()],
        Schema => [File.ReadAllBytes(DataTestPaths.Malformed("schema.json"))],
        Safetensors => [ValidSafetensors()],
        Request => [Encoding.UTF8.GetBytes("""{"user":"u1","scenario":"feed","time":1700000000,"features":{"hour":3},"events":[{"sequence":"click","time":1699990000,"features":{"item_id":"i1","price":2.5}}],"candidates":[{"item_id":"i2"},{"item_id":"i3"}]}""")],
        _ => throw new ArgumentOutOfRangeException(nameof(target), target, null),
    };

    /// <summary>
    /// Campaigns only (<c>MTFM_FUZZ_HANG_SECONDS</c>, unset in CI): an input that gets no answer within this many
    /// seconds is a hang, saved and reported like any failure. CI never times anything.
    /// </summary>
    private static readonly int HangSeconds =
        int.TryParse(Environment.GetEnvironmentVariable("MTFM_FUZZ_HANG_SECONDS"), out int s) && s > 0 ? s : 0;

    /// <summary>Runs <paramref name="target"/> on <paramref name="input"/>; throws <see cref="FuzzFailure"/> on undocumented behaviour.</summary>
    public static void Run(string target, byte[] input, bool saveFailures = true)
    {
        if (HangSeconds == 0)
        {
            RunCore(target, input, saveFailures);
            return;
        }
        var run = Task.Run(() => RunCore(target, input, saveFailures));
        if (!run.Wait(TimeSpan.FromSeconds(HangSeconds)))
        {
            if (saveFailures) Save(target, input);
            throw new FuzzFailure($"no answer within {HangSeconds} s (a hang) on a {input.Length}-byte input", null);
        }
        run.GetAwaiter().GetResult();
    }

    private static void RunCore(string target, byte[] input, bool saveFailures)
    {
        if (input.Length > MaxInputBytes) input = input[..MaxInputBytes];
        string dir = Path.Combine(Path.GetTempPath(), $"mtfm-fuzz-{Environment.ProcessId}-{Environment.CurrentManagedThreadId}");
        Directory.CreateDirectory(dir);
        string file = Path.Combine(dir, target switch { Csv => "events.csv", Parquet => "events.parquet", Schema => "schema.json", Safetensors => "model.safetensors", _ => "request.jsonl" });
        try
        {
            switch (target)
            {
                case Csv:
                    Expect<DataFormatException>(() => CsvEventReader.ReadText(Encoding.UTF8.GetString(input), file, new EventStore(new DataLayout(SchemaOfCsv.Value))), file);
                    break;
                case Parquet:
                    File.WriteAllBytes(file, input);
                    Expect<DataFormatException>(() => ParquetEventReader.Read(file, new EventStore(new DataLayout(SchemaOfParquet.Value))), file);
                    break;
                case Schema:
                    Expect<DataFormatException>(() => DatasetSchema.Parse(Encoding.UTF8.GetString(input), file), file);
                    break;
                case Safetensors:
                    File.WriteAllBytes(file, input);
                    Expect<CheckpointFormatException>(() => SafetensorsFile.Load(file, requireIntegrity: true), file);
                    Expect<CheckpointFormatException>(() => SafetensorsFile.Load(file, requireIntegrity: false), file);
                    break;
                case Request:
                    try { ScoreRequest.Parse(Encoding.UTF8.GetString(input)); }
                    catch (ScoreRequestException e)
                    {
                        if (string.IsNullOrEmpty(e.Field) || !e.Message.StartsWith(e.Field + ": ", StringComparison.Ordinal))
                            throw new FuzzFailure($"ScoreRequestException without its field first: Field '{e.Field}', message '{e.Message}'", e);
                    }
                    catch (Exception e) { throw new FuzzFailure($"undocumented {e.GetType().Name}: {e.Message}", e); }
                    break;
                default: throw new ArgumentOutOfRangeException(nameof(target), target, null);
            }
        }
        catch (FuzzFailure)
        {
            if (saveFailures) Save(target, input);
            throw;
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    private static void Expect<TDocumented>(Action parse, string file) where TDocumented : Exception
    {
        try { parse(); }
        catch (TDocumented e)
        {
            if (!e.Message.Contains(file, StringComparison.Ordinal))
                throw new FuzzFailure($"{typeof(TDocumented).Name} does not name the file '{file}': {e.Message}", e);
        }
        catch (Exception e) { throw new FuzzFailure($"undocumented {e.GetType().Name}: {e.Message}", e); }
    }

    private static int _saved;

    /// <summary>Keeps a failing input (at most 20 per run: shrinking finds many) in the source tree's corpus.</summary>
    internal static void Save(string target, byte[] input)
    {
        if (Interlocked.Increment(ref _saved) > 20) return;
        string? root = CorpusSourceDirectory();
        if (root is null) return;
        string dir = Path.Combine(root, target);
        Directory.CreateDirectory(dir);
        string name = Convert.ToHexStringLower(SHA256.HashData(input))[..16] + ".bin";
        File.WriteAllBytes(Path.Combine(dir, name), input);
    }

    /// <summary>Mtfm.Tests/Fuzz/Corpus in the source tree (found walking up from the test binaries), or null.</summary>
    public static string? CorpusSourceDirectory()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string c = Path.Combine(d.FullName, "Mtfm.Tests", "Fuzz", "Corpus");
            if (Directory.Exists(c)) return c;
        }
        return null;
    }

    private static byte[] ValidParquet()
    {
        var store = new EventStore(new DataLayout(SchemaOfParquet.Value));
        CsvEventReader.Read(DataTestPaths.Malformed("valid.csv"), store);
        string path = Path.Combine(Path.GetTempPath(), $"mtfm-fuzz-seed-{Guid.NewGuid():N}.parquet");
        try
        {
            EventLogWriter.WriteParquet(store, path);
            return File.ReadAllBytes(path);
        }
        finally { File.Delete(path); }
    }

    private static byte[] ValidSafetensors()
    {
        var w = new SafetensorsWriter();
        w.AddFloat32("w", [1f, 2f, 3f, 4f, 5f, 6f], 2, 3);
        w.AddInt32("ids", [7, 8], 2);
        w.AddInt64("step", [9], 1);
        w.SetMetadata("mtfm.format", "fuzz-seed");
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        return ms.ToArray();
    }
}
