using Mtfm.Engine.Training.Cuda;
using System.Diagnostics;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;

namespace Mtfm.Bench.Cuda;

/// <summary>What <see cref="TrainThroughput.Measure"/> found.</summary>
internal sealed record TrainFigures(string Backend, long Parameters, int WarmupSteps, int TimedSteps, double Seconds,
    long Exposures, long Instances, long Tokens, long SyncsInTimedSteps, long BackPressureWaits, string? LastSync,
    double[]? StepMilliseconds)
{
    public double StepsPerSecond => TimedSteps / Seconds;
    public double ExposuresPerSecond => Exposures / Seconds;
    public double InstancesPerSecond => Instances / Seconds;
    public double TokensPerSecond => Tokens / Seconds;
    public double MillisecondsPerStep => 1e3 * Seconds / TimedSteps;
}

/// <summary>
/// Training-step throughput of the real trainer (<see cref="MtfmTrainer"/>, forward + backward + clipping + AdamW /
/// row-sparse Adam) on synthetic data (<see cref="SyntheticGenerator"/>, user-window instances of the train days).
/// One trainer run of <c>warmup + timed</c> steps (<see cref="TrainOptions.MaxSteps"/>, so no validation): after step
/// <c>warmup</c> the harness waits for the device (<see cref="CudaBackend.Synchronize"/>) and starts the clock; the clock
/// stops when <see cref="MtfmTrainer.Train"/> returns, which is after its end-of-run wait for the last loss window, i.e.
/// after the device has finished the last step. Exposures/instances/tokens of the timed steps come from the same batch
/// order the trainer uses (epoch 0's seeded shuffle), checked against the trainer's own count.
/// Host synchronisations are sampled after every timed step (the "zero per step"). Between two steps a counted
/// <c>cuEventSynchronize</c> is <see cref="CudaBatchPrefetch.StageAhead"/>'s back-pressure (the host more than
/// <see cref="CudaBatchPrefetch.DefaultMaxStepsInFlight"/> steps ahead of the device; it runs first in the interval and is
/// the loop's only event wait), reported apart; every other counted call is a synchronisation inside a step.
/// <c>stepHook</c>, when given, is called first at the end of every step (warm-up included) with the step number (1-based).
/// </summary>
internal static class TrainThroughput
{
    public static TrainFigures Measure(IBackend backend, MtfmConfig config, SyntheticConfig data, int batchTokens,
        int warmupSteps, int timedSteps, TextWriter log, Action<long>? stepHook = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(warmupSteps);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(timedSteps);
        config.Validate();
        var setup = Stopwatch.StartNew();
        var store = SyntheticGenerator.Generate(data).Store;
        var split = store.Layout.Schema.Split!;
        var order = store.SortedByUserTime();
        var train = UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Train, order);
        var valid = UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Valid, order);
        var stats = store.ComputeNumericStats(split.ValidStart);
        var trainBatches = new BatchBuilder(train, stats);
        var options = new TrainOptions { Epochs = 1, BatchTokens = batchTokens, MaxSteps = warmupSteps + timedSteps };

        // The trainer's batch order for epoch 0 (MtfmTrainer: shuffleSeed = Seed * 1000003 + epoch).
        var sizes = trainBatches.Batches(batchTokens, shuffleSeed: options.Seed * 1000003UL)
            .Select(b => (b.TargetCount, b.InstanceCount, b.TokenCount)).ToList();
        if (sizes.Count < warmupSteps + timedSteps)
            throw new ArgumentException($"the synthetic data ({data.Users} users) gives {sizes.Count} batches of ≤ {batchTokens} tokens per epoch, " +
                $"fewer than the {warmupSteps + timedSteps} steps asked for: raise the user count.", nameof(data));
        var timed = sizes.Skip(warmupSteps).Take(timedSteps).ToList();
        log.WriteLine($"  data: {store.Count:N0} events, {train.Count:N0} train instances, {sizes.Count} batches per epoch ({setup.Elapsed.TotalSeconds:F1} s)");

        using var model = new MtfmModel(backend, config, store.Layout, seed: 1);
        var trainer = new MtfmTrainer(model, options);
        log.WriteLine($"  model and optimizer ready ({setup.Elapsed.TotalSeconds:F1} s)");
        var cuda = backend as CudaBackend;
        long lastCount = 0, backPressure = 0, inside = 0;
        var sw = new Stopwatch();
        var stamps = new List<double> { 0 }; // host clock at the end of each timed step (per-step times on the CPU)
        if (warmupSteps == 0) { cuda?.Synchronize(); lastCount = cuda?.Driver.SynchronizationCount ?? 0; sw.Start(); }
        trainer.StepCompleted = step =>
        {
            stepHook?.Invoke(step);
            if (step == warmupSteps)
            {
                log.WriteLine($"  warm-up steps enqueued ({setup.Elapsed.TotalSeconds:F1} s)");
                cuda?.Synchronize(); // harness: the device finishes the warm-up steps before the clock starts
                lastCount = cuda?.Driver.SynchronizationCount ?? 0;
                sw.Start();
            }
            else if (step > warmupSteps)
            {
                stamps.Add(sw.Elapsed.TotalMilliseconds);
                if (cuda is not null && step <= warmupSteps + timedSteps)
                {
                    long now = cuda.Driver.SynchronizationCount, delta = now - lastCount;
                    lastCount = now;
                    if (delta > 0 && cuda.Driver.LastSynchronization == "cuEventSynchronize") { backPressure++; inside += delta - 1; }
                    else inside += delta;
                }
            }
        };
        log.WriteLine($"  training {backend.Name}: {model.ParameterCount:N0} parameters, {warmupSteps} warm-up + {timedSteps} timed steps " +
            $"of ≤ {batchTokens} tokens ({train.Count:N0} train instances)");
        var result = trainer.Train(train, trainBatches, new BatchBuilder(valid, stats));
        sw.Stop();
        log.WriteLine($"  done ({setup.Elapsed.TotalSeconds:F1} s; timed part {sw.Elapsed.TotalSeconds:F2} s)");
        long all = sizes.Take(warmupSteps + timedSteps).Sum(s => (long)s.TargetCount);
        long reported = (long)Math.Round(result.ExposuresPerSecond * result.TrainSeconds);
        if (result.Steps != warmupSteps + timedSteps || Math.Abs(reported - all) > 1)
            throw new InvalidOperationException($"the trainer ran {result.Steps} steps over {reported} exposures; the harness expected " +
                $"{warmupSteps + timedSteps} steps over {all} (batch order out of step with MtfmTrainer).");
        return new TrainFigures(backend.Name, model.ParameterCount, warmupSteps, timedSteps, sw.Elapsed.TotalSeconds,
            timed.Sum(s => (long)s.TargetCount), timed.Sum(s => (long)s.InstanceCount), timed.Sum(s => (long)s.TokenCount),
            inside, backPressure, cuda?.Driver.LastSynchronization,
            cuda is null ? stamps.Zip(stamps.Skip(1), (a, b) => b - a).ToArray() : null);
    }
}
