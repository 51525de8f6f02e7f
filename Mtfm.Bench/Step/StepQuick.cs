using System.Diagnostics;
using System.Globalization;
using Mtfm.Engine.Autograd;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;

namespace Mtfm.Bench.Step;

/// <summary>
/// <c>step-quick</c>: a whole MTFM training step (forward, backward, clipping, AdamW / row-sparse Adam) on a fixed
/// batch (<see cref="StepBatch"/>: by default 32 instances of 256 H + 32 R + 64 T tokens), timed side by side with the
/// TorchSharp peer (<see cref="TorchStep"/>, dense and skip-T×T variants; built with <c>-p:MtfmTorchSharp=true</c>),
/// interleaved step by step so load hits all alike; then the engine step's profile, achieved GFLOP/s against the
/// measured FMA peak, allocations per steady-state step and the memory table (analytic vs measured).
/// <code>
/// dotnet run -c Release --project Mtfm.Bench [-p:MtfmTorchSharp=true] -- step-quick [--preset small|base|tiny]
///     [--threads 2] [--instances 32] [--h 256] [--r 32] [--t 64] [--warmup 10] [--steps 10] [--no-torch]
/// </code>
/// Ten warm-up steps by default: after three, part of the engine's code still ran at the JIT's first tier (call counting
/// waits until methods stop being compiled), which read about 25 % slower than the steady state of a training run.
/// </summary>
internal static class StepQuick
{
    public static int Run(string[] args)
    {
        string preset = Arg(args, "--preset", "small");
        int threads = int.Parse(Arg(args, "--threads", "2"), CultureInfo.InvariantCulture);
        int inst = int.Parse(Arg(args, "--instances", "32"), CultureInfo.InvariantCulture);
        int lh = int.Parse(Arg(args, "--h", "256"), CultureInfo.InvariantCulture);
        int lr = int.Parse(Arg(args, "--r", "32"), CultureInfo.InvariantCulture);
        int lt = int.Parse(Arg(args, "--t", "64"), CultureInfo.InvariantCulture);
        int warm = int.Parse(Arg(args, "--warmup", "10"), CultureInfo.InvariantCulture);
        int steps = int.Parse(Arg(args, "--steps", "10"), CultureInfo.InvariantCulture);
        bool torchWanted = !args.Contains("--no-torch");
        // The peer implements the network of MTFM-SPEC without the history-statistics inputs (a data-side addition that
        // StepBatch does not fill): both sides run the preset with them off, the same math.
        var config = MtfmConfig.Preset(preset) with { HistoryStatistics = false };
        var layout = new DataLayout(SyntheticGenerator.Schema(SyntheticConfig.Default));
        var batch = StepBatch.Build(layout, inst, lh, lr, lt, seed: 7);
        Console.WriteLine($"step-quick: preset {preset}, {threads} threads, {inst} instances of {lh} H + {lr} R + {lt} T = {batch.TokenCount:N0} tokens " +
            $"({batch.TargetCount} T), {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load average {LoadAverage()}");

        using var engine = new EngineStep(config, layout, threads);
        Console.WriteLine($"  engine: {engine.Model.ParameterCount:N0} parameters");
        float engineLoss = engine.Loss(batch);
        Console.WriteLine($"  loss at initial weights: engine {engineLoss:G9}");

        var peers = new List<(string Name, Func<float> Step)>();
#if MTFM_TORCHSHARP
        var torchSteps = new List<TorchStep>();
        if (torchWanted)
        {
            string? why = TorchLoads();
            if (why is not null) Console.WriteLine($"  TorchSharp peer skipped: LibTorch cannot load ({why})");
            else
            {
                TorchSharp.torch.set_num_threads(threads);
                TorchSharp.torch.set_num_interop_threads(1);
                foreach (bool skip in new[] { false, true })
                {
                    var ts = new TorchStep(engine.Model, batch, skip);
                    float tl = ts.Loss();
                    string name = skip ? "TorchSharp, skip T×T" : "TorchSharp, dense mask";
                    Console.WriteLine($"  loss at initial weights: {name} {tl:G9} (|Δ| = {Math.Abs(tl - engineLoss):E2})");
                    if (Math.Abs(tl - engineLoss) > 1e-4)
                    {
                        Console.WriteLine($"  ERROR: {name} loss differs from the engine's by more than 1e-4; not timing.");
                        return 1;
                    }
                    torchSteps.Add(ts);
                    peers.Add((name, ts.Step));
                }
            }
        }
#else
        if (torchWanted) Console.WriteLine("  TorchSharp peer skipped: built without -p:MtfmTorchSharp=true");
#endif
        // FLOPs: forward count of the model; attention separately from the visible pairs.
        var flops = new FlopCounter();
        double attnFwd = 0, attnBwd = 0;
        using (var tape = new Tape(engine.Profiler, gradEnabled: false))
        {
            var inp = new BatchInputs(tape, batch, layout, config.TimeBuckets);
            for (int l = 0; l < config.Layers; l++)
            {
                long pairs = inp.VisiblePairs(!config.IsFullLayer(l));
                attnFwd += 2.0 * pairs * config.Heads * (config.Dqk + config.Dv);
                attnBwd += 2.0 * pairs * config.Heads * (3 * config.Dqk + 2 * config.Dv);
            }
        }
        engine.Step(batch, flops); // first step: allocates optimizer state, JIT
        // After one update from the same weights the losses should still agree closely (Adam's first step is
        // lr·sign(g) where |g| ≫ ε, so near-zero gradient entries may round either way: printed, not asserted).
        float after = engine.Loss(batch);
        Console.WriteLine($"  loss after one step: engine {after:G9}");
        foreach (var p in peers)
        {
            p.Step();
#if MTFM_TORCHSHARP
            float ta = torchSteps[peers.IndexOf(p)].Loss();
            Console.WriteLine($"  loss after one step: {p.Name} {ta:G9} (|Δ| = {Math.Abs(ta - after):E2})");
#endif
        }
        double denseFwd = flops.Forward - attnFwd;
        double useful = 3 * denseFwd + attnFwd + attnBwd;

        // Warm-up, then interleaved timed steps.
        for (int i = 0; i < warm; i++) { engine.Step(batch); foreach (var p in peers) p.Step(); }
        engine.Profiler.Reset();
        var times = new List<double>[peers.Count + 1];
        for (int i = 0; i < times.Length; i++) times[i] = new List<double>();
        var phases = new long[5];
        long managed = 0, backendAllocs = 0, backendBytes = 0, peakLive = 0, liveBefore = 0, liveAfterFwd = 0;
        for (int s = 0; s < steps; s++)
        {
            long a0 = engine.Profiler.AllocationCalls, b0 = engine.Profiler.AllocatedBytes;
            long m0 = GC.GetTotalAllocatedBytes(precise: true);
            long t0 = Stopwatch.GetTimestamp();
            engine.Step(batch);
            times[0].Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            managed += GC.GetTotalAllocatedBytes(precise: true) - m0;
            backendAllocs += engine.Profiler.AllocationCalls - a0;
            backendBytes += engine.Profiler.AllocatedBytes - b0;
            for (int k = 0; k < 5; k++) phases[k] += engine.LastPhases[k];
            peakLive = Math.Max(peakLive, engine.LastPeakLiveBytes);
            liveBefore = engine.LastLiveBefore; liveAfterFwd = engine.LastLiveAfterForward;
            for (int p = 0; p < peers.Count; p++)
            {
                long u0 = Stopwatch.GetTimestamp();
                peers[p].Step();
                times[p + 1].Add(Stopwatch.GetElapsedTime(u0).TotalMilliseconds);
            }
        }
        double engMed = Median(times[0]);
        Console.WriteLine();
        Console.WriteLine($"Whole training step, median of {steps} interleaved steps (after {warm + 1} warm-up), {threads} threads each:");
        Console.WriteLine("| implementation | median ms/step (min–max) | instances/s | engine speed-up |");
        Console.WriteLine("|---|---:|---:|---:|");
        Console.WriteLine($"| Mtfm engine (CPU backend) | {engMed:F1} ({times[0].Min():F1}–{times[0].Max():F1}) | {inst * 1000 / engMed:F1} | 1.00 |");
        for (int p = 0; p < peers.Count; p++)
        {
            double m = Median(times[p + 1]);
            Console.WriteLine($"| {peers[p].Name} | {m:F1} ({times[p + 1].Min():F1}–{times[p + 1].Max():F1}) | {inst * 1000 / m:F1} | {m / engMed:F2}× |");
        }

        double peak = FmaPeak.Measure(threads);
        Console.WriteLine();
        Console.WriteLine($"Useful FLOPs per step: {useful / 1e9:F2} GFLOP (model GEMMs fwd+bwd {3 * denseFwd / 1e9:F2}, attention fwd {attnFwd / 1e9:F2} + bwd {attnBwd / 1e9:F2}, visible pairs only)");
        Console.WriteLine($"Achieved: {useful / engMed / 1e6:F1} GFLOP/s at the median step; measured {threads}-thread FMA peak now {peak:F1} GFLOP/s " +
            $"→ {100 * useful / engMed / 1e6 / peak:F1} % of peak");

        // Profile.
        double tick = 1000.0 / Stopwatch.Frequency / steps; // ms per step
        var rows = engine.Profiler.Rows;
        double fwdBwdMs = (phases[1] + phases[2]) * tick;
        double kernelsInFwdBwd = rows.Where(r => r.Value.Category != "batch upload").Sum(r => r.Value.Ticks) * tick;
        var cats = rows.GroupBy(r => r.Value.Category).Select(g => (Cat: g.Key, Ms: g.Sum(r => r.Value.Ticks) * tick, Calls: g.Sum(r => r.Value.Calls) / (double)steps))
            .OrderByDescending(c => c.Ms).ToList();
        double stepMs = phases.Sum() * tick;
        Console.WriteLine();
        Console.WriteLine($"Engine step profile (mean of {steps} steps, {stepMs:F1} ms/step by phase sum):");
        Console.WriteLine("| where | ms/step | % of step | calls/step |");
        Console.WriteLine("|---|---:|---:|---:|");
        foreach (var c in cats.Where(c => c.Cat != "batch upload"))
            Console.WriteLine($"| {c.Cat} | {c.Ms:F2} | {100 * c.Ms / stepMs:F1} | {c.Calls:F0} |");
        Console.WriteLine($"| autograd/host bookkeeping in forward+backward (not in a kernel) | {fwdBwdMs - kernelsInFwdBwd:F2} | {100 * (fwdBwdMs - kernelsInFwdBwd) / stepMs:F1} | |");
        Console.WriteLine($"| batch inputs (attention layout, index/feature uploads) | {phases[0] * tick:F2} | {100 * phases[0] * tick / stepMs:F1} | |");
        Console.WriteLine($"| gradient clipping (sum of squares, scale) | {phases[3] * tick:F2} | {100 * phases[3] * tick / stepMs:F1} | |");
        Console.WriteLine($"| optimizer (AdamW, row-sparse Adam, zero grads) | {phases[4] * tick:F2} | {100 * phases[4] * tick / stepMs:F1} | |");
        Console.WriteLine();
        Console.WriteLine("GEMMs by shape (m×n×k, op(A)op(B)):");
        double msPerTick = 1000.0 / Stopwatch.Frequency;
        Console.WriteLine("| GEMM | ms/step | calls/step | GFLOP/s | mean / slowest call, ms |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var r in rows.Where(r => r.Value.Category.StartsWith("GEMM", StringComparison.Ordinal)).OrderByDescending(r => r.Value.Ticks).Take(24))
        {
            var parts = r.Key.Split(' ')[1].Split('x').Select(long.Parse).ToArray();
            long batchN = r.Key.Contains(" x", StringComparison.Ordinal) ? long.Parse(r.Key[(r.Key.LastIndexOf('x') + 1)..], CultureInfo.InvariantCulture) : 1;
            double ms = r.Value.Ticks * tick, calls = r.Value.Calls / (double)steps;
            Console.WriteLine($"| {r.Key} | {ms:F2} | {calls:F0} | {2.0 * parts[0] * parts[1] * parts[2] * batchN * calls / ms / 1e6:F1} | " +
                $"{r.Value.Ticks * msPerTick / r.Value.Calls:F3} / {r.Value.MaxTicks * msPerTick:F3} |");
        }
        Console.WriteLine();
        Console.WriteLine("Other kernels (top 16 by time):");
        Console.WriteLine("| kernel | ms/step | calls/step | mean / slowest call, ms |");
        Console.WriteLine("|---|---:|---:|---:|");
        foreach (var r in rows.Where(r => !r.Value.Category.StartsWith("GEMM", StringComparison.Ordinal)).OrderByDescending(r => r.Value.Ticks).Take(16))
            Console.WriteLine($"| {r.Key} | {r.Value.Ticks * tick:F2} | {r.Value.Calls / (double)steps:F0} | " +
                $"{r.Value.Ticks * msPerTick / r.Value.Calls:F3} / {r.Value.MaxTicks * msPerTick:F3} |");
        Console.WriteLine();
        Console.WriteLine($"Allocations per steady-state step: {backendAllocs / (double)steps:F0} backend tensors ({backendBytes / (double)steps / 1e6:F1} MB), " +
            $"{managed / (double)steps / 1e6:F2} MB managed");

        // Memory.
        var (par, grad, opt) = engine.StateBytes();
        long saved = liveAfterFwd - liveBefore;
        double analyticAct = AnalyticActivations(config, layout, batch);
        long tableParams = engine.Model.Parameters.Where(p => p.SparseGrad).Sum(p => p.Value.Length * 4);
        long denseParams = par - tableParams;
        long touchedRows = batch.Blocks.Sum(b => (long)b.Rows * b.CategoricalWidth) * config.EmbeddingDim * 4; // upper bound on the row-sparse gradient
        double analytic = par + denseParams + touchedRows + 2.0 * par + analyticAct;
        long measuredPeak = peakLive + opt;
        Console.WriteLine();
        Console.WriteLine("Memory (MB):");
        Console.WriteLine("| item | analytic | measured |");
        Console.WriteLine("|---|---:|---:|");
        Console.WriteLine($"| parameters | {par / 1e6:F1} | {par / 1e6:F1} |");
        Console.WriteLine($"| gradients (dense + touched embedding rows) | {(denseParams + touchedRows) / 1e6:F1} | {grad / 1e6:F1} dense held between steps |");
        Console.WriteLine($"| optimizer state (Adam moments) | {2.0 * par / 1e6:F1} | {opt / 1e6:F1} |");
        Console.WriteLine($"| saved activations (after forward) | {analyticAct / 1e6:F1} | {saved / 1e6:F1} |");
        Console.WriteLine($"| peak working set (backend peak + optimizer state) | {analytic / 1e6:F1} | {measuredPeak / 1e6:F1} ({measuredPeak / analytic:F2}× analytic) |");
        Console.WriteLine($"| process peak resident (VmHWM, includes runtime{(peers.Count > 0 ? " and LibTorch" : "")}) | | {ProcStatus("VmHWM")} |");
#if MTFM_TORCHSHARP
        foreach (var ts in torchSteps) ts.Dispose();
#endif
        return 0;
    }

    /// <summary>
    /// The activations a backward minimally needs saved (fp32): per layer its input X and GLN statistics, the K|V and
    /// U|Q pre-activations (SiLU outputs, Q/K/V/U are recomputed from them), the attention output O and its LN
    /// statistics; per tokenizer its input and hidden pre-activation; the heads' final GLN input, expert pre-activations
    /// and the per-(scenario, task) gate, mix and tower values. Everything else is recomputable element-wise.
    /// </summary>
    internal static double AnalyticActivations(MtfmConfig c, DataLayout l, JaggedBatch b)
    {
        double floats = 0;
        long n = b.TokenCount, nt = b.TargetCount;
        for (int g = 0; g < l.Groups.Count; g++)
        {
            long rows = b.Blocks[g].Rows;
            floats += rows * (l.Groups[g].CategoricalTables.Length * c.EmbeddingDim + l.Groups[g].NumericFeatures.Length + c.TokenizerHidden);
        }
        for (int layer = 0; layer < c.Layers; layer++)
        {
            long q = c.IsFullLayer(layer) ? n : nt;
            floats += n * (c.DModel + 2) + n * c.KvHeads * (c.Dqk + c.Dv) + q * c.Heads * (c.Dv + c.Dqk) + q * (c.Heads * c.Dv + 2);
        }
        floats += nt * (c.DModel + 2) + nt * c.Experts * c.ExpertWidth;
        floats += (double)l.TaskCount * nt * (c.Experts + c.ExpertWidth + c.TowerWidth + 1);
        return floats * 4;
    }

#if MTFM_TORCHSHARP
    internal static string? TorchLoads()
    {
        try
        {
            GemmTorchSharpPatch.Apply();
            using var t = TorchSharp.torch.ones(2);
            return null;
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or NotSupportedException or InvalidOperationException or BadImageFormatException)
        {
            return e.GetBaseException().Message;
        }
    }
#endif

    internal static string Arg(string[] args, string name, string dflt)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : dflt;
    }

    internal static int IntArg(string[] args, string name, int dflt) =>
        int.Parse(Arg(args, name, dflt.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);

    internal static double Median(List<double> v)
    {
        var s = v.OrderBy(x => x).ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }

    internal static string LoadAverage()
    {
        try { return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "n/a"; }
    }

    private static string ProcStatus(string key)
    {
        try
        {
            var line = File.ReadLines("/proc/self/status").FirstOrDefault(x => x.StartsWith(key + ":", StringComparison.Ordinal));
            if (line is null) return "n/a";
            long kb = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
            return $"{kb / 1024.0:F0} MB";
        }
        catch (IOException) { return "n/a"; }
    }
}
