using System.Diagnostics;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Native;

namespace Mtfm.Bench.Cuda;

/// <summary>
/// <c>cuda-quick --host-only</c>: how fast the host can enqueue <c>base</c> training steps, i.e. the ceiling the host
/// puts on GPU training throughput. The real trainer (<see cref="TrainThroughput.Measure"/>) runs on a
/// <see cref="CudaBackend"/> over <see cref="HostOnlyCudaDriver"/>: everything but the kernels runs (memory, copies,
/// memsets, events, and all of the backend's host work), launches are counted and skipped. Per timed step: host wall
/// time between the trainer's step ends, minus the time the emulated device spent in its synchronous copies and
/// memsets (host memcpy/memset that a GPU does asynchronously; both figures are printed). The ceiling is the timed
/// steps' labelled exposures ÷ their net host time; it is compared with the rate the ×20 target needs (20 × the CPU
/// reference). Not a GPU figure: it leaves out the driver's own cost per launch (<c>cuLaunchKernel</c>, a few µs on a
/// GPU, estimated from the launch count) and cuBLAS's per call (GEMMs are tiled-kernel launches here, skipped).
/// Without <c>--emulated</c> on a machine with a GPU it wraps the real driver instead (cuBLAS off, so every GEMM is a
/// skipped launch too).
/// <para>
/// By default memsets and device-to-device copies of ≥ 64 KiB are counted but not performed
/// (<see cref="HostOnlyCudaDriver.SkipBulkBytes"/>): on the emulated device they are ~3 GB of host memset/memcpy per
/// <c>base</c> step (~200 ms, device work on a GPU) which would also flush the host caches the enqueueing code runs
/// from; the backend's code path is the same either way. <c>--real-bulk</c> performs them (their time is subtracted).
/// Default 200 warm-up + 200 timed steps: the tiered JIT needs that many fast steps to reach its final code; the
/// synthetic users are scaled with the steps (~90 batches per 2,000 users), which only grows the user-id table.
/// </para>
/// </summary>
internal static class HostBound
{
    /// <summary>The CPU backend's <c>base</c> training figure on the 2-core development machine (BENCHMARKS.md, "CUDA").</summary>
    public const double CpuReference = 635;

    /// <summary>Assumed host cost of one <c>cuLaunchKernel</c> on a GPU, for the estimate row (not measured here).</summary>
    public const double LaunchMicroseconds = 3;

    public static int Run(CudaQuick.Sizes sizes, double cpuReference, bool emulated, bool skipBulk, QuickReport report, int warmup, int timed)
    {
        report.Header($"## Host-bound ceiling of `{sizes.PresetName}` training on CUDA (launches skipped), " +
            $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} host cores, .NET {Environment.Version}");
        ICudaDriver inner;
        try
        {
            inner = emulated ? EmulatedCudaDriver.Open() : NativeCudaDriver.Open(0, new CudaKernelLoader(null));
        }
        catch (CudaNotAvailableException e)
        {
            report.Note(e.Message);
            Console.Error.WriteLine($"cuda-quick --host-only: {e.Message}");
            return 2;
        }
        var driver = new HostOnlyCudaDriver(inner) { SkipBulkBytes = skipBulk && emulated ? 64 << 10 : 0 };
        skipBulk &= emulated;
        using var backend = new CudaBackend(driver, ownsDriver: true, useCublas: false);
        report.Header($"Driver: {driver.DeviceName}; per-step host wall time between the trainer's step ends; {warmup} warm-up + {timed} timed steps.");
        var marks = new List<(long Step, long Ticks, long Launches, long Gemms, long Uploads, long Moves, long MoveTicks, long Gc, long Bytes, long Alloc)>();
        // ~100 batches of 4,096 tokens per 2,000 users: scale the synthetic users with the steps asked for.
        var data = sizes.Data with { Users = Math.Max(sizes.Data.Users, (int)Math.Ceiling((warmup + timed) / 90.0) * 2000) };
        TrainFigures figures;
        try
        {
            figures = TrainThroughput.Measure(backend, sizes.Model, data, sizes.BatchTokens, warmup, timed, Console.Out,
            step => marks.Add((step, Stopwatch.GetTimestamp(), driver.Launches, driver.GemmLaunches, driver.Uploads,
                driver.DataMovements, driver.DataMovementTicks, GC.CollectionCount(0), driver.DeviceBytes,
                GC.GetAllocatedBytesForCurrentThread())));
        }
        catch (Exception e)
        {
            report.Row("host-bound training", "-", null, "error", $"{e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}");
            Console.Error.WriteLine(e);
            return 1;
        }
        var rows = marks.Where(m => m.Step >= warmup).ToList(); // mark at step `warmup` opens the first timed interval
        int n = rows.Count - 1;
        var gross = new double[n];
        var net = new double[n];
        var launches = new double[n];
        var gemms = new double[n];
        var uploads = new double[n];
        var moveMs = new double[n];
        var moves = new double[n];
        long gcs = rows[^1].Gc - rows[0].Gc;
        double allocPerStep = (double)(rows[^1].Alloc - rows[0].Alloc) / Math.Max(1, rows.Count - 1);
        double deviceBytes = (double)(rows[^1].Bytes - rows[0].Bytes) / Math.Max(1, rows.Count - 1);
        double toMs = 1e3 / Stopwatch.Frequency;
        for (int i = 0; i < n; i++)
        {
            var (a, b) = (rows[i], rows[i + 1]);
            gross[i] = (b.Ticks - a.Ticks) * toMs;
            moveMs[i] = (b.MoveTicks - a.MoveTicks) * toMs;
            net[i] = gross[i] - moveMs[i];
            launches[i] = b.Launches - a.Launches;
            gemms[i] = b.Gemms - a.Gemms;
            uploads[i] = b.Uploads - a.Uploads;
            moves[i] = b.Moves - a.Moves;
        }
        double perStepExposures = (double)figures.Exposures / figures.TimedSteps;
        double ceiling = figures.Exposures / (net.Sum() * 1e-3);
        double medianCeiling = perStepExposures / (DeviceTimer.Median(net) * 1e-3);
        double needed = 20 * cpuReference;
        double launchMs = launches.Average() * LaunchMicroseconds * 1e-3;
        double withDriver = figures.Exposures / ((net.Sum() + n * launchMs) * 1e-3);
        string shape = $"`{sizes.PresetName}` model, {figures.Parameters:N0} parameters, {figures.Tokens / figures.TimedSteps:N0} tokens/step, " +
            $"{perStepExposures:N0} exposures/step, {warmup}+{timed} steps";
        report.Row("host time per step (gross)", shape, gross, $"{QuickReport.F(DeviceTimer.Median(gross), 1)} ms", "wall time between step ends");
        report.Row("emulated copies + memsets per step", $"{moves.Average():N0} calls/step, {deviceBytes / (1 << 20):N0} MiB memset/D→D per step" +
                (skipBulk ? " (those ≥ 64 KiB skipped; --real-bulk to perform them)" : ""), moveMs, $"{QuickReport.F(DeviceTimer.Median(moveMs), 1)} ms",
            "host memcpy/memset of the emulated device (asynchronous enqueues on a GPU): subtracted below");
        report.Row("host time per step (net)", "gross − emulated copies/memsets", net, $"{QuickReport.F(DeviceTimer.Median(net), 1)} ms",
            $"{launches.Average():N0} launches/step ({gemms.Average():N0} GEMMs, cuBLAS calls on a GPU), {uploads.Average():N0} H→D copies/step; " +
            $"{allocPerStep / 1024:N0} KiB managed allocations/step, {gcs} gen-0 GCs over the timed steps; " +
            $"host synchronisations inside the timed steps: {figures.SyncsInTimedSteps}");
        report.Target("host-bound ceiling (net, mean over the timed steps)", $"{QuickReport.F(ceiling, 0)} examples/s " +
            $"(median step: {QuickReport.F(medianCeiling, 0)})", $"≥ {QuickReport.F(needed, 0)} (20 × {QuickReport.F(cpuReference, 0)})", ceiling >= needed);
        report.Target("ceiling ÷ rate needed for ×20", $"{QuickReport.F(ceiling / needed, 2)}×", "≥ 3× leaves room for the device", ceiling >= 3 * needed);
        report.Target($"ceiling with {LaunchMicroseconds} µs of driver time per launch (estimate)",
            $"{QuickReport.F(withDriver, 0)} examples/s ({QuickReport.F(withDriver / needed, 2)}×)", $"≥ {QuickReport.F(needed, 0)}", withDriver >= needed);
        report.Note("Host-only bound, not a GPU figure: kernels do not run (launches are counted and skipped), the loss reads back 0. " +
            "On a GPU the step also needs the device time, which overlaps with the host's enqueueing (the trainer never blocks inside a step).");
        return 0;
    }
}
