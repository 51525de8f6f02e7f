using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using CsCheck;
using Mtfm.Cli.Serving;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;
using Mtfm.Engine.Serving;
using Mtfm.Tests.Serving;

namespace Mtfm.Tests.Fuzz;

/// <summary>
/// The HTTP endpoint fuzzed: mutations of valid score requests (one request and an array of two) and random bytes
/// are POSTed to <c>/v1/score</c> of a real Kestrel on loopback. Every answer must be 200 with scores, or 400/413 with
/// the documented JSON error (<c>error</c> starting with its <c>field</c>); never 5xx, never a dropped connection, and
/// the service must still score a valid request afterwards. Failing inputs are kept in <c>Fuzz/Corpus/http</c> and
/// replayed first. Bounded by iterations and the body limit, never by time; <c>MTFM_FUZZ_ITER</c> /
/// <c>MTFM_FUZZ_SEED</c> as for <see cref="FuzzTests"/>.
/// </summary>
public sealed class ServeFuzzTests : IClassFixture<ServingFixture>, IDisposable
{
    public const string Target = "http";
    private readonly ServingFixture _fx;
    private readonly string _dir = Directory.CreateTempSubdirectory("mtfm-serve-fuzz-").FullName;
    private readonly HttpClient _http = new();

    public ServeFuzzTests(ServingFixture fx) => _fx = fx;

    public void Dispose()
    {
        _http.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private async Task<ServeHost> Start()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "m"));
        using (var backend = new CpuBackend(1))
        using (var model = new MtfmModel(backend, MtfmConfig.Tiny, _fx.Store.Layout, seed: 11))
            MtfmCheckpoint.Save(Path.Combine(_dir, "m", "model.safetensors"), model, _fx.Stats);
        return await ServeHost.StartAsync(new ServeOptions
        {
            Model = Path.Combine(_dir, "m"), Port = 0, Threads = 1, QueueCapacity = 16, MaxBodyBytes = 16 * 1024,
            MaxCandidates = 16, MaxEvents = 64, MaxRequestsPerCall = 4, ContextCacheMb = 4,
        });
    }

    private byte[][] Seeds()
    {
        var schema = _fx.Store.Layout.Schema;
        long t = schema.Split!.TestStart + 3600;
        string one = SyntheticRequests.Make(schema, "groupbuy", t, 6, 2, 3, "u1", 1).ToJson();
        string other = SyntheticRequests.Make(schema, "feed", t, 4, 1, 2, "u\u00e9", 2).ToJson();
        return [Encoding.UTF8.GetBytes(one), Encoding.UTF8.GetBytes($"[{one},{other}]")];
    }

    /// <summary>Posts <paramref name="body"/>; throws <see cref="FuzzTargets.FuzzFailure"/> on an undocumented answer.</summary>
    private async Task Check(ServeHost host, byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        HttpResponseMessage msg;
        try
        {
            msg = await _http.PostAsync(new Uri(host.Address, "/v1/score"), content, TestContext.Current.CancellationToken);
        }
        catch (HttpRequestException e)
        {
            throw new FuzzTargets.FuzzFailure($"the connection failed: {e.Message}", e);
        }
        string text = await msg.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        int code = (int)msg.StatusCode;
        try
        {
            using var doc = JsonDocument.Parse(text);
            var root = doc.RootElement;
            if (code == 200)
            {
                bool ok = root.ValueKind == JsonValueKind.Array
                    ? root.EnumerateArray().All(r => r.TryGetProperty("scores", out _))
                    : root.TryGetProperty("scores", out _);
                if (!ok) throw new FuzzTargets.FuzzFailure($"200 without scores: {text}", null);
            }
            else if (code is 400 or 413)
            {
                string error = root.GetProperty("error").GetString() ?? "";
                string field = root.GetProperty("field").GetString() ?? "";
                if (field.Length == 0 || !error.StartsWith(field, StringComparison.Ordinal) && !error.Contains(field + ": ", StringComparison.Ordinal))
                    throw new FuzzTargets.FuzzFailure($"{code} whose error does not name its field '{field}': {error}", null);
            }
            else throw new FuzzTargets.FuzzFailure($"undocumented status {code}: {text}", null);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new FuzzTargets.FuzzFailure($"status {code} with a body that is not the documented JSON: {text}", e);
        }
    }

    private static IEnumerable<byte[]> Corpus()
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "Fuzz", "Corpus", Target);
        return Directory.Exists(dir) ? Directory.EnumerateFiles(dir, "*.bin").Order(StringComparer.Ordinal).Select(File.ReadAllBytes) : [];
    }

    [Fact]
    public async Task ScoreEndpointAnswersEveryBodyWithScoresOrADocumentedError()
    {
        await using var host = await Start();
        var seeds = Seeds();
        foreach (var s in seeds) await Check(host, s); // the seeds themselves score
        foreach (var input in Corpus()) await Check(host, input);
        var bad = await _http.PostAsync(new Uri(host.Address, "/v1/score"), new ByteArrayContent([(byte)'[', (byte)'"', 0xFF, (byte)'"', (byte)']']), TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("request: the body is not valid UTF-8", await bad.Content.ReadAsStringAsync(TestContext.Current.CancellationToken), StringComparison.Ordinal);

        var gen = Gen.Frequency((6, FuzzTests.Mutated(seeds)), (1, Gen.Byte.Array[0, 512]));
        await gen.SampleAsync(async input =>
        {
            try { await Check(host, input); }
            catch (FuzzTargets.FuzzFailure) { FuzzTargets.Save(Target, input); throw; }
        }, iter: FuzzTests.Iterations(600), threads: 1, seed: FuzzTests.Seed("0N0XIzNsQ0O2"));

        await Check(host, seeds[0]);
        Assert.Equal(0, host.Metrics.Count(500));
        Assert.True(host.Metrics.Count(200) >= seeds.Length + 1, "the valid seeds were not scored");
    }
}
