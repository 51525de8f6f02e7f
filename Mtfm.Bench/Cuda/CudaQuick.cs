using System.Diagnostics;
using System.Globalization;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Native;
using Mtfm.Engine.Tensors;
using Mtfm.Engine.Training.Cuda;

namespace Mtfm.Bench.Cuda;

/// <summary>
/// The CUDA issue's figures in one quick, event-timed table (not BenchmarkDotNet: the GPU machine has no SDK and a
/// 15-minute lease):
/// <code>
/// dotnet run -c Release --project Mtfm.Bench -- cuda-quick [--emulated] [--small] [--cpu | --cpu-only]
///     [--cpu-ref EXPOSURES_PER_S] [--cpu-threads N] [--budget-s S] [--out FILE.md]
///     [--preset tiny|small|base] [--blocks N] [--batch-tokens N] [--steps WARMUP,TIMED]
/// dotnet run -c Release --project Mtfm.Bench -- cuda-quick --host-only [--emulated] [--real-bulk] [--cpu-ref X] [--steps W,T] ...
/// </code>
/// <c>--host-only</c>: the host-bound ceiling of <c>base</c> training instead of the table (<see cref="HostBound"/>;
/// needs only <c>MTFM_CUDA_EMU_LIB</c>, no GPU).
/// Each figure: warm-up, then the median of N repetitions timed back to back with CUDA events (<see cref="DeviceTimer"/>).
/// Ceilings: device-to-device copy bandwidth (bytes read + written) and the cuBLAS dense bf16 GEMM rate (bf16 in and
/// out, fp32 accumulation, tensor cores; fp32 and tf32 for reference). Engine figures: the embedding gather kernel
/// (bytes = rows read + rows written + ids read) as % of copy, the fused HSTU attention forward at MTFM <c>base</c>
/// head shapes (flops = 2·(dqk + dv) per visible (q, k) pair per head) as % of the bf16 rate, and <c>base</c> training
/// steps through <see cref="Mtfm.Engine.Training.MtfmTrainer"/> (examples = labelled exposures) against the CPU
/// backend. <c>--small</c>: tiny sizes so the whole table runs on the emulated device in seconds (exercised in CI-less
/// checks here). Exit 0 when every figure was measured, 1 when one failed (its row says why), 2 when CUDA is not
/// available (the message is printed and written to the table).
/// </summary>
internal static class CudaQuick
{
    // Attention precision variants: every entry gets attention rows, a "% of the bf16 rate" target row (judged for bf16)
    // and a training row. The BenchmarkDotNet suite CudaBenchmarks reads this same list.
    internal static readonly (string Name, Action<CudaBackend> Select)[] AttentionVariants =
    [
        ("fp32", b => b.AttentionPrecision = CudaAttentionPrecision.Fp32),
        ("bf16", b => b.AttentionPrecision = CudaAttentionPrecision.Bf16),
    ];

    /// <summary>The sizes of one run (full on a GPU, or <c>--small</c>).</summary>
    internal sealed record Sizes
    {
        public long CopyBytes { get; init; } = 1L << 30;
        public int GemmN { get; init; } = 8192;
        public (int M, int N, int K) EngineGemm { get; init; } = (4096, 2048, 768);
        public int TableRows { get; init; } = 1 << 20;
        public int EmbDim { get; init; } = 128;
        public int Ids { get; init; } = 256 << 10;
        public int AttnInstances { get; init; } = 64;
        public (int, int) AttnH { get; init; } = (160, 240);
        public (int, int) AttnR { get; init; } = (30, 70);
        public (int, int) AttnT { get; init; } = (10, 30);
        public MtfmConfig Model { get; init; } = MtfmConfig.Base;
        public string PresetName { get; init; } = "base";
        public SyntheticConfig Data { get; init; } = SyntheticConfig.Default with { Users = 2000 };
        public int BatchTokens { get; init; } = 4096;
        public int Warmup { get; init; } = 8;
        public int Timed { get; init; } = 40;
        public int CpuWarmup { get; init; } = 1;
        public int CpuTimed { get; init; } = 3;
        public int Reps { get; init; } = 20;
        public int Warm { get; init; } = 3;

        public static Sizes Full => new();

        public static Sizes Small => new()
        {
            CopyBytes = 4 << 20, GemmN = 1024, EngineGemm = (64, 96, 48), TableRows = 4096, EmbDim = 32, Ids = 2048,
            AttnInstances = 3, AttnH = (10, 20), AttnR = (3, 6), AttnT = (2, 4),
            Model = MtfmConfig.Tiny with
            {
                DModel = 8, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 4, TowerWidth = 4, EmbeddingDim = 4, TokenizerHidden = 8,
            },
            PresetName = "test-size", Data = SyntheticConfig.Tiny with { Users = 240 }, BatchTokens = 512, Warmup = 1, Timed = 2, CpuWarmup = 1, CpuTimed = 2, Reps = 3, Warm = 1,
        };
    }

    private sealed class Options
    {
        public bool Emulated, Small, Cpu, CpuOnly, HostOnly, RealBulk;
        public string? Out;
        public double? CpuRef;
        public int CpuThreads = Environment.ProcessorCount;
        public double BudgetSeconds = 300;
        public string? Preset;
        public int? Blocks, BatchTokens, Warmup, Timed;

        public static Options Parse(string[] args)
        {
            var o = new Options();
            for (int i = 1; i < args.Length; i++)
            {
                string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
                double Number(string name)
                {
                    string v = Value();
                    return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && d > 0
                        ? d : throw new ArgumentException($"{name} {v}: expected a positive number.");
                }
                switch (args[i])
                {
                    case "--emulated": o.Emulated = true; break;
                    case "--small": o.Small = true; break;
                    case "--cpu": o.Cpu = true; break;
                    case "--cpu-only": o.CpuOnly = true; break;
                    case "--host-only": o.HostOnly = true; break;
                    case "--real-bulk": o.RealBulk = true; break;
                    case "--out": o.Out = Value(); break;
                    case "--cpu-ref": o.CpuRef = Number("--cpu-ref"); break;
                    case "--cpu-threads": o.CpuThreads = (int)Number("--cpu-threads"); break;
                    case "--budget-s": o.BudgetSeconds = Number("--budget-s"); break;
                    case "--preset": o.Preset = Value(); break;
                    case "--blocks": o.Blocks = (int)Number("--blocks"); break;
                    case "--batch-tokens": o.BatchTokens = (int)Number("--batch-tokens"); break;
                    case "--steps":
                        var parts = Value().Split(',');
                        if (parts.Length != 2 || !int.TryParse(parts[0], out var w) || !int.TryParse(parts[1], out var t) || w < 0 || t < 1)
                            throw new ArgumentException($"--steps {string.Join(',', parts)}: expected WARMUP,TIMED (e.g. 8,40).");
                        (o.Warmup, o.Timed) = (w, t);
                        break;
                    default:
                        throw new ArgumentException($"cuda-quick: unknown option '{args[i]}' (use --emulated, --small, --cpu, --cpu-only, --host-only, --real-bulk, " +
                            "--cpu-ref EXPOSURES_PER_S, --cpu-threads N, --budget-s S, --out FILE, --preset NAME, --blocks N, --batch-tokens N, --steps W,T).");
                }
            }
            return o;
        }
    }

    public static int Run(string[] args)
    {
        Options o;
        try { o = Options.Parse(args); }
        catch (ArgumentException e) { Console.Error.WriteLine(e.Message); return 64; }
        var sizes = o.Small ? Sizes.Small : Sizes.Full;
        try
        {
            if (o.Preset is not null) sizes = sizes with { Model = MtfmConfig.Preset(o.Preset), PresetName = o.Preset };
            if (o.Blocks is { } nb) sizes = sizes with { Model = sizes.Model with { Blocks = nb }, PresetName = sizes.PresetName + $", {nb} blocks" };
            if (o.BatchTokens is { } bt) sizes = sizes with { BatchTokens = bt };
            if (o.Warmup is { } w) sizes = sizes with { Warmup = w, CpuWarmup = w, Timed = o.Timed!.Value, CpuTimed = o.Timed.Value };
            sizes.Model.Validate();
        }
        catch (ArgumentException e) { Console.Error.WriteLine(e.Message); return 64; }
        var report = new QuickReport(o.Out);
        if (o.HostOnly) return HostBound.Run(sizes, o.CpuRef ?? HostBound.CpuReference, o.Emulated, !o.RealBulk, report,
            o.Warmup is null ? 200 : sizes.Warmup, o.Timed ?? 200);
        var clock = Stopwatch.StartNew();
        report.Header($"## CUDA quick table ({(o.CpuOnly ? "CPU backend only" : o.Emulated ? "emulated device" : "GPU")}{(o.Small ? ", --small sizes" : "")}), " +
            $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} host cores, .NET {Environment.Version}");
        bool failed = false;
        TrainFigures? cpu = null;
        if (o.CpuOnly || o.Cpu)
        {
            failed |= !Try(report, "training on the CPU backend", () =>
            {
                using var be = new CpuBackend(o.CpuThreads);
                cpu = TrainThroughput.Measure(be, sizes.Model, sizes.Data, sizes.BatchTokens, sizes.CpuWarmup, sizes.CpuTimed, Console.Out);
                TrainRow(report, $"train step, CPU backend ({o.CpuThreads} threads)", sizes, cpu);
            });
            if (o.CpuOnly) return failed ? 1 : 0;
        }

        CudaBackend backend;
        try
        {
            backend = o.Emulated ? CudaBackend.OpenEmulated() : CudaBackend.OpenDevice();
        }
        catch (CudaNotAvailableException e)
        {
            report.Note(e.Message);
            Console.Error.WriteLine($"cuda-quick: {e.Message}");
            return 2;
        }
        catch (Exception e)
        {
            report.Row("opening the device", "-", null, "error", $"{e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}");
            Console.Error.WriteLine(e);
            return 1;
        }
        using (backend)
        {
            var d = backend.Driver;
            string dev = d is NativeCudaDriver n
                ? $"{d.DeviceName}, compute capability {d.ComputeCapability / 10}.{d.ComputeCapability % 10}, {n.MultiprocessorCount} SMs, {n.TotalMemory / (1L << 30)} GiB"
                : d.DeviceName;
            using var timer = new DeviceTimer(d, backend.Stream);
            report.Header($"Device: {dev}; timing: {timer.Method}; median of N repetitions after warm-up; random data (never zeros).");
            if (!d.IsEmulated)
                report.Header($"Libraries: {CudaLibraries.LoadedPath(CudaLibrary.Driver)}, {CudaLibraries.LoadedPath(CudaLibrary.Nvrtc)}, " +
                    $"{CudaLibraries.LoadedPath(CudaLibrary.Cublas) ?? "no cuBLAS"}.");
            var ctx = new Context(backend, timer, sizes, report, clock, o.BudgetSeconds);
            double copy = double.NaN, bf16 = double.NaN, gather = double.NaN;
            var attn = new List<(string Variant, bool Target, double Flops)>();
            var gpuRuns = new List<(string Variant, TrainFigures Figures)>();
            failed |= !ctx.Section("copy", () => copy = Copy(ctx));
            failed |= !ctx.Section("cuBLAS GEMM", () => bf16 = CublasGemms(ctx));
            failed |= !ctx.Section("embedding gather", () => gather = Gather(ctx, copy));
            foreach (var v in AttentionVariants)
                failed |= !ctx.Section($"attention ({v.Name})", () => attn.AddRange(Attention(ctx, v.Name, v.Select, bf16)));
            foreach (var v in AttentionVariants)
                failed |= !ctx.Section($"training on CUDA ({v.Name} attention forward)", () =>
                {
                    v.Select(backend);
                    var f = TrainThroughput.Measure(backend, sizes.Model, sizes.Data, sizes.BatchTokens, sizes.Warmup, sizes.Timed, Console.Out);
                    gpuRuns.Add((v.Name, f));
                    TrainRow(report, $"train step, CUDA backend, {v.Name} attention forward{(d.IsEmulated ? " (emulated)" : "")}", sizes, f);
                });
            AttentionVariants[0].Select(backend);
            failed |= !ctx.Section("engine GEMM", () => EngineGemm(ctx));

            // ---- the issue's targets
            bool emu = d.IsEmulated; // emulated timings say nothing about a GPU: targets are shown, never judged
            if (emu) report.Note("Emulated device: every figure is a host-emulation timing; the target rows are shown but not judged.");
            report.Target("embedding gather bandwidth ÷ copy bandwidth", Pct(gather / copy), "≥ 60 %", emu ? null : Met(gather / copy, 0.60));
            foreach (var (variant, target, flops) in attn)
                report.Target($"attention forward ({variant}, {(target ? "target" : "full")} layer) ÷ dense bf16 GEMM rate",
                    Pct(flops / bf16), variant == "bf16" ? "≥ 30 %" : "≥ 30 % (applies to the bf16 variant)",
                    variant == "bf16" && !emu ? Met(flops / bf16, 0.30) : null);
            foreach (var (variant, gpu) in gpuRuns)
            {
                double? cpuRate = cpu?.ExposuresPerSecond ?? o.CpuRef;
                string src = cpu is not null ? "CPU measured in this run" : o.CpuRef is not null ? "--cpu-ref (CPU figure from BENCHMARKS.md)" : "no CPU figure";
                double ratio = cpuRate is { } c ? gpu.ExposuresPerSecond / c : double.NaN;
                report.Target($"`{sizes.PresetName}` training examples/s, CUDA ({variant} attention forward) ÷ CPU ({src})",
                    double.IsFinite(ratio) ? $"{QuickReport.F(ratio, 1)}×" : "-", "≥ 20×", emu || !double.IsFinite(ratio) ? null : ratio >= 20);
                report.Target($"host synchronisations inside the timed training steps ({variant})", gpu.SyncsInTimedSteps.ToString(CultureInfo.InvariantCulture) +
                    (gpu.SyncsInTimedSteps > 0 ? $" (last: {gpu.LastSync})" : "") +
                    $"; plus {gpu.BackPressureWaits} back-pressure waits at step boundaries", "0", gpu.SyncsInTimedSteps == 0);
            }
            report.Note("Ratios use medians. Copy: cuMemcpyDtoDAsync, bytes = read + written. bf16 GEMM: cublasGemmEx, A/B/C bf16, " +
                "CUBLAS_COMPUTE_32F, default algorithm (tensor cores), 2·m·n·k flops. Gather: the engine's mtfm_gather_rows kernel " +
                "through CudaOps.GatherRows (the launch CudaBackend.GatherRows makes), fp32 table, Int32 ids, bytes = rows read + rows " +
                "written + ids read; the backend row adds its host-side index check (burst of back-to-back calls). Attention: " +
                "CudaBackend.HstuAttention (fused fp32 kernel, or the bf16 tensor-core kernel for the bf16 rows), flops = 2·(dqk + dv) per visible (query, key) pair per query head " +
                "(FlopCounter's count; masked and padded work not counted). Training: MtfmTrainer on synthetic data, examples = " +
                "labelled exposures (T tokens), clock from a device wait after the warm-up steps to the end of the run (device drained).");
            report.Note($"Total wall time of this table: {clock.Elapsed.TotalSeconds:F1} s.");
        }
        return failed ? 1 : 0;
    }

    private static string Pct(double r) => double.IsFinite(r) ? $"{QuickReport.F(100 * r, 1)} %" : "-";

    private static bool? Met(double r, double target) => double.IsFinite(r) ? r >= target : null;

    private static bool Try(QuickReport report, string what, Action body)
    {
        try
        {
            body();
            return true;
        }
        catch (Exception e)
        {
            report.Row(what, "-", null, "error", $"{e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}");
            Console.Error.WriteLine(e);
            return false;
        }
    }

    private static void TrainRow(QuickReport report, string name, Sizes s, TrainFigures f)
    {
        double[] perStep = f.StepMilliseconds ?? [f.MillisecondsPerStep];
        report.Row(name, $"`{s.PresetName}` model, {f.Parameters:N0} parameters, " +
                $"{f.Tokens / f.TimedSteps:N0} tokens/step, {f.WarmupSteps}+{f.TimedSteps} steps", perStep,
            $"{QuickReport.F(f.StepsPerSecond, 2)} steps/s, {QuickReport.F(f.ExposuresPerSecond, 0)} examples/s",
            $"{QuickReport.F(f.InstancesPerSecond, 0)} instances/s, {QuickReport.F(f.TokensPerSecond, 0)} tokens/s; " +
            (f.StepMilliseconds is null ? "median = mean over the timed steps (the host runs ahead of the device)" : "per-step host times (synchronous backend)") +
            $"; syncs inside timed steps: {f.SyncsInTimedSteps}" +
            (f.BackPressureWaits > 0 ? $"; back-pressure waits at step boundaries: {f.BackPressureWaits} (host > {CudaBatchPrefetch.DefaultMaxStepsInFlight} steps ahead of the device)" : ""));
    }

    /// <summary>Shared state of one run.</summary>
    private sealed class Context(CudaBackend backend, DeviceTimer timer, Sizes sizes, QuickReport report, Stopwatch clock, double budget)
    {
        public CudaBackend Backend { get; } = backend;
        public ICudaDriver Driver => Backend.Driver;
        public DeviceTimer Timer { get; } = timer;
        public Sizes Sizes { get; } = sizes;
        public QuickReport Report { get; } = report;

        public double[] Time(Action op, int? reps = null) => Timer.Time(op, Sizes.Warm, reps ?? Sizes.Reps);

        /// <summary>Runs a section unless the time budget is spent; a failure becomes an error row.</summary>
        public bool Section(string name, Action body)
        {
            if (clock.Elapsed.TotalSeconds > budget)
            {
                Report.Row(name, "-", null, "skipped", $"time budget of {budget:F0} s spent");
                return true;
            }
            return Try(Report, name, body);
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Ceilings

    private static double Copy(Context c)
    {
        long bytes = c.Sizes.CopyBytes;
        ulong src = c.Driver.Allocate(bytes), dst = c.Driver.Allocate(bytes);
        try
        {
            DeviceFill.Floats(c.Driver, src, bytes / 4, 1);
            DeviceFill.Floats(c.Driver, dst, bytes / 4, 2);
            var ms = c.Time(() => c.Driver.CopyDeviceToDeviceAsync(dst, src, bytes, c.Backend.Stream));
            double gbs = 2.0 * bytes / (DeviceTimer.Median(ms) * 1e-3) / 1e9;
            c.Report.Row("device-to-device copy (ceiling)", $"{bytes >> 20} MiB → {bytes >> 20} MiB", ms, $"{QuickReport.F(gbs, 0)} GB/s",
                "bytes read + written");
            return gbs;
        }
        finally
        {
            c.Driver.Free(src);
            c.Driver.Free(dst);
        }
    }

    /// <summary>cuBLAS bf16 (the ceiling), fp32 and tf32 GEMMs; returns the bf16 rate in flop/s (NaN without cuBLAS).</summary>
    private static double CublasGemms(Context c)
    {
        int n = c.Sizes.GemmN;
        if (!c.Backend.UsesCublas)
        {
            c.Report.Row("cuBLAS GEMMs (bf16 ceiling, fp32, tf32)", $"{n}³", null, "n/a",
                c.Driver.IsEmulated ? "the emulated device has no cuBLAS" : "cuBLAS did not load");
            return double.NaN;
        }
        long elems = (long)n * n;
        c.Driver.MakeCurrent(); // cuBLAS binds the handle to the context current on this thread
        nint h = Cublas.Create();
        ulong a = 0, b = 0, cc = 0;
        try
        {
            Cublas.SetStream(h, c.Backend.Stream);
            double flops = 2.0 * n * n * (double)n;
            // bf16: A, B, C bf16, fp32 accumulation.
            a = c.Driver.Allocate(elems * 2); b = c.Driver.Allocate(elems * 2); cc = c.Driver.Allocate(elems * 2);
            DeviceFill.Bf16(c.Driver, a, elems, 3);
            DeviceFill.Bf16(c.Driver, b, elems, 4);
            DeviceFill.Bf16(c.Driver, cc, elems, 5);
            var ms = c.Time(() => Cublas.GemmBf16(h, false, false, n, n, n, 1f, a, n, b, n, 0f, cc, n), reps: Math.Min(c.Sizes.Reps, 10));
            double bf16 = flops / (DeviceTimer.Median(ms) * 1e-3);
            c.Report.Row("cuBLAS bf16 GEMM (ceiling)", $"{n}×{n}×{n}", ms, $"{QuickReport.F(bf16 / 1e12, 1)} TFLOP/s",
                "A/B/C bf16, CUBLAS_COMPUTE_32F");
            c.Driver.Free(a); c.Driver.Free(b); c.Driver.Free(cc);
            a = b = cc = 0;
            // fp32 (the engine's own cuBLAS setting) and tf32.
            a = c.Driver.Allocate(elems * 4); b = c.Driver.Allocate(elems * 4); cc = c.Driver.Allocate(elems * 4);
            DeviceFill.Floats(c.Driver, a, elems, 6);
            DeviceFill.Floats(c.Driver, b, elems, 7);
            DeviceFill.Floats(c.Driver, cc, elems, 8);
            foreach (var (name, compute) in new[] { ("fp32", Cublas.CUBLAS_COMPUTE_32F), ("tf32", Cublas.CUBLAS_COMPUTE_32F_FAST_TF32) })
            {
                var t = c.Time(() => Cublas.GemmEx(h, false, false, n, n, n, 1f, a, Cublas.CUDA_R_32F, n, b, Cublas.CUDA_R_32F, n, 0f, cc,
                    Cublas.CUDA_R_32F, n, compute), reps: Math.Min(c.Sizes.Reps, 10));
                c.Report.Row($"cuBLAS {name} GEMM (reference)", $"{n}×{n}×{n}", t,
                    $"{QuickReport.F(flops / (DeviceTimer.Median(t) * 1e-3) / 1e12, 1)} TFLOP/s",
                    name == "fp32" ? "CUBLAS_COMPUTE_32F: what CudaBackend.Gemm uses" : "CUBLAS_COMPUTE_32F_FAST_TF32");
            }
            return bf16;
        }
        finally
        {
            if (a != 0) c.Driver.Free(a);
            if (b != 0) c.Driver.Free(b);
            if (cc != 0) c.Driver.Free(cc);
            Cublas.Destroy(h);
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Engine kernels

    private static void EngineGemm(Context c)
    {
        var (m, n, k) = c.Sizes.EngineGemm;
        var be = c.Backend;
        using var a = be.Allocate(DType.Float32, [m, k]);
        using var b = be.Allocate(DType.Float32, [k, n]);
        using var y = be.Allocate(DType.Float32, [m, n]);
        DeviceFill.Floats(c.Driver, be.DevicePointer(a), a.Length, 9);
        DeviceFill.Floats(c.Driver, be.DevicePointer(b), b.Length, 10);
        DeviceFill.Floats(c.Driver, be.DevicePointer(y), y.Length, 11);
        var ms = c.Time(() => be.Gemm(false, false, 1f, a, b, 0f, y));
        double rate = 2.0 * m * n * k / (DeviceTimer.Median(ms) * 1e-3);
        c.Report.Row("CudaBackend.Gemm (engine path)", $"{m}×{n}×{k} (tokens × projection)", ms, $"{QuickReport.F(rate / 1e12, 2)} TFLOP/s",
            be.UsesCublas ? "cuBLAS fp32 via cublasGemmStridedBatchedEx" : "tiled gemm.cu kernel (no cuBLAS)");
    }

    /// <summary>The gather kernel's bandwidth in GB/s.</summary>
    private static double Gather(Context c, double copyGbs)
    {
        var be = c.Backend;
        int rows = c.Sizes.TableRows, dim = c.Sizes.EmbDim, m = c.Sizes.Ids;
        using var table = be.Allocate(DType.Float32, [rows, dim]);
        using var ids = be.Allocate(DType.Int32, [m]);
        using var dst = be.Allocate(DType.Float32, [m, dim]);
        DeviceFill.Floats(c.Driver, be.DevicePointer(table), table.Length, 12);
        DeviceFill.Floats(c.Driver, be.DevicePointer(dst), dst.Length, 13);
        var rng = new Random(14);
        var host = new int[m];
        for (int i = 0; i < m; i++) host[i] = rng.Next(rows);
        be.Upload<int>(host, ids);
        be.Synchronize();
        ulong pt = be.DevicePointer(table), pi = be.DevicePointer(ids), pd = be.DevicePointer(dst);
        double bytes = 2.0 * m * dim * sizeof(float) + (double)m * sizeof(int);
        var ms = c.Time(() => be.Ops.GatherRows(pt, pi, false, pd, m, dim, be.Stream), reps: Math.Max(c.Sizes.Reps, 2 * c.Sizes.Reps));
        double gbs = bytes / (DeviceTimer.Median(ms) * 1e-3) / 1e9;
        c.Report.Row("embedding gather kernel (mtfm_gather_rows)", $"{m:N0} random ids of a {rows:N0}×{dim} fp32 table", ms,
            $"{QuickReport.F(gbs, 0)} GB/s", double.IsFinite(copyGbs) ? $"{QuickReport.F(100 * gbs / copyGbs, 1)} % of copy" : "");
        const int Burst = 10;
        var burst = c.Time(() => { for (int i = 0; i < Burst; i++) be.GatherRows(table, ids, dst); }, reps: Math.Max(3, c.Sizes.Reps / 4));
        for (int i = 0; i < burst.Length; i++) burst[i] /= Burst;
        c.Report.Row("CudaBackend.GatherRows (kernel + host index check)", $"same, {Burst} back-to-back calls per repetition", burst,
            $"{QuickReport.F(bytes / (DeviceTimer.Median(burst) * 1e-3) / 1e9, 0)} GB/s", "per call; host-bound when the check outlasts the kernel");
        return gbs;
    }

    /// <summary>Full- and target-layer forward of one precision variant; returns (variant, target?, flop/s).</summary>
    private static List<(string, bool, double)> Attention(Context c, string variant, Action<CudaBackend> select, double bf16)
    {
        var be = c.Backend;
        var s = c.Sizes;
        int h = s.Model.Heads, g = s.Model.KvHeads, dqk = s.Model.Dqk, dv = s.Model.Dv;
        var batch = new AttentionBatch(s.AttnInstances, s.AttnH, s.AttnR, s.AttnT);
        using var layout = batch.Layout();
        int n = batch.Tokens, nt = batch.Targets.Length;
        using var qFull = be.Allocate(DType.Float32, [n, h * dqk]);
        using var qTarget = be.Allocate(DType.Float32, [nt, h * dqk]);
        using var k = be.Allocate(DType.Float32, [n, g * dqk]);
        using var v = be.Allocate(DType.Float32, [n, g * dv]);
        using var rab = be.Allocate(DType.Float32, [h, layout.RabWidth]);
        using var oFull = be.Allocate(DType.Float32, [n, h * dv]);
        using var oTarget = be.Allocate(DType.Float32, [nt, h * dv]);
        ulong seed = 20;
        foreach (var t in new[] { qFull, qTarget, k, v, oFull, oTarget })
            DeviceFill.Floats(c.Driver, be.DevicePointer(t), t.Length, seed++);
        DeviceFill.Floats(c.Driver, be.DevicePointer(rab), rab.Length, seed, 0.1f);
        select(be);
        var results = new List<(string, bool, double)>();
        foreach (bool target in new[] { false, true })
        {
            var q = target ? qTarget : qFull;
            var o = target ? oTarget : oFull;
            long pairs = batch.VisiblePairs(target, h, g, dqk, dv);
            double flops = AttentionBatch.ForwardFlops(pairs, h, dqk, dv);
            var ms = c.Time(() => be.HstuAttention(layout, target, h, g, q, k, v, rab, o));
            double rate = flops / (DeviceTimer.Median(ms) * 1e-3);
            c.Report.Row($"HSTU attention forward, {variant}, {(target ? "target" : "full")} layer",
                $"{batch}; h={h}, g={g}, dqk=dv={dqk}; {pairs:N0} visible pairs", ms, $"{QuickReport.F(rate / 1e12, 2)} TFLOP/s",
                double.IsFinite(bf16) ? $"{QuickReport.F(100 * rate / bf16, 2)} % of bf16 GEMM" : "");
            results.Add((variant, target, rate));
        }
        return results;
    }
}
