using System.Diagnostics;
using System.Globalization;
using System.Net.Http;
using System.Text;
using BenchmarkDotNet.Attributes;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;
using Mtfm.Engine.Serving;

namespace Mtfm.Bench.Serving;

/// <summary>The serving benchmarks' model: the synthetic schema with history caps that let 256 H events in (192 click + 64 order), `small` preset, seeded random init.</summary>
internal static class ServeModel
{
    public const int History = 256, Realtime = 32;

    public static DatasetSchema Schema()
    {
        var s = SyntheticGenerator.Schema(SyntheticConfig.Tiny);
        s.Sequences[0].HistoryCap = 192;
        s.Sequences[1].HistoryCap = 64;
        return s;
    }

    /// <summary>Writes the checkpoint to <paramref name="dir"/>/model.safetensors and returns the run directory.</summary>
    public static string Write(string dir)
    {
        Directory.CreateDirectory(dir);
        var schema = Schema();
        var layout = new DataLayout(schema);
        var stats = new NumericStats(layout, new float[schema.Features.Count], Enumerable.Repeat(1f, schema.Features.Count).ToArray());
        using var backend = new CpuBackend(1);
        using var model = new MtfmModel(backend, MtfmConfig.Small, layout, seed: 1);
        MtfmCheckpoint.Save(Path.Combine(dir, "model.safetensors"), model, stats);
        return dir;
    }

    public static long Time(DatasetSchema s) => s.WindowOrigin + 10 * s.WindowSeconds + s.WindowSeconds / 2;

    public static ScoreRequest Request(DatasetSchema s, int candidates, string user = "u1", int seed = 1) =>
        SyntheticRequests.Make(s, "groupbuy", Time(s), History, Realtime, candidates, user, seed);
}

/// <summary>
/// In-process latency of one request (256 H + 32 R events, `small`), 1/100/1000 candidates: JSON parse + validation +
/// encoding + forward, with the context cache (a hit: the same user and events again) and without it (recomputed).
/// Run: dotnet run -c Release --project Mtfm.Bench -- --filter '*ServeLatencyBench*' --job short
/// (p50/p99 without BenchmarkDotNet: dotnet run -c Release --project Mtfm.Bench -- serve-latency)
/// </summary>
[MemoryDiagnoser]
public class ServeLatencyBench
{
    private string _dir = null!;
    private Scorer _cached = null!, _uncached = null!;
    private string _json = null!;

    [Params(1, 100, 1000)]
    public int Candidates { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _dir = ServeModel.Write(Directory.CreateTempSubdirectory("mtfm-serve-bench-").FullName);
        _cached = Scorer.Load(_dir, threads: 0, contextCacheMegabytes: 256);
        _uncached = Scorer.Load(_dir, threads: 0, contextCacheMegabytes: 0);
        _json = ServeModel.Request(ServeModel.Schema(), Candidates).ToJson();
        _cached.Score(ScoreRequest.Parse(_json));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _cached.Dispose();
        _uncached.Dispose();
        Directory.Delete(_dir, true);
    }

    [Benchmark(Baseline = true)]
    public ScoreResponse Uncached() => _uncached.Score(ScoreRequest.Parse(_json));

    [Benchmark]
    public ScoreResponse Cached() => _cached.Score(ScoreRequest.Parse(_json));
}

/// <summary>`serve-latency [reps] [threads]`: p50/p99 of the in-process stages (parse, encode, context encode, target forward) and of whole calls, cached and uncached.</summary>
internal static class ServeLatency
{
    public static int Run(string[] args)
    {
        int reps = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 50;
        int threads = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 0;
        string dir = ServeModel.Write(Directory.CreateTempSubdirectory("mtfm-serve-lat-").FullName);
        try
        {
            var schema = ServeModel.Schema();
            using var cached = Scorer.Load(dir, threads: threads, contextCacheMegabytes: 256);
            using var uncached = Scorer.Load(dir, threads: threads, contextCacheMegabytes: 0);
            Console.WriteLine($"small preset, {ServeModel.History} H + {ServeModel.Realtime} R events, {Environment.ProcessorCount} cores, threads {(threads == 0 ? "one per core" : threads)}, {reps} calls each (ms)");
            Console.WriteLine("candidates | uncached p50 | uncached p99 | cached p50 | cached p99 | ratio p50 | context encode p50 | cache lookup+key p50");
            foreach (int c in new[] { 1, 100, 1000 })
            {
                string json = ServeModel.Request(schema, c).ToJson();
                var enc = cached.Encoder.Encode(ScoreRequest.Parse(json));
                Console.Error.WriteLine($"// {c} candidates: {enc.HistoryTokens} H + {enc.RealtimeTokens} R tokens");
                cached.Score(ScoreRequest.Parse(json));
                uncached.Score(ScoreRequest.Parse(json));
                var u = Measure(reps, () => uncached.Score(ScoreRequest.Parse(json)));
                var k = Measure(reps, () => cached.Score(ScoreRequest.Parse(json)));
                var model = cached.Model;
                int nc = enc.HistoryTokens + enc.RealtimeTokens;
                var ctxT = Measure(reps, () => model.EncodeContext(enc.Batch, nc).Dispose());
                var keyT = Measure(reps, () => ContextCache.KeyOf(enc.Batch, nc));
                var parseT = Measure(reps, () => ScoreRequest.Parse(json));
                var req = ScoreRequest.Parse(json);
                var encT = Measure(reps, () => cached.Encoder.Encode(req));
                using (var ctx = model.EncodeContext(enc.Batch, nc))
                {
                    var tgtT = Measure(reps, () => model.ScoreTargets([(ctx, enc.Batch)], enc.Scenario));
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"// {c} candidates, p50 ms: JSON parse {P(parseT, 50):F2}, validate+encode {P(encT, 50):F2}, context encode {P(ctxT, 50):F2}, target forward {P(tgtT, 50):F2}"));
                }
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{c,10} | {P(u, 50),12:F2} | {P(u, 99),12:F2} | {P(k, 50),10:F2} | {P(k, 99),10:F2} | {P(u, 50) / P(k, 50),9:F2} | {P(ctxT, 50),18:F2} | {P(keyT, 50),8:F3}"));
            }
            return 0;
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>
    /// `serve-profile [reps] [candidates]`: where one cached call's target forward goes, by backend op (the scorer on a
    /// <see cref="Step.ProfilingBackend"/> over the CPU backend), mean ms per call.
    /// </summary>
    public static int Profile(string[] args)
    {
        int reps = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 30;
        int c = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 100;
        string dir = ServeModel.Write(Directory.CreateTempSubdirectory("mtfm-serve-prof-").FullName);
        try
        {
            var prof = new Step.ProfilingBackend(new Mtfm.Engine.Backends.Cpu.CpuBackend(0));
            using var scorer = Scorer.Load(dir, prof, 256);
            var schema = ServeModel.Schema();
            var enc = scorer.Encoder.Encode(ScoreRequest.Parse(ServeModel.Request(schema, c).ToJson()));
            var model = scorer.Model;
            int nc = enc.HistoryTokens + enc.RealtimeTokens;
            using var ctx = model.EncodeContext(enc.Batch, nc);
            for (int i = 0; i < 5; i++) model.ScoreTargets([(ctx, enc.Batch)], enc.Scenario);
            prof.Enabled = false;
            long s0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < reps; i++) model.ScoreTargets([(ctx, enc.Batch)], enc.Scenario);
            double quiet = Stopwatch.GetElapsedTime(s0).TotalMilliseconds / reps;
            prof.Enabled = true;
            prof.Reset();
            long s = Stopwatch.GetTimestamp();
            for (int i = 0; i < reps; i++) model.ScoreTargets([(ctx, enc.Batch)], enc.Scenario);
            double wall = Stopwatch.GetElapsedTime(s).TotalMilliseconds / reps, tick = 1000.0 / Stopwatch.Frequency / reps;
            double inOps = prof.Rows.Sum(r => r.Value.Ticks) * tick;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"target forward, {c} candidates, {nc} context tokens: {wall:F2} ms per call profiled ({quiet:F2} with the profiler off), {inOps:F2} ms in backend ops, {wall - inOps:F2} ms outside"));
            Console.WriteLine("| op | ms/call | calls/call |");
            Console.WriteLine("|---|---:|---:|");
            foreach (var r in prof.Rows.OrderByDescending(r => r.Value.Ticks).Take(25))
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {r.Key} | {r.Value.Ticks * tick:F3} | {r.Value.Calls / (double)reps:F1} |"));
            return 0;
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static double[] Measure(int reps, Action a)
    {
        var t = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            long s = Stopwatch.GetTimestamp();
            a();
            t[i] = Stopwatch.GetElapsedTime(s).TotalMilliseconds;
        }
        Array.Sort(t);
        return t;
    }

    public static double P(double[] sorted, double p) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p / 100 * sorted.Length) - 1)];
}

/// <summary>
/// `serve-model DIR`: writes the benchmark checkpoint. `serve-load URL [--concurrency 8] [--seconds 30] [--candidates 100]
/// [--users 64] [--pid P] [--warmup 5]`: a bounded closed-loop load generator (each of C workers posts, waits, posts again);
/// after --warmup seconds of the same load (not measured) it reports requests/s, candidates/s, p50/p99, non-2xx and the
/// server's resident memory (VmRSS of --pid) at the start and end of the measured run and its min/max sampled each second.
/// </summary>
internal static class ServeLoad
{
    public static int WriteModel(string[] args)
    {
        Console.WriteLine(ServeModel.Write(args.Length > 1 ? args[1] : "serve-model"));
        return 0;
    }

    public static int Run(string[] args)
    {
        string url = args.Length > 1 ? args[1] : "http://127.0.0.1:8080";
        int conc = Opt(args, "--concurrency", 8), seconds = Opt(args, "--seconds", 30), cand = Opt(args, "--candidates", 100), users = Opt(args, "--users", 64), pid = Opt(args, "--pid", 0), warmup = Opt(args, "--warmup", 5);
        if (seconds is < 1 or > 600) throw new ArgumentException("--seconds must be within [1, 600]");
        if (warmup is < 0 or > 600) throw new ArgumentException("--warmup must be within [0, 600]");
        var schema = ServeModel.Schema();
        var bodies = Enumerable.Range(0, users).Select(u => ServeModel.Request(schema, cand, $"u{u}", seed: u).ToJson()).ToArray();
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(30) };
        long non2xx = 0, ok = 0;
        // Warm-up (not measured): JIT, the context cache filling with every user's context, the GC settling.
        if (warmup > 0) Loop(Stopwatch.GetTimestamp() + (long)warmup * Stopwatch.Frequency, null);
        long warmNon2xx = non2xx;
        non2xx = ok = 0;
        long rss0 = Rss(pid), rssMin = rss0, rssMax = rss0;
        var lat = new List<double>[conc];
        for (int w = 0; w < conc; w++) lat[w] = [];
        var end = Stopwatch.GetTimestamp() + (long)seconds * Stopwatch.Frequency;
        var sw = Stopwatch.StartNew();
        var sampler = Task.Run(async () =>
        {
            while (Stopwatch.GetTimestamp() < end)
            {
                await Task.Delay(1000);
                long r = Rss(pid);
                if (r > 0) { rssMin = Math.Min(rssMin, r); rssMax = Math.Max(rssMax, r); }
            }
        });
        Loop(end, lat);
        sampler.Wait();
        double elapsed = sw.Elapsed.TotalSeconds;
        long rss1 = Rss(pid);
        var all = lat.SelectMany(l => l).OrderBy(x => x).ToArray();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"concurrency {conc}, {cand} candidates, {seconds} s after {warmup} s of warm-up ({warmNon2xx} non-2xx in it): {ok + non2xx} requests, {(ok + non2xx) / elapsed:F1} req/s, {ok * cand / elapsed:F0} candidates/s, " +
            $"p50 {ServeLatency.P(all, 50):F1} ms, p99 {ServeLatency.P(all, 99):F1} ms, non-2xx {non2xx}, RSS start {rss0 / 1024.0:F0} MiB, end {rss1 / 1024.0:F0} MiB (min {rssMin / 1024.0:F0}, max {rssMax / 1024.0:F0} sampled each second)"));
        return non2xx == 0 ? 0 : 1;

        void Loop(long until, List<double>[]? latencies)
        {
            var workers = Enumerable.Range(0, conc).Select(w => Task.Run(async () =>
            {
                int i = w;
                while (Stopwatch.GetTimestamp() < until)
                {
                    long s = Stopwatch.GetTimestamp();
                    using var resp = await http.PostAsync("/v1/score", new StringContent(bodies[i++ % bodies.Length], Encoding.UTF8, "application/json"));
                    await resp.Content.ReadAsByteArrayAsync();
                    latencies?[w].Add(Stopwatch.GetElapsedTime(s).TotalMilliseconds);
                    if ((int)resp.StatusCode / 100 == 2) Interlocked.Increment(ref ok); else Interlocked.Increment(ref non2xx);
                }
            })).ToArray();
            Task.WaitAll(workers);
        }
    }

    private static int Opt(string[] args, string name, int def)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : def;
    }

    /// <summary>VmRSS in KiB of process <paramref name="pid"/> (0 when not given or not readable).</summary>
    private static long Rss(int pid)
    {
        if (pid <= 0) return 0;
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
        }
        catch (IOException) { }
        return 0;
    }
}
