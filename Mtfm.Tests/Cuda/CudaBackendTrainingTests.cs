using Mtfm.Engine.Training.Cuda;
using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Native;
using Mtfm.Engine.Tensors;
using Mtfm.Engine.Training;
using static Mtfm.Tests.Cuda.CudaTestDevice;

namespace Mtfm.Tests.Cuda;

/// <summary>
/// The CUDA optimizer step (<see cref="CudaOptimizerStep"/>: device-side global-norm clipping, multi-tensor AdamW with
/// per-parameter step counts, lazy row-sparse Adam with per-row step counts) against the CPU optimizer classes on the
/// same gradients, and <see cref="MtfmTrainer"/> on the CUDA backend against the CPU backend.
/// </summary>
public sealed class CudaBackendTrainingTests
{

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void OptimizerStepMatchesTheCpuOptimizers(string kind)
    {
        using var gpu = OpenBackend(kind);
        using var cpu = new CpuBackend(1);
        var rng = new Random(21);
        // (name, shape, sparse): a decayed weight, a bias (no decay), a LayerNorm-like [G, d] and an embedding table
        var specs = new (string Name, int[] Shape, bool Sparse)[] { ("l.w", [7, 5], false), ("l.b", [5], false), ("ln.gamma", [3, 4], false), ("emb.x", [11, 3], true) };
        var pc = new List<Parameter>();
        var pg = new List<Parameter>();
        foreach (var (name, shape, sparse) in specs)
        {
            var init = RandomFloats(rng, shape.Aggregate(1, (a, b) => a * b), -1, 1);
            pc.Add(new Parameter(name, cpu.FromHost<float>(init, shape), sparse, weightDecay: name == "l.w"));
            pg.Add(new Parameter(name, gpu.FromHost<float>(init, shape), sparse, weightDecay: name == "l.w"));
        }
        var step = new CudaOptimizerStep(gpu, pg);
        var dense = new Dictionary<int, AdamWState>();
        var rowState = new RowSparseAdamState(11, 3);
        var denseOpt = new AdamOptions { WeightDecay = 0.01f };
        var embOpt = new AdamOptions();
        for (int s = 1; s <= 4; s++)
        {
            // gradients: dense ones (the bias only from step 2 on: its step count lags), sparse rows with duplicates
            for (int i = 0; i < 3; i++)
            {
                if (i == 1 && s == 1) continue;
                var g = RandomFloats(rng, (int)pc[i].Value.Length, -2, 2);
                cpu.Upload<float>(g, pc[i].EnsureGrad());
                gpu.Upload<float>(g, pg[i].EnsureGrad());
            }
            int[] ids = s % 2 == 1 ? [4, 1, 4, 9, 0] : [1, 10, 1];
            var rows = RandomFloats(rng, ids.Length * 3, -2, 2);
            pc[3].AccumulateSparse(cpu.FromHost<int>(ids, ids.Length), cpu.FromHost<float>(rows, ids.Length, 3));
            pg[3].AccumulateSparse(gpu.FromHost<int>(ids, ids.Length), gpu.FromHost<float>(rows, ids.Length, 3));

            // CPU reference: the trainer's Clip + Update
            float clip = s == 3 ? 0f : 1f;
            if (clip > 0)
            {
                double ss = 0;
                foreach (var p in pc)
                {
                    if (p.Grad is { } g) ss += GradientClipping.SumOfSquares(cpu.ToHost<float>(g));
                    if (p.SparseGradient is { } sg) ss += GradientClipping.SumOfSquares(cpu.ToHost<float>(sg.Values));
                }
                float f = GradientClipping.ScaleFactor(Math.Sqrt(ss), clip);
                Assert.True(f < 1f, "the test gradients must be large enough to be clipped");
                foreach (var p in pc)
                {
                    if (p.Grad is { } g) cpu.Scale(g, f, g);
                    if (p.SparseGradient is { } sg) cpu.Scale(sg.Values, f, sg.Values);
                }
            }
            for (int i = 0; i < pc.Count; i++)
            {
                var p = pc[i];
                if (p.SparseGrad)
                {
                    var sg = p.SparseGradient!;
                    var table = cpu.ToHost<float>(p.Value);
                    rowState.Update(table, cpu.ToHost<int>(sg.Indices), cpu.ToHost<float>(sg.Values), 0.05f, embOpt);
                    cpu.Upload<float>(table, p.Value);
                }
                else if (p.Grad is { } g)
                {
                    if (!dense.TryGetValue(i, out var st)) dense[i] = st = new AdamWState((int)p.Value.Length);
                    bool decay = p.Value.Rank == 2 && p.Name!.EndsWith(".w", StringComparison.Ordinal);
                    var v = cpu.ToHost<float>(p.Value);
                    st.Update(v, cpu.ToHost<float>(g), 0.01f, decay ? denseOpt : embOpt);
                    cpu.Upload<float>(v, p.Value);
                }
                p.ZeroGrad();
            }
            long syncs = gpu.Driver.SynchronizationCount;
            step.Clip(clip);
            step.Update(s, 0.01f, 0.05f, denseOpt, embOpt);
            Assert.Equal(syncs, gpu.Driver.SynchronizationCount); // the whole optimizer step stays on the device
            for (int i = 0; i < pc.Count; i++)
            {
                AssertClose(cpu.ToHost<float>(pc[i].Value), gpu.ToHost<float>(pg[i].Value), 1e-5f, 2e-6f, $"step {s}: {pc[i].Name}");
                Assert.Null(pg[i].SparseGradient);
                if (pg[i].Grad is { } gz) Assert.All(gpu.ToHost<float>(gz), x => Assert.Equal(0f, x));
            }
            Assert.Equal(dense.TryGetValue(1, out var bst) ? bst.Step : 0, step.Step(1));
        }
        foreach (var p in pc) p.Dispose();
        foreach (var p in pg) p.Dispose();
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void TrainerRunsOnTheCudaBackendLikeOnTheCpu(string kind)
    {
        using var gpu = OpenBackend(kind);
        using var cpu = new CpuBackend(1);
        var (st, train, valid, stats, config) = TinyTrainingData();
        var options = new TrainOptions { Epochs = 2, BatchTokens = 100, Seed = 5, Patience = 5 };
        TrainResult Run(IBackend be, out float[][] weights)
        {
            using var model = new MtfmModel(be, config, st.Layout, 3);
            var trainer = new MtfmTrainer(model, options);
            var r = trainer.Train(train, new BatchBuilder(train, stats), new BatchBuilder(valid, stats));
            weights = model.Parameters.Select(p => be.ToHost<float>(p.Value)).ToArray();
            return r;
        }
        var rc = Run(cpu, out var wc);
        var rg = Run(gpu, out var wg);
        Assert.True(rc.Steps >= 3, $"only {rc.Steps} steps");
        Assert.Equal(rc.Steps, rg.Steps);
        Assert.Equal(rc.LossCurve.Count, rg.LossCurve.Count);
        for (int i = 0; i < rc.LossCurve.Count; i++)
            Assert.True(Math.Abs(rc.LossCurve[i].Loss - rg.LossCurve[i].Loss) <= 1e-3 * Math.Abs(rc.LossCurve[i].Loss),
                $"loss at step {rc.LossCurve[i].Step}: cpu {rc.LossCurve[i].Loss} cuda {rg.LossCurve[i].Loss}");
        // GAUC over a few dozen validation exposures is a ranking metric: near-tied scores may swap between backends.
        Assert.True(Math.Abs(rc.BestValidGauc - rg.BestValidGauc) <= 0.02, $"valid GAUC cpu {rc.BestValidGauc} cuda {rg.BestValidGauc}");
        // Adam normalises each update, so an element whose gradient is ~0 can move by ±lr on either backend: bound the
        // worst element by 2·steps·lr and require the bulk to agree tightly.
        long close = 0, total = 0;
        for (int i = 0; i < wc.Length; i++)
            for (int j = 0; j < wc[i].Length; j++)
            {
                double d = Math.Abs(wc[i][j] - wg[i][j]);
                Assert.True(d <= 2.0 * rc.Steps * options.EmbeddingLearningRate, $"parameter {i} element {j}: cpu {wc[i][j]} cuda {wg[i][j]}");
                total++;
                if (d <= 1e-4 + 1e-3 * Math.Abs(wc[i][j])) close++;
            }
        Assert.True(close >= 0.99 * total, $"{close} of {total} weights agree");
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void ATrainingResumedFromACudaCheckpointEndsLikeTheUninterruptedRun(string kind)
    {
        using var gpu = OpenBackend(kind);
        var (st, train, valid, stats, config) = TinyTrainingData();
        string root = Directory.CreateTempSubdirectory("mtfm-cuda-resume-").FullName;
        try
        {
            string full = Path.Combine(root, "full"), cut = Path.Combine(root, "cut");
            var options = new TrainOptions { Epochs = 2, BatchTokens = 100, Seed = 5, Patience = 5, CheckpointEvery = 2, KeepCheckpoints = 100, CheckpointDirectory = full };
            var log = new List<string>();
            (TrainResult, float[][]) Run(TrainOptions o)
            {
                using var model = new MtfmModel(gpu, config, st.Layout, 3);
                var r = new MtfmTrainer(model, o) { Log = log.Add }.Train(train, new BatchBuilder(train, stats), new BatchBuilder(valid, stats));
                return (r, model.Parameters.Select(p => gpu.ToHost<float>(p.Value)).ToArray());
            }
            var (r0, w0) = Run(options);
            var saved = new CheckpointStore(full, 100).List().OrderBy(c => c.Step).ToList();
            Assert.True(r0.Steps >= 6 && saved.Count >= 3, $"{r0.Steps} steps, {saved.Count} checkpoints");
            // Resume from a checkpoint in the middle of the run (every later one removed).
            var from = saved[saved.Count / 2 - 1];
            long at = from.Step;
            Directory.CreateDirectory(cut);
            foreach (var c in saved.Where(c => c.Step <= at)) File.Copy(c.Path, Path.Combine(cut, Path.GetFileName(c.Path)));
            log.Clear();
            var (r1, w1) = Run(options with { CheckpointDirectory = cut, Resume = true });
            Assert.True(log.Any(l => l.StartsWith($"resumed from '{Path.Combine(cut, Path.GetFileName(from.Path))}': step {at},", StringComparison.Ordinal)), string.Join(" / ", log));
            Assert.Equal(r0.Steps, r1.Steps);
            Assert.Equal(r0.LossCurve.Count, r1.LossCurve.Count);
            if (kind == Emulated) Assert.Equal(r0.LossCurve, r1.LossCurve);
            Assert.True(at < r0.Steps);
            // The emulation runs each kernel the same way every time: bit for bit. A GPU's atomics may add in another order.
            float tol = kind == Emulated ? 0f : 1e-5f;
            for (int i = 0; i < w0.Length; i++)
                for (int j = 0; j < w0[i].Length; j++)
                    Assert.True(Math.Abs(w0[i][j] - w1[i][j]) <= tol * (1 + Math.Abs(w0[i][j])), $"parameter {i} element {j}: uninterrupted {w0[i][j]}, resumed from step {at} {w1[i][j]}");
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void ANonFiniteStepIsSkippedOnTheDeviceAndReportedWithItsLossWindow(string kind)
    {
        using var gpu = OpenBackend(kind);
        var (st, train, valid, stats, config) = TinyTrainingData();
        using var model = new MtfmModel(gpu, config, st.Layout, 3);
        var log = new List<string>();
        var trainer = new MtfmTrainer(model, new TrainOptions { Epochs = 1, BatchTokens = 100, MaxSteps = 4 }) { Log = log.Add };
        var after = new Dictionary<long, float[][]>();
        PoisonWeightDuring(gpu, model, trainer, s => s == 2, s => after[s] = model.Parameters.Select(p => gpu.ToHost<float>(p.Value)).ToArray());
        var result = trainer.Train(train, new BatchBuilder(train, stats), new BatchBuilder(valid, stats));
        Assert.Equal(4, result.Steps);
        Assert.Equal(1, trainer.SkippedSteps);
        var msg = Assert.Single(log);
        Assert.Matches(@"^steps 1\.\.4: 1 skipped on the device \(first non-finite gradient in parameter '[^']+'\)$", msg);
        // The skipped step changed nothing (parameters, and the moments the next step uses); the steps around it did.
        for (int i = 0; i < after[1].Length; i++) Assert.Equal(after[1][i], after[2][i]);
        Assert.Contains(Enumerable.Range(0, after[2].Length), i => !after[2][i].SequenceEqual(after[3][i]));
        Assert.All(after[4], w => Assert.All(w, x => Assert.True(float.IsFinite(x))));
        Assert.All(result.LossCurve, c => Assert.True(double.IsFinite(c.Loss)));
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void ConsecutiveNonFiniteStepsOnTheDeviceAbortWithAClearMessage(string kind)
    {
        using var gpu = OpenBackend(kind);
        var (st, train, valid, stats, config) = TinyTrainingData();
        using var model = new MtfmModel(gpu, config, st.Layout, 3);
        // No weight average: the poisoned weight is only restored after the step, when the average has already taken
        // it in, and the validation of the first epoch would then score NaN instead of reaching the guard's verdict.
        var trainer = new MtfmTrainer(model, new TrainOptions { Epochs = 3, BatchTokens = 100, MaxConsecutiveNonFiniteSteps = 3, WeightAverageDecay = 0 });
        PoisonWeightDuring(gpu, model, trainer, s => s >= 2); // every step from the second one is non-finite
        var ex = Assert.Throws<InvalidOperationException>(() => trainer.Train(train, new BatchBuilder(train, stats), new BatchBuilder(valid, stats)));
        Assert.Matches(@"^training stopped at step \d+: \d+ consecutive steps had a non-finite loss or gradient \(last: first non-finite gradient in parameter '[^']+'; found by the device's guard", ex.Message);
        Assert.True(trainer.SkippedSteps >= 3, $"{trainer.SkippedSteps} skipped");
    }

    /// <summary>
    /// Makes the steps <paramref name="when"/> selects non-finite: a NaN in one dense weight for the step's forward,
    /// the weight restored after the step (a batch cannot be poisoned on CUDA: its inputs are staged ahead).
    /// </summary>
    private static void PoisonWeightDuring(IBackend gpu, MtfmModel model, MtfmTrainer trainer, Func<long, bool> when, Action<long>? completed = null)
    {
        var poisoned = model.Parameters.First(p => !p.SparseGrad);
        float[]? saved = null;
        trainer.BeforeStep = (s, _) =>
        {
            if (!when(s)) return;
            saved = gpu.ToHost<float>(poisoned.Value);
            var bad = (float[])saved.Clone();
            bad[0] = float.NaN;
            gpu.Upload<float>(bad, poisoned.Value);
        };
        trainer.StepCompleted = s =>
        {
            if (saved is not null) gpu.Upload<float>(saved, poisoned.Value);
            saved = null;
            completed?.Invoke(s);
        };
    }

    /// <summary>The tiny synthetic log (24 users), its train and validation instances and a very small model config.</summary>
    private static (EventStore Store, AggregatedInstances Train, AggregatedInstances Valid, NumericStats Stats, MtfmConfig Config) TinyTrainingData()
    {
        var st = SyntheticGenerator.Generate(SyntheticConfig.Tiny with { Users = 24 }).Store;
        var config = MtfmConfig.Tiny with { DModel = 16, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 8, TowerWidth = 8, EmbeddingDim = 8, TokenizerHidden = 16 };
        return (st, UserLevelAggregator.Aggregate(st, part: SplitPart.Train), UserLevelAggregator.Aggregate(st, part: SplitPart.Valid),
            st.ComputeNumericStats(st.Layout.Schema.Split!.ValidStart), config);
    }
}
