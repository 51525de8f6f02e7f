using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Mtfm.Engine.IO;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.IO;

public sealed class SafetensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mtfm-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private readonly float[] _w = Enumerable.Range(0, 12).Select(i => MathF.Sin(i) * 1e3f + 0.1f).Append(float.Epsilon).Append(-0f).Append(float.MaxValue).ToArray();
    private readonly float[] _b = [0.5f, -1.25f, 3f];
    private readonly int[] _ids = [7, -3, int.MaxValue];
    private readonly long[] _counts = [1, long.MinValue, 42, 9_000_000_000];
    private const string Config = "{\"d_model\": 64, \"name\": \"héllo <ünïcode> ✓\"}";

    private string WriteSample(string name = "ck.safetensors")
    {
        var w = new SafetensorsWriter();
        w.AddFloat32("layer0.w", _w, 3, 5);
        w.AddFloat32("layer0.b", _b, 3);
        w.AddInt32("vocab.ids", _ids, 3);
        w.AddInt64("counts", _counts, 2, 2);
        w.AddFloat32("scalar", [2.5f]);
        w.AddFloat32("empty", [], 0, 4);
        w.SetMetadata("config", Config);
        w.SetMetadata("schema", "[\"user_id\", \"item_id\"]");
        string path = Path.Combine(_dir, name);
        w.Save(path);
        return path;
    }

    [Fact]
    public void RoundTrip()
    {
        var f = SafetensorsFile.Load(WriteSample());
        Assert.Equal(_w, f.ReadFloat32("layer0.w"));
        Assert.Equal(_b, f.ReadFloat32("layer0.b"));
        Assert.Equal(_ids, f.ReadInt32("vocab.ids"));
        Assert.Equal(_counts, f.ReadInt64("counts"));
        Assert.Equal([2.5f], f.ReadFloat32("scalar"));
        Assert.Empty(f.ReadFloat32("empty"));
        Assert.Equal(new long[] { 3, 5 }, f.GetInfo("layer0.w").Shape);
        Assert.Empty(f.GetInfo("scalar").Shape);
        Assert.Equal(Config, f.Metadata["config"]);
        Assert.Equal(6, f.Tensors.Count);
        Assert.True(BitConverter.SingleToInt32Bits(f.ReadFloat32("layer0.w")[13]) == BitConverter.SingleToInt32Bits(-0f));
        var dst = new float[3];
        f.CopyFloat32("layer0.b", dst);
        Assert.Equal(_b, dst);
        Assert.Throws<InvalidOperationException>(() => f.ReadInt32("layer0.b"));
        Assert.Contains("no tensor 'nope'", Assert.Throws<KeyNotFoundException>(() => f.GetInfo("nope")).Message);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
    }

    /// <summary>A minimal reader written from the format spec (8-byte LE length, JSON header, raw data), sharing no code with the engine.</summary>
    [Fact]
    public void IndependentCSharpParserReadsTheFile()
    {
        byte[] blob = File.ReadAllBytes(WriteSample());
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(blob);
        Assert.Equal(0UL, (8 + n) % 8);
        int dataStart = 8 + (int)n;
        using var doc = JsonDocument.Parse(blob.AsMemory(8, (int)n));
        var meta = doc.RootElement.GetProperty("__metadata__");
        var spans = new List<(long b, long e)>();
        foreach (var t in doc.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__"))
        {
            string dtype = t.Value.GetProperty("dtype").GetString()!;
            long[] shape = t.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            long b = t.Value.GetProperty("data_offsets")[0].GetInt64(), e = t.Value.GetProperty("data_offsets")[1].GetInt64();
            spans.Add((b, e));
            int size = dtype == "I64" ? 8 : 4;
            Assert.Equal(0, b % size);
            Assert.Equal(shape.Aggregate(1L, (a, d) => a * d) * size, e - b);
            var raw = blob.AsSpan(dataStart + (int)b, (int)(e - b));
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(raw)), meta.GetProperty("mtfm.sha256." + t.Name).GetString());
            switch (t.Name)
            {
                case "layer0.w":
                    Assert.Equal("F32", dtype);
                    Assert.Equal(new long[] { 3, 5 }, shape);
                    for (int i = 0; i < _w.Length; i++) Assert.Equal(BitConverter.SingleToInt32Bits(_w[i]), BinaryPrimitives.ReadInt32LittleEndian(raw[(4 * i)..]));
                    break;
                case "counts":
                    Assert.Equal("I64", dtype);
                    for (int i = 0; i < 4; i++) Assert.Equal(_counts[i], BinaryPrimitives.ReadInt64LittleEndian(raw[(8 * i)..]));
                    break;
                case "vocab.ids":
                    Assert.Equal("I32", dtype);
                    for (int i = 0; i < 3; i++) Assert.Equal(_ids[i], BinaryPrimitives.ReadInt32LittleEndian(raw[(4 * i)..]));
                    break;
            }
        }
        spans.Sort();
        long pos = 0;
        foreach (var (b, e) in spans) { Assert.Equal(pos, b); pos = e; }
        Assert.Equal(blob.Length - dataStart, pos);
        Assert.Equal(Config, meta.GetProperty("config").GetString());
    }

    [Fact]
    public void IndependentPythonReaderReadsTheFile()
    {
        string? python = FindOnPath("python3");
        if (python is null) Assert.Skip("python3 is not on PATH; the standard-library checker cannot run here.");
        string script = Path.Combine(AppContext.BaseDirectory, "IO", "safetensors_check.py");
        Assert.True(File.Exists(script), $"checker script missing at {script}");
        string path = WriteSample();
        string expected = Path.Combine(_dir, "expected.json");
        using (var fs = File.Create(expected))
        using (var j = new Utf8JsonWriter(fs))
        {
            j.WriteStartObject();
            j.WriteStartObject("tensors");
            void Tensor(string name, string dtype, long[] shape, IEnumerable<long> values)
            {
                j.WriteStartObject(name);
                j.WriteString("dtype", dtype);
                j.WriteStartArray("shape"); foreach (var d in shape) j.WriteNumberValue(d); j.WriteEndArray();
                j.WriteStartArray("values"); foreach (var v in values) j.WriteNumberValue(v); j.WriteEndArray();
                j.WriteEndObject();
            }
            static IEnumerable<long> Bits(float[] x) => x.Select(v => (long)BitConverter.SingleToUInt32Bits(v));
            Tensor("layer0.w", "F32", [3, 5], Bits(_w));
            Tensor("layer0.b", "F32", [3], Bits(_b));
            Tensor("vocab.ids", "I32", [3], _ids.Select(v => (long)v));
            Tensor("counts", "I64", [2, 2], _counts);
            Tensor("scalar", "F32", [], Bits([2.5f]));
            Tensor("empty", "F32", [0, 4], []);
            j.WriteEndObject();
            j.WriteStartObject("metadata");
            j.WriteString("config", Config);
            j.WriteEndObject();
            j.WriteEndObject();
        }
        var (code, output) = Run(python!, script, path, expected);
        Assert.True(code == 0, $"python checker failed ({code}): {output}");
        Assert.Contains("OK 6 tensors", output);
        // And it is a real check: a corrupted data byte makes it fail.
        var blob = File.ReadAllBytes(path);
        blob[^5] ^= 0x10;
        File.WriteAllBytes(path, blob);
        (code, output) = Run(python!, script, path, expected);
        Assert.NotEqual(0, code);
        Assert.Contains("FAIL", output);
    }

    private static (int, string) Run(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string o = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, o);
    }

    private static string? FindOnPath(string exe) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, exe)).FirstOrDefault(File.Exists);

    private static CheckpointFormatException Refused(string path, bool requireIntegrity = true)
    {
        var e = Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Load(path, requireIntegrity));
        Assert.Contains(path, e.Message);
        Assert.Equal(path, e.FilePath);
        return e;
    }

    [Fact]
    public void TruncatedFilesAreRefused()
    {
        string path = WriteSample();
        var blob = File.ReadAllBytes(path);
        int headerLen = (int)BinaryPrimitives.ReadUInt64LittleEndian(blob);
        foreach (int keep in new[] { blob.Length - 1, blob.Length - 40, 8 + headerLen + 3, 8 + headerLen / 2, 5 })
        {
            File.WriteAllBytes(path, blob.AsSpan(0, keep).ToArray());
            var e = Refused(path);
            Assert.Contains("truncated", e.Message);
        }
    }

    [Fact]
    public void FlippedDataByteIsRefusedNamingTheTensor()
    {
        string path = WriteSample();
        var blob = File.ReadAllBytes(path);
        blob[^1] ^= 0x01; // last byte: inside the last F32 tensor in the layout
        File.WriteAllBytes(path, blob);
        var e = Refused(path);
        Assert.Contains("SHA-256 mismatch", e.Message);
        Assert.Contains("the data is corrupted", e.Message);
    }

    [Fact]
    public void FlippedHeaderByteInMetadataValueIsRefused()
    {
        string path = WriteSample();
        var blob = File.ReadAllBytes(path);
        int at = IndexOf(blob, "d_model");
        blob[at] ^= 0x01; // 'd' → 'e': still valid JSON
        File.WriteAllBytes(path, blob);
        var e = Refused(path);
        Assert.Contains("header SHA-256 mismatch", e.Message);
    }

    [Fact]
    public void EveryFlippedHeaderByteIsRefused()
    {
        string path = WriteSample();
        var blob = File.ReadAllBytes(path);
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(blob);
        for (int i = 0; i < headerEnd; i++)
        {
            foreach (byte mask in new byte[] { 0x01, 0x20 })
            {
                var copy = (byte[])blob.Clone();
                copy[i] ^= mask;
                File.WriteAllBytes(path, copy);
                Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Load(path));
            }
        }
    }

    private static int IndexOf(byte[] blob, string s)
    {
        var needle = Encoding.UTF8.GetBytes(s);
        int i = blob.AsSpan().IndexOf(needle);
        Assert.True(i >= 0);
        return i;
    }

    /// <summary>Writes a file with a hand-made header (no integrity records) and the given data size.</summary>
    private string Handmade(string headerJson, int dataBytes, bool pad = true)
    {
        var h = Encoding.UTF8.GetBytes(headerJson);
        int n = pad ? (h.Length + 7) & ~7 : h.Length;
        var blob = new byte[8 + n + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(blob, (ulong)n);
        h.CopyTo(blob, 8);
        blob.AsSpan(8 + h.Length, n - h.Length).Fill((byte)' ');
        string path = Path.Combine(_dir, $"hand-{Guid.NewGuid():N}.safetensors");
        File.WriteAllBytes(path, blob);
        return path;
    }

    [Fact]
    public void ForeignFileWithoutIntegrityLoadsOnlyWhenAllowed()
    {
        string path = Handmade("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}}", 16, pad: false);
        Assert.Contains("mtfm.header_sha256", Refused(path).Message);
        var f = SafetensorsFile.Load(path, requireIntegrity: false);
        Assert.Equal(new float[2], f.ReadFloat32("a"));
        Assert.Equal(new long[1], f.ReadInt64("b"));
    }

    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20, "gap")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "run past")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "data section holds 12")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "needs 12")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "end before they begin")]
    [InlineData("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "dtype 'BF16'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "non-negative integer")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "unexpected or repeated field 'x'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "no data_offsets")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "twice")]
    [InlineData("{\"__metadata__\":{\"k\":1}}", 0, "expected a string")]
    [InlineData("[1,2]", 0, "expected an object")]
    [InlineData("{\"a\": nonsense", 0, "not valid JSON")]
    public void MalformedHeadersAreRefusedWithAReason(string header, int dataBytes, string reason)
    {
        string path = Handmade(header, dataBytes);
        var e = Refused(path, requireIntegrity: false);
        Assert.Contains(reason, e.Message);
    }

    [Fact]
    public void HeaderLengthBeyondFileIsRefused()
    {
        string path = Path.Combine(_dir, "bad.safetensors");
        var blob = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(blob, 1UL << 40);
        File.WriteAllBytes(path, blob);
        Assert.Contains("exceeds the limit", Refused(path).Message);
        BinaryPrimitives.WriteUInt64LittleEndian(blob, 100);
        File.WriteAllBytes(path, blob);
        Assert.Contains("runs past the end", Refused(path).Message);
    }

    [Fact]
    public void SaveReplacesAtomicallyAndLeavesNoTemporaryFiles()
    {
        string path = WriteSample();
        var w = new SafetensorsWriter();
        w.AddFloat32("only", [1f, 2f], 2);
        w.Save(path);
        var f = SafetensorsFile.Load(path);
        Assert.Single(f.Tensors);
        Assert.Equal(new[] { Path.GetFileName(path) }, Directory.GetFiles(_dir).Select(Path.GetFileName).ToArray());
        // A failing rename (target is a directory) leaves no temporary file behind.
        string dirTarget = Path.Combine(_dir, "is-a-dir");
        Directory.CreateDirectory(dirTarget);
        Assert.ThrowsAny<IOException>(() => w.Save(dirTarget));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
        Assert.Throws<DirectoryNotFoundException>(() => w.Save(Path.Combine(_dir, "missing", "x.safetensors")));
    }

    [Fact]
    public void WriterRejectsBadInput()
    {
        var w = new SafetensorsWriter();
        Assert.Contains("holds 6", Assert.Throws<ArgumentException>(() => w.AddFloat32("a", new float[5], 2, 3)).Message);
        w.AddFloat32("a", new float[6], 2, 3);
        Assert.Contains("already added", Assert.Throws<ArgumentException>(() => w.AddFloat32("a", new float[1])).Message);
        Assert.Throws<ArgumentException>(() => w.AddFloat32("__metadata__", new float[1]));
        Assert.Contains("reserved", Assert.Throws<ArgumentException>(() => w.SetMetadata("mtfm.sha256.a", "x")).Message);
        Assert.Contains("shape[0] = -1", Assert.Throws<ArgumentException>(() => w.AddInt32("b", [], -1)).Message);
    }
}

public sealed class OptimizerStateIOTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mtfm-opt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void OptimizerStateRoundTripsAndResumesIdentically()
    {
        var opt = new Mtfm.Engine.Training.AdamOptions { WeightDecay = 0.01f };
        var p = new float[] { 1, -2, 3, 0.5f, 7 };
        var dense = new Mtfm.Engine.Training.AdamWState(5);
        dense.Update(p, [0.1f, 0.2f, -0.3f, 0.4f, 0], 0.01f, opt);
        dense.Update(p, [0.2f, -0.1f, 0.3f, 0, 1], 0.01f, opt);
        var table = new float[4 * 3];
        var sparse = new Mtfm.Engine.Training.RowSparseAdamState(4, 3);
        sparse.Update(table, [1, 3], [1, 2, 3, 4, 5, 6], 0.1f, opt);

        var w = new SafetensorsWriter();
        w.AddFloat32("p", p, 5);
        w.AddFloat32("emb", table, 4, 3);
        OptimizerStateIO.Add(w, "p", dense);
        OptimizerStateIO.Add(w, "emb", sparse);
        string path = Path.Combine(_dir, "ck.safetensors");
        w.Save(path);

        var f = SafetensorsFile.Load(path);
        var dense2 = OptimizerStateIO.ReadAdamW(f, "p", 5);
        var sparse2 = OptimizerStateIO.ReadRowSparseAdam(f, "emb", 4, 3);
        Assert.Equal(2, dense2.Step);
        Assert.Equal(new[] { 0, 1, 0, 1 }, sparse2.RowSteps);
        // Continuing from the restored state gives the same bits as continuing from the original.
        var p2 = f.ReadFloat32("p");
        var t2 = f.ReadFloat32("emb");
        dense.Update(p, [1, 1, 1, 1, 1], 0.01f, opt);
        dense2.Update(p2, [1, 1, 1, 1, 1], 0.01f, opt);
        sparse.Update(table, [3], [1, 1, 1], 0.1f, opt);
        sparse2.Update(t2, [3], [1, 1, 1], 0.1f, opt);
        Assert.Equal(p, p2);
        Assert.Equal(table, t2);
        var e = Assert.Throws<CheckpointFormatException>(() => OptimizerStateIO.ReadAdamW(f, "p", 6));
        Assert.Contains("expected F32 with 6", e.Message);
        Assert.Contains("missing", Assert.Throws<CheckpointFormatException>(() => OptimizerStateIO.ReadAdamW(f, "q", 5)).Message);
    }
}
