using System.Diagnostics;
using Mtfm.Engine.Data;

namespace Mtfm.Bench;

/// <summary>
/// <c>batch-quick</c>: the host-side batch building of a training epoch on the data of <c>mtfm train</c> with no
/// arguments (synthetic default with click feedback tokens, user-window instances of the training part, population
/// statistics, batches of 4,096 tokens): the whole <see cref="BatchBuilder.Build"/> per batch and, separately, the
/// <see cref="HistoryStatistics.Fill"/> part of it (refilled on the built batches). On the CPU it runs on the training
/// thread between steps (no prefetch where every core is in the step), so each millisecond here is one of the step's.
/// The fill is also timed over the instances in parallel on a <see cref="Mtfm.Engine.Backends.Cpu.CpuWorkerPool"/>
/// of <c>--threads</c> (as the trainer runs it). Median of <c>--reps</c> epochs after one warm-up epoch.
/// <code>dotnet run -c Release --project Mtfm.Bench -- batch-quick [--reps 3] [--threads 2]</code>
/// </summary>
internal static class BatchQuick
{
    public static int Run(string[] args)
    {
        int reps = Step.StepQuick.IntArg(args, "--reps", 3);
        var store = SyntheticGenerator.Generate(SyntheticConfig.Default).Store;
        store = FeedbackTokens.Derive(store, FeedbackTokens.WithClickFeedback(store.Layout.Schema));
        var split = store.Layout.Schema.Split!;
        var train = UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Train, store.SortedByUserTime());
        var builder = new BatchBuilder(train, store.ComputeNumericStats(split.ValidStart), population: true);
        var history = new HistoryStatistics(store.Layout);
        Console.WriteLine($"batch-quick: synthetic default + click feedback tokens, {train.Count:N0} training instances, batches of 4,096 tokens, " +
            $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load average {Step.StepQuick.LoadAverage()}");
        using var pool = new Mtfm.Engine.Backends.Cpu.CpuWorkerPool(Step.StepQuick.IntArg(args, "--threads", 2));
        var build = new List<double>(); var fill = new List<double>(); var fillPool = new List<double>();
        int batches = 0;
        for (int r = 0; r <= reps; r++)
        {
            // Batches are built lazily by the enumeration and dropped after use, as in training; the refill of each
            // one is timed on its own and taken out of the enumeration's time.
            var total = Stopwatch.StartNew();
            var sw = new Stopwatch();
            var swPool = new Stopwatch();
            int count = 0;
            foreach (var b in builder.Batches(4096, int.MaxValue, (ulong)r + 1))
            {
                // Alternate which fill runs first (the second of two finds the caches and the GC in another state).
                for (int pass = 0; pass < 2; pass++)
                {
                    if ((pass == 0) == (count % 2 == 0)) { sw.Start(); history.Fill(b); sw.Stop(); }
                    else { swPool.Start(); history.Fill(b, pool.For); swPool.Stop(); }
                }
                count++;
            }
            double fillMs = sw.Elapsed.TotalMilliseconds, buildMs = total.Elapsed.TotalMilliseconds - fillMs - swPool.Elapsed.TotalMilliseconds;
            batches = count;
            if (r == 0) continue; // warm-up epoch (JIT tiers)
            build.Add(buildMs / batches); fill.Add(fillMs / batches); fillPool.Add(swPool.Elapsed.TotalMilliseconds / batches);
        }
        build.Sort(); fill.Sort(); fillPool.Sort();
        Console.WriteLine($"| part | ms per batch (median of {reps} epochs of {batches:N0} batches) | s per epoch |");
        Console.WriteLine("|---|---:|---:|");
        Console.WriteLine($"| BatchBuilder.Build (whole) | {build[reps / 2]:F3} | {build[reps / 2] * batches / 1000:F2} |");
        Console.WriteLine($"| of it HistoryStatistics.Fill | {fill[reps / 2]:F3} | {fill[reps / 2] * batches / 1000:F2} |");
        Console.WriteLine($"| HistoryStatistics.Fill on the pool ({pool.ThreadCount} threads, as the trainer) | {fillPool[reps / 2]:F3} | {fillPool[reps / 2] * batches / 1000:F2} |");
        return 0;
    }
}
