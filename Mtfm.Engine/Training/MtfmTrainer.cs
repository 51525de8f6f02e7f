using System.Diagnostics;
using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Evaluation;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Training;

/// <summary>A progress report of <see cref="MtfmTrainer.Train"/>.</summary>
internal readonly record struct TrainProgress(int Epoch, long Step, long TotalSteps, double Loss, double ExposuresPerSecond,
    double InstancesPerSecond, TimeSpan Elapsed, TimeSpan Eta, double? ValidGauc);

/// <summary>What a training run did. <c>LossCurve</c> holds the training loss (Σ over tasks of the batch mean BCE, without the ranking term of <see cref="TrainOptions.RankingLossWeight"/>) per window of steps; <c>ValidCurve</c>'s ValidLoss is the same objective on the validation part (<see cref="TrainingObjective"/>).</summary>
internal sealed record TrainResult(long Steps, int Epochs, double BestValidGauc, long BestStep, double TrainSeconds,
    double ExposuresPerSecond, double InstancesPerSecond, IReadOnlyList<(long Step, double Loss)> LossCurve,
    IReadOnlyList<(long Step, double ValidGauc, double ValidLoss)> ValidCurve);

/// <summary>
/// Trains an <see cref="MtfmModel"/> on the CPU backend: AdamW on dense parameters, row-sparse (lazy) Adam on embedding
/// tables, linear warm-up then cosine decay, global-norm clipping, an exponential moving average of the dense weights
/// (<see cref="WeightAverage"/>), early stopping on the validation CTR GAUC of the averaged weights with the best of
/// them restored. Deterministic for a fixed seed and thread count.
/// </summary>
internal sealed class MtfmTrainer
{
    private readonly MtfmModel _model;
    private readonly TrainOptions _o;
    private readonly TrainingDevice _device;  // everything backend-specific of a step (TrainingDevice.For)
    private readonly IOptimizerStep _step;

    public MtfmTrainer(MtfmModel model, TrainOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _model = model;
        _o = options;
        if (options.CheckpointDirectory is { } dir)
        {
            Checkpoints = new CheckpointStore(dir, options.KeepCheckpoints);
            Checkpoints.EnsureWritable(); // created now; an unwritable folder fails before any training
        }
        _device = TrainingDevice.For(model.Backend, model.Parameters);
        _step = _device.Step;
    }

    /// <summary>Called after each training step (for tests: e.g. sampling the device's synchronisation count).</summary>
    internal Action<long>? StepCompleted { get; set; }

    /// <summary>Messages about checkpoints, resumes and skipped non-finite steps (default: none).</summary>
    internal Action<string>? Log { get; set; }

    /// <summary>Tests: called with each training batch before its step (e.g. to inject a NaN).</summary>
    internal Action<long, JaggedBatch>? BeforeStep { get; set; }

    /// <summary>The checkpoint folder of this run (null when <see cref="TrainOptions.CheckpointDirectory"/> is not set).</summary>
    internal CheckpointStore? Checkpoints { get; }

    /// <summary>Steps skipped because their loss or a gradient was not finite.</summary>
    public long SkippedSteps { get; private set; }

    /// <summary>Trains on <paramref name="train"/>, validating on <paramref name="valid"/>.</summary>
    public TrainResult Train(AggregatedInstances train, BatchBuilder trainBatches, BatchBuilder valid, Action<TrainProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(trainBatches);
        ArgumentNullException.ThrowIfNull(valid);
        bool prefetch = _o.PrefetchBatches ?? _device.FreeCoreForBatches;
        // Without prefetch a batch is built between steps on the training thread while the CPU pool idles: its history
        // statistics (the largest part of the build) are computed on the pool, bit-identical to a serial build. With
        // prefetch the build overlaps the step and stays on its own thread.
        // The builders get their own setting back afterwards (they may outlive this backend's pool).
        var (trainParallel, validParallel) = (trainBatches.Parallel, valid.Parallel);
        if (!prefetch && _model.Backend is CpuBackend cpu)
        {
            trainBatches.Parallel ??= cpu.Pool.For;
            valid.Parallel ??= cpu.Pool.For;
        }
        try { return Run(trainBatches, valid, progress, prefetch); }
        finally { (trainBatches.Parallel, valid.Parallel) = (trainParallel, validParallel); }
    }

    private TrainResult Run(BatchBuilder trainBatches, BatchBuilder valid, Action<TrainProgress>? progress, bool prefetch)
    {
        // The cross-user state serving reads: where the pass over the training log's store ended.
        if (_model.Config.PopulationStatistics)
        {
            var state = (trainBatches.Population ?? throw new ArgumentException(
                "the model reads population statistics: build its batches with model.Config.Batches(instances, stats).", nameof(trainBatches))).FinalState;
            var c = _model.Config;
            foreach (var (b, name) in new[] { (trainBatches, nameof(trainBatches)), (valid, nameof(valid)) })
                if (b.Population is { } p && !p.FinalState.ReadsWith(c.UserRecentRatePrior, c.UserRatesAtWindowStart))
                    throw new ArgumentException($"the batches read the user columns with {p.FinalState.RulesText}, the model with " +
                        $"{PopulationStatistics.Rules(c.UserRecentRatePrior, c.UserRatesAtWindowStart)} (MtfmConfig.UserRecentRatePrior, " +
                        $"UserRatesAtWindowStart): build them with model.Config.Batches(instances, stats).", name);
            _model.Population = state;
        }
        long batchesPerEpoch = trainBatches.CountBatches(_o.BatchTokens);
        int epochs = _o.ResolveEpochs(batchesPerEpoch);
        long total = batchesPerEpoch * epochs;
        if (_o.MaxSteps > 0) total = Math.Min(total, _o.MaxSteps);
        var lrDense = new LearningRateSchedule(_o.LearningRate, _o.LearningRate * 0.05f, (long)(total * _o.WarmupFraction), total);
        var lrEmb = new LearningRateSchedule(_o.EmbeddingLearningRate, _o.EmbeddingLearningRate * 0.05f, (long)(total * _o.WarmupFraction), total);
        var denseOpt = new AdamOptions { WeightDecay = _o.WeightDecay };
        var embOpt = new AdamOptions();
        var stopper = new EarlyStopping(_o.Patience, MetricGoal.Maximize);
        var lossCurve = new List<(long, double)>();
        var validCurve = new List<(long, double, double)>();
        float[][]? best = null;
        long step = 0, exposures = 0, instances = 0, skipInFirstEpoch = 0;
        int epochsRun = 0, firstEpoch = 0, consecutiveBad = 0;
        double? lastGauc = null;
        // The weight average (TrainOptions.WeightAverageDecay) starts at the initial weights; a resume overwrites it.
        using var average = _o.WeightAverageDecay > 0 ? new WeightAverage(_model.Backend, _model.Parameters, _o.WeightAverageDecay) : null;
        if (_o.Resume && Checkpoints!.LoadNewestValid(Log) is { } file)
        {
            var c = TrainingCheckpoint.Read(file);
            if (c.OptionsFingerprint != _o.Fingerprint())
                throw new ArgumentException($"checkpoint '{file.FilePath}' was written with other training options ({c.OptionsFingerprint}); this run has {_o.Fingerprint()}.");
            best = _device.LoadState(file, average);
            step = c.Step; exposures = c.Exposures; instances = c.Instances;
            firstEpoch = c.Epoch; skipInFirstEpoch = c.BatchInEpoch; epochsRun = c.Epoch;
            consecutiveBad = c.ConsecutiveNonFinite; SkippedSteps = c.SkippedSteps;
            var ss = c.Stopper;
            stopper.ImportState(ss.Evaluations, ss.LastStep, ss.BestValue, ss.BestStep, ss.EvaluationsSinceBest, ss.Stopped);
            lastGauc = c.LastGauc;
            lossCurve.AddRange(c.LossCurve);
            validCurve.AddRange(c.ValidCurve);
            Log?.Invoke($"resumed from '{file.FilePath}': step {step}, epoch {c.Epoch + 1}, batch {c.BatchInEpoch} of it");
        }
        else if (_o.Resume) Log?.Invoke($"resume: no valid checkpoint in '{Checkpoints!.Directory}'; starting from step 0");
        var sw = Stopwatch.StartNew();
        // Loss readback: immediate on the CPU; on CUDA summed on the device and read asynchronously (LossReadback).
        using var readback = _device.NewLossReadback();
        for (int epoch = firstEpoch; epoch < epochs && !stopper.Stopped; epoch++)
        {
            epochsRun = epoch + 1;
            long skip = epoch == firstEpoch ? skipInFirstEpoch : 0;
            long batchIndex = skip;
            IEnumerable<JaggedBatch> batches = trainBatches.Batches(_o.BatchTokens, int.MaxValue, _o.Seed * 1000003UL + (ulong)epoch, skip);
            if (_o.OnlyScenario is { } only) batches = batches.Select(b => { MaskOtherScenarios(b, only); return b; });
            // The next batch is assembled on a background thread while this step runs (BatchPrefetch): same batches,
            // same order. Automatic: where a core is left free (a CUDA step, a CPU pool smaller than the machine).
            if (prefetch) batches = BatchPrefetch.Ahead(batches);
            // On CUDA the next batch's inputs are uploaded on the copy stream while this step runs.
            var steps = _device.Stage(batches, _model.Layout, _model.Config);
            foreach (var (batch, staged) in steps)
            {
                BeforeStep?.Invoke(step + 1, batch);
                string? bad = null;
                using (var tape = new Tape(_model.Backend))
                {
                    var output = _model.Forward(tape, batch, staged: staged, rankingWeight: _o.RankingLossWeight);
                    // The backward frees every op output but the one it starts from: with a ranking term the reported
                    // loss is an inner node, so its value is copied first (in stream order on CUDA).
                    var loss = output.Loss.Value;
                    if (!ReferenceEquals(output.Objective, output.Loss))
                    {
                        loss = tape.Allocate(output.Loss.Value.Shape);
                        _model.Backend.Copy(output.Loss.Value, loss);
                    }
                    tape.Backward(output.Objective, releaseActivationGradients: true, releaseActivations: true); // frees activations and their gradients once consumed
                    bad = _device.NonFinite(output.Objective.Value);
                    if (bad is null) readback.Add(loss, step + 1);
                }
                if (bad is null)
                {
                    consecutiveBad = 0;
                    _step.Clip(_o.ClipNorm);
                    _step.Update(step + 1, lrDense.At(step), lrEmb.At(step), denseOpt, embOpt);
                }
                else
                {
                    // Skip: the batch is consumed, no parameter and no optimizer state changes.
                    foreach (var p in _model.Parameters) p.ZeroGrad();
                    SkippedSteps++;
                    consecutiveBad++;
                    Log?.Invoke($"step {step + 1} skipped: {bad}");
                    if (consecutiveBad >= _o.MaxConsecutiveNonFiniteSteps)
                        throw new InvalidOperationException($"training stopped at step {step + 1}: {consecutiveBad} consecutive steps had a non-finite loss or gradient " +
                            $"(last: {bad}); lower the learning rate or check the input data for NaN/∞ values.");
                }
                // A skipped step left the weights as they were; the average still moves (as on a device that skips by itself).
                average?.Update(step + 1);
                step++;
                batchIndex++;
                exposures += batch.TargetCount;
                instances += batch.InstanceCount;
                if (step % 10 == 0 || step == total) readback.Close();
                TakeLosses(wait: false, epoch);
                StepCompleted?.Invoke(step);
                if (_o.MaxSteps > 0 && step == _o.MaxSteps) break;
                if (_o.EvaluateEvery > 0 && step % _o.EvaluateEvery == 0 && Validate(step)) break;
                if (Checkpoints is not null && _o.CheckpointEvery > 0 && step % _o.CheckpointEvery == 0) SaveCheckpoint(epoch, batchIndex);
            }
            readback.Close(); // no window spans two epochs; a device's skip verdicts are in before validation
            TakeLosses(wait: true, epoch); // outside the steps: may wait for the device
            if (_o.MaxSteps > 0 && step == _o.MaxSteps) break; // a step-limited (throughput) run: no validation of the cut epoch
            if (_o.EvaluateEvery == 0 && Validate(step)) break;
            if (Checkpoints is not null && !stopper.Stopped) SaveCheckpoint(epoch + 1, 0);
        }
        double trainSecs = sw.Elapsed.TotalSeconds;
        if (best is not null) _step.Restore(best);
        else average?.Swap(); // never validated (a step-limited run): the averaged weights are what training returns
        return new TrainResult(step, epochsRun, stopper.BestValue, stopper.BestStep, trainSecs, exposures / trainSecs,
            instances / trainSecs, lossCurve, validCurve);

        void SaveCheckpoint(int epoch, long batchInEpoch)
        {
            // The open loss window is closed so the checkpoint holds every loss so far (an uninterrupted run with the
            // same checkpoint steps closes it at the same steps: curves stay identical).
            readback.Close();
            TakeLosses(wait: true, epoch);
            var w = new SafetensorsWriter();
            _device.AddState(w, best, average);
            new TrainingCheckpoint
            {
                Step = step, Epoch = epoch, BatchInEpoch = batchInEpoch, Exposures = exposures, Instances = instances,
                ConsecutiveNonFinite = consecutiveBad, SkippedSteps = SkippedSteps, Stopper = stopper.ExportState(), LastGauc = lastGauc,
                LossCurve = lossCurve, ValidCurve = validCurve, OptionsFingerprint = _o.Fingerprint(),
            }.AddTo(w);
            string path = Checkpoints!.Save(step, w);
            Log?.Invoke($"checkpoint: {path}");
        }

        // Records every loss window whose value is on the host (all of them with wait); a non-finite loss throws here,
        // which on CUDA is up to one window after the step that produced it.
        void TakeLosses(bool wait, int epoch)
        {
            while (readback.TryTake(wait, out var w))
            {
                if (w.Skipped > 0)
                {
                    // Steps the device skipped itself (its guard found a non-finite loss or gradient; nothing was updated).
                    SkippedSteps += w.Skipped;
                    string where = w.LastBadParameter >= 0 && w.LastBadParameter < _model.Parameters.Count
                        ? $"first non-finite gradient in parameter '{_model.Parameters[w.LastBadParameter].Name}'" : "non-finite loss";
                    Log?.Invoke($"steps {w.FirstStep}..{w.LastStep}: {w.Skipped} skipped on the device ({where})");
                    if (w.MaxConsecutiveSkipped >= _o.MaxConsecutiveNonFiniteSteps)
                        throw new InvalidOperationException($"training stopped at step {w.LastStep}: {w.MaxConsecutiveSkipped} consecutive steps had a non-finite loss or gradient " +
                            $"(last: {where}; found by the device's guard, up to one loss window late); lower the learning rate or check the input data for NaN/∞ values.");
                    if (w.Skipped == w.LastStep - w.FirstStep + 1) continue; // no loss to record
                }
                if (!double.IsFinite(w.Mean))
                    throw new InvalidOperationException($"The training loss became {w.Mean} in steps {w.FirstStep}..{w.LastStep}; lower the learning rate.");
                lossCurve.Add((w.LastStep, w.Mean));
                double secs = sw.Elapsed.TotalSeconds;
                progress?.Invoke(new TrainProgress(epoch, w.LastStep, total, w.Mean, exposures / secs, instances / secs,
                    sw.Elapsed, TimeSpan.FromSeconds(secs / step * (total - step)), lastGauc));
            }
        }

        bool Validate(long atStep)
        {
            sw.Stop(); // validation time does not count as training throughput
            average?.Swap(); // validate (and keep) the averaged weights
            var eval = ModelEvaluation.Evaluate(_model, valid, _o.BatchTokens);
            // Early stopping watches the CTR GAUC of what is trained: the pooled row, or the one scenario's row.
            int watched = _o.OnlyScenario ?? -1;
            var pooled = eval.Model.First(m => m.Scenario == watched && m.Task == 0);
            double g = double.IsNaN(pooled.Gauc) ? pooled.Auc : pooled.Gauc;
            lastGauc = g;
            // The validation loss is the training objective (Σ over tasks of the pooled mean BCE), on the training loss's scale.
            validCurve.Add((atStep, g, TrainingObjective.FromMetrics(eval.Model, _o.OnlyScenario)));
            var d = stopper.Report(atStep, g);
            if (d.IsNewBest) best = _step.Snapshot();
            average?.Swap(); // training continues from its own weights
            sw.Start();
            return d.ShouldStop;
        }
    }

    /// <summary>Single-scenario training: exposures of other scenarios keep their tokens but carry no label.</summary>
    private static void MaskOtherScenarios(JaggedBatch batch, int scenario)
    {
        int tasks = batch.TaskCount;
        for (int j = 0; j < batch.TargetCount; j++)
            if (batch.TargetScenario[j] != scenario)
                for (int k = 0; k < tasks; k++) batch.LabelMask[j * tasks + k] = 0;
    }

}
