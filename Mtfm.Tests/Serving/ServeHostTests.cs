using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Mtfm.Cli.Serving;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;
using Mtfm.Engine.Serving;

namespace Mtfm.Tests.Serving;

/// <summary><c>mtfm serve</c> against a real Kestrel on loopback (port 0), tiny random-init checkpoints of the synthetic schema.</summary>
public sealed class ServeHostTests : IClassFixture<ServingFixture>, IDisposable
{
    private readonly ServingFixture _fx;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "mtfm-serve-" + Guid.NewGuid().ToString("N"));
    private readonly HttpClient _http = new();
    private readonly DatasetSchema _schema;

    public ServeHostTests(ServingFixture fx)
    {
        _fx = fx;
        _schema = fx.Store.Layout.Schema;
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        _http.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private string SaveModel(string name, ulong seed)
    {
        string run = Path.Combine(_dir, name);
        Directory.CreateDirectory(run);
        using var backend = new CpuBackend(1);
        using var model = new MtfmModel(backend, MtfmConfig.Tiny, _fx.Store.Layout, seed: seed);
        MtfmCheckpoint.Save(Path.Combine(run, "model.safetensors"), model, _fx.Stats);
        return run;
    }

    private static Task<ServeHost> Start(string model, int queue = 64, long maxBody = 1 << 20, int maxCandidates = 200, int maxEvents = 500) =>
        ServeHost.StartAsync(new ServeOptions
        {
            Model = model, Port = 0, Threads = 1, QueueCapacity = queue, MaxBodyBytes = maxBody, MaxCandidates = maxCandidates, MaxEvents = maxEvents,
            MaxRequestsPerCall = 8, ContextCacheMb = 16,
        });

    private long Time => _schema.Split!.TestStart + 3600;

    private string Request(string scenario, int candidates, int seed = 1, string user = "u1", int history = 30, int realtime = 6) =>
        SyntheticRequests.Make(_schema, scenario, Time, history, realtime, candidates, user, seed).ToJson();

    private async Task<(HttpStatusCode Status, string Body, HttpResponseMessage Msg)> Post(ServeHost host, string path, string body)
    {
        var msg = await _http.PostAsync(new Uri(host.Address, path), new StringContent(body, Encoding.UTF8, "application/json"), TestContext.Current.CancellationToken);
        return (msg.StatusCode, await msg.Content.ReadAsStringAsync(TestContext.Current.CancellationToken), msg);
    }

    private static string Mutate(string json, Action<JsonObject> edit)
    {
        var node = JsonNode.Parse(json)!.AsObject();
        edit(node);
        return node.ToJsonString();
    }

    [Fact]
    public async Task EveryBadRequestOfTheDocsIsAnswered4xxNamingTheField()
    {
        await using var host = await Start(SaveModel("m", 3), maxBody: 64 * 1024, maxCandidates: 20, maxEvents: 50);
        string ok = Request("groupbuy", 3);
        var cases = new (string Body, int Status, string Message)[]
        {
            ("{\"user\": tru", 400, "user: invalid JSON"),
            ("[1, 2", 400, "request: invalid JSON"),
            ("42", 400, "request: expected a JSON object"),
            (Mutate(ok, o => o["time"] = "soon"), 400, "time: wrong JSON type"),
            (Mutate(ok, o => o["events"] = 3), 400, "events: "),
            (Mutate(ok, o => o["userid"] = "x"), 400, "userid: unknown field"),
            (Mutate(ok, o => o.Remove("user")), 400, "user: missing or empty"),
            (Mutate(ok, o => o.Remove("scenario")), 400, "scenario: missing or empty"),
            (Mutate(ok, o => o.Remove("time")), 400, "time: missing (unix seconds expected)"),
            (Mutate(ok, o => o["scenario"] = "x"), 400, "scenario: 'x' is unknown (scenarios: feed, groupbuy, coupon)"),
            (Mutate(ok, o => o["candidates"] = new JsonArray()), 400, "candidates: missing or empty"),
            (Mutate(ok, o => o["candidates"]![1]!.AsObject().Remove("price")), 400, "candidates[1].price: missing (scenario 'groupbuy' needs"),
            (Mutate(ok, o => o["candidates"]![0]!["brand"] = 1), 400, "candidates[0].brand: not a feature of scenario 'groupbuy'"),
            (Mutate(ok, o => { o["features"] = new JsonObject { ["user_id"] = 1 }; }), 400, "candidates[0].user_id: also given in the request's features"),
            (Mutate(ok, o => o["candidates"]![2]!["item_id"] = "abc"), 400, "candidates[2].item_id: 'abc' is not an integer (id feature 'item_id')"),
            (Mutate(ok, o => o["candidates"]![1]!["price"] = "NaN"), 400, "candidates[1].price: non-finite numeric value 'NaN'"),
            (Mutate(ok, o => o["candidates"]![1]!["price"] = "cheap"), 400, "candidates[1].price: 'cheap' is not a number"),
            (Mutate(ok, o => o["candidates"]![0]!["shop_id"] = null), 400, "candidates[0].shop_id: expected a string or number, got null"),
            (Mutate(ok, o => o["events"]![1]!["sequence"] = "view"), 400, "events[1].sequence: 'view' is unknown (sequences: click, order)"),
            (Mutate(ok, o => o["events"]![0]!.AsObject().Remove("sequence")), 400, "events[0].sequence: missing or empty"),
            (Mutate(ok, o => o["events"]![1]!.AsObject().Remove("time")), 400, "events[1].time: missing (unix seconds expected)"),
            (Mutate(ok, o => o["events"]![0]!["features"]!.AsObject().Remove("category")), 400, "events[0].features.category: missing (sequence 'click' needs"),
            (Mutate(ok, o => o["events"]![0]!["features"]!["price"] = 1), 400, "events[0].features.price: not a feature of sequence 'click'"),
            ($"[{ok},{Mutate(ok, o => o["candidates"]![0]!["item_id"] = "abc")}]", 400, "[1].candidates[0].item_id: 'abc' is not an integer"),
            ("[]", 400, "request: empty array"),
            (Request("groupbuy", 21), 413, "candidates: 21 candidates exceed the limit of 20 (--max-candidates)"),
            (Request("groupbuy", 2, history: 60, realtime: 0), 413, "events: 60 events exceed the limit of 50 (--max-events)"),
            ("[" + string.Join(",", Enumerable.Repeat(Request("feed", 1, history: 2, realtime: 1), 9)) + "]", 413, "9 requests in one call exceed the limit of 8 (--max-requests-per-call)"),
            (Mutate(ok, o => o["user"] = new string('x', 70 * 1024)), 413, "exceeds the limit of 65536 bytes (--max-body-bytes)"),
        };
        foreach (var (body, status, message) in cases)
        {
            var (code, text, _) = await Post(host, "/v1/score", body);
            Assert.True(status == (int)code, $"expected {status} for {message}, got {(int)code}: {text}");
            var err = JsonNode.Parse(text)!;
            Assert.Contains(message, err["error"]!.GetValue<string>(), StringComparison.Ordinal);
            Assert.False(string.IsNullOrEmpty(err["field"]!.GetValue<string>()));
        }
        var good = await Post(host, "/v1/score", ok);
        Assert.Equal(HttpStatusCode.OK, good.Status);
        Assert.Equal(3, JsonNode.Parse(good.Body)!["scores"]!.AsArray().Count);
        Assert.Equal(1, host.Metrics.Count(200) - 0);
        Assert.Equal(cases.Count(c => c.Status == 413), host.Metrics.Count(413));
    }

    [Fact]
    public async Task ConcurrentRequestsAreMicroBatchedAndScoreExactlyLikeSequentialOnes()
    {
        await using var host = await Start(SaveModel("m", 5));
        var bodies = new List<string>();
        for (int i = 0; i < 12; i++)
            bodies.Add(Request(i % 3 == 2 ? "feed" : "groupbuy", 1 + (i * 7) % 23, seed: i, user: $"u{i}", history: 5 + 4 * i, realtime: i % 4));
        var sequential = new List<string>();
        foreach (var b in bodies)
        {
            var r = await Post(host, "/v1/score", b);
            Assert.Equal(HttpStatusCode.OK, r.Status);
            sequential.Add(r.Body);
        }
        // Hold the worker, queue every request, then let it take them: they are scored as one micro-batch per scenario.
        var gate = new SemaphoreSlim(0);
        host.Service.WorkerGate = gate;
        var wake = Post(host, "/v1/score", Request("coupon", 1));                 // the worker takes this one after the gate opens
        while (host.Service.QueueDepth < 1) await Task.Delay(5, TestContext.Current.CancellationToken);
        var posts = bodies.Select(b => Post(host, "/v1/score", b)).ToList();
        while (host.Service.QueueDepth < bodies.Count + 1) await Task.Delay(5, TestContext.Current.CancellationToken);
        long batchesBefore = host.Service.Batches;
        host.Service.WorkerGate = null;
        gate.Release(2);
        Assert.Equal(HttpStatusCode.OK, (await wake).Status);
        var concurrent = await Task.WhenAll(posts);
        for (int i = 0; i < bodies.Count; i++)
        {
            Assert.Equal(HttpStatusCode.OK, concurrent[i].Status);
            Assert.Equal(sequential[i], concurrent[i].Body);
        }
        Assert.Equal(3, host.Service.Batches - batchesBefore);                   // coupon, groupbuy, feed: 13 requests in 3 forwards
    }

    [Fact]
    public async Task AFullQueueIsAnswered503WithRetryAfter()
    {
        await using var host = await Start(SaveModel("m", 6), queue: 3);
        var gate = new SemaphoreSlim(0);
        host.Service.WorkerGate = gate;
        var held = Enumerable.Range(0, 3).Select(i => Post(host, "/v1/score", Request("feed", 2, seed: i))).ToList();
        while (host.Service.QueueDepth < 3) await Task.Delay(5, TestContext.Current.CancellationToken);
        var refused = await Post(host, "/v1/score", Request("feed", 2));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.Status);
        Assert.Equal("1", refused.Msg.Headers.GetValues("Retry-After").Single());
        Assert.Contains("queue is full (3 requests)", refused.Body, StringComparison.Ordinal);
        host.Service.WorkerGate = null;
        gate.Release(10);
        foreach (var r in await Task.WhenAll(held)) Assert.Equal(HttpStatusCode.OK, r.Status);
        var metrics = await _http.GetStringAsync(new Uri(host.Address, "/metrics"), TestContext.Current.CancellationToken);
        Assert.Contains("mtfm_requests_total{code=\"503\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("mtfm_errors_total{code=\"503\"} 1", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AReloadUnderLoadLosesNoRequestAndNeverMixesModels()
    {
        string run = SaveModel("serving", 11);
        string other = SaveModel("next", 12);
        await using var host = await Start(run);
        string body = "[" + Request("groupbuy", 4, seed: 1) + "," + Request("feed", 3, seed: 2, user: "u2") + "]";
        var before = await Post(host, "/v1/score", body);
        Assert.Equal("1,1", before.Msg.Headers.GetValues("X-Model-Version").Single());
        var results = new List<(string Version, string Body)>();
        using var stop = new CancellationTokenSource();
        async Task Load()
        {
            while (!stop.IsCancellationRequested)
            {
                var r = await Post(host, "/v1/score", body);
                Assert.Equal(HttpStatusCode.OK, r.Status);
                lock (results) results.Add((r.Msg.Headers.GetValues("X-Model-Version").Single(), r.Body));
            }
        }
        var load = Enumerable.Range(0, 4).Select(_ => Task.Run(Load, TestContext.Current.CancellationToken)).ToList();
        while (true) { lock (results) if (results.Count >= 8) break; await Task.Delay(5, TestContext.Current.CancellationToken); }
        File.Copy(Path.Combine(other, "model.safetensors"), Path.Combine(run, "model.safetensors.tmp"));
        File.Move(Path.Combine(run, "model.safetensors.tmp"), Path.Combine(run, "model.safetensors"), overwrite: true);
        var reload = await Post(host, "/admin/reload", "");
        Assert.Equal(HttpStatusCode.OK, reload.Status);
        Assert.Contains("\"version\":2", reload.Body, StringComparison.Ordinal);
        int atReload; lock (results) atReload = results.Count;
        while (true) { lock (results) if (results.Count >= atReload + 8) break; await Task.Delay(5, TestContext.Current.CancellationToken); }
        stop.Cancel();
        await Task.WhenAll(load);
        var after = await Post(host, "/v1/score", body);
        Assert.Equal("2,2", after.Msg.Headers.GetValues("X-Model-Version").Single());
        Assert.NotEqual(before.Body, after.Body);
        foreach (var (version, text) in results)
        {
            // Each request of a call is scored by one model; a call whose two requests fell on both sides of the swap
            // carries "1,2" and each half equals that model's scores.
            var parts = version.Split(',');
            var got = JsonNode.Parse(text)!.AsArray();
            for (int i = 0; i < 2; i++)
                Assert.Equal(JsonNode.Parse(parts[i] == "1" ? before.Body : after.Body)!.AsArray()[i]!.ToJsonString(), got[i]!.ToJsonString());
        }
        Assert.Contains(results, r => r.Version == "1,1");
        Assert.Contains(results, r => r.Version == "2,2");
        var metrics = await _http.GetStringAsync(new Uri(host.Address, "/metrics"), TestContext.Current.CancellationToken);
        Assert.Contains("mtfm_model_version 2", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HealthReadinessAndMetricsAreServed()
    {
        await using var host = await Start(SaveModel("m", 8));
        Assert.Equal("ok\n", await _http.GetStringAsync(new Uri(host.Address, "/healthz"), TestContext.Current.CancellationToken));
        Assert.Equal("ready\n", await _http.GetStringAsync(new Uri(host.Address, "/readyz"), TestContext.Current.CancellationToken));
        string body = Request("coupon", 5, user: "fresh", seed: 99);
        long h0 = host.Service.ContextCacheHits, m0 = host.Service.ContextCacheMisses;   // after the warm-up requests
        Assert.Equal(HttpStatusCode.OK, (await Post(host, "/v1/score", body)).Status);
        Assert.Equal(HttpStatusCode.OK, (await Post(host, "/v1/score", body)).Status);
        var m = await _http.GetStringAsync(new Uri(host.Address, "/metrics"), TestContext.Current.CancellationToken);
        Assert.Contains("mtfm_requests_total{code=\"200\"} 2", m, StringComparison.Ordinal);
        Assert.Contains("mtfm_request_duration_seconds_count 2", m, StringComparison.Ordinal);
        Assert.Contains($"mtfm_context_cache_hits_total {h0 + 1}\n", m, StringComparison.Ordinal);     // the second call reuses the first one's context
        Assert.Contains($"mtfm_context_cache_misses_total {m0 + 1}\n", m, StringComparison.Ordinal);
        Assert.Contains("mtfm_model_version 1", m, StringComparison.Ordinal);
        Assert.Contains("mtfm_queue_depth 0", m, StringComparison.Ordinal);
        Assert.Contains("mtfm_candidates_scored_total", m, StringComparison.Ordinal);
    }
}
