using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Tensors;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.Training;

/// <summary>The moving average of the dense weights (<see cref="WeightAverage"/>, <see cref="TrainOptions.WeightAverageDecay"/>).</summary>
public class WeightAverageTests
{
    private static readonly MtfmConfig Config = MtfmConfig.Tiny with
    {
        DModel = 8,
        Heads = 2,
        KvHeads = 1,
        Experts = 2,
        ExpertWidth = 4,
        TowerWidth = 3,
        EmbeddingDim = 3,
        TokenizerHidden = 5,
    };

    [Fact]
    public void TheDecayFollowsTheWarmUpRuleUpToItsCap()
    {
        Assert.Equal(0.1f, WeightAverage.Decay(1, 0.995f));
        Assert.Equal((float)(91 / 100.0), WeightAverage.Decay(91, 0.995f));
        Assert.Equal(0.995f, WeightAverage.Decay(100_000, 0.995f));
        Assert.Equal(0.5f, WeightAverage.Decay(100_000, 0.5f));
        Assert.Throws<ArgumentOutOfRangeException>(() => WeightAverage.Decay(0, 0.995f));
        using var be = new CpuBackend(1);
        Assert.Throws<ArgumentOutOfRangeException>(() => new WeightAverage(be, [], 1f));
        Assert.Throws<ArgumentException>(() => new TrainOptions { WeightAverageDecay = 1f }.Validate());
        Assert.Throws<ArgumentException>(() => new TrainOptions { WeightAverageDecay = -0.1f }.Validate());
    }

    [Fact]
    public void UpdateAveragesDenseParametersOnlyAndSwapTwiceIsTheIdentity()
    {
        using var be = new CpuBackend(1);
        using var dense = new Parameter("w", be.Allocate(DType.Float32, [2, 3]));
        using var table = new Parameter("emb", be.Allocate(DType.Float32, [4, 2]), sparseGrad: true);
        var rng = new Random(7);
        float[] Draw(int n) => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        be.Upload<float>(Draw(6), dense.Value);
        be.Upload<float>(Draw(8), table.Value);
        var expect = be.ToHost<float>(dense.Value).Select(x => (double)x).ToArray();
        using var avg = new WeightAverage(be, [dense, table], 0.9f);
        Assert.True(avg.Averages(0));
        Assert.False(avg.Averages(1));
        Assert.Equal(6 * sizeof(float), avg.Bytes);
        for (long s = 1; s <= 40; s++)
        {
            var w = Draw(6);
            be.Upload<float>(w, dense.Value);
            avg.Update(s);
            double d = WeightAverage.Decay(s, 0.9f);
            for (int i = 0; i < 6; i++) expect[i] = d * expect[i] + (1 - d) * w[i];
        }
        var got = be.ToHost<float>(avg.Average(0)!);
        for (int i = 0; i < 6; i++) Assert.True(Math.Abs(got[i] - expect[i]) < 1e-5, $"element {i}: {got[i]} vs {expect[i]}");

        var raw = be.ToHost<float>(dense.Value);
        var tableBefore = be.ToHost<float>(table.Value);
        avg.Swap();
        Assert.Equal(got, be.ToHost<float>(dense.Value));
        Assert.Equal(raw, be.ToHost<float>(avg.Average(0)!));
        Assert.Equal(tableBefore, be.ToHost<float>(table.Value));
        avg.Swap();
        Assert.Equal(raw, be.ToHost<float>(dense.Value));
        Assert.Equal(got, be.ToHost<float>(avg.Average(0)!));
    }

    /// <summary>
    /// One epoch validated once at its end: the trainer returns the average of the dense weights after every step (the
    /// rule recomputed here in float64) and the embedding tables as trained; with the average off, the trained weights.
    /// </summary>
    [Theory]
    [InlineData(0.995f)]
    [InlineData(0f)]
    public void TheTrainerReturnsTheAveragedDenseWeightsAndTheTrainedTables(float decay)
    {
        var store = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        var train = UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Train, store.SortedByUserTime());
        var stats = store.ComputeNumericStats(store.Layout.Schema.Split!.ValidStart);
        using var be = new CpuBackend(1);
        using var model = new MtfmModel(be, Config, store.Layout, seed: 3);
        var ps = model.Parameters;
        var expect = ps.Select(p => be.ToHost<float>(p.Value).Select(x => (double)x).ToArray()).ToArray();
        float[][] last = [];
        var trainer = new MtfmTrainer(model, new TrainOptions { Epochs = 1, BatchTokens = 256, WeightAverageDecay = decay, Patience = 5 })
        {
            StepCompleted = s =>
            {
                last = ps.Select(p => be.ToHost<float>(p.Value)).ToArray();
                if (decay == 0) return;
                double d = WeightAverage.Decay(s, decay);
                for (int i = 0; i < ps.Count; i++)
                    for (int j = 0; j < last[i].Length; j++) expect[i][j] = d * expect[i][j] + (1 - d) * last[i][j];
            },
        };
        var result = trainer.Train(train, new BatchBuilder(train, stats), new BatchBuilder(train, stats));
        Assert.True(result.Steps >= 4, $"only {result.Steps} steps");
        int denseChecked = 0;
        for (int i = 0; i < ps.Count; i++)
        {
            var final = be.ToHost<float>(ps[i].Value);
            if (decay == 0 || ps[i].SparseGrad) Assert.Equal(last[i], final);
            else
            {
                double maxDiff = 0, moved = 0;
                for (int j = 0; j < final.Length; j++)
                {
                    maxDiff = Math.Max(maxDiff, Math.Abs(final[j] - expect[i][j]));
                    moved = Math.Max(moved, Math.Abs(final[j] - last[i][j]));
                }
                Assert.True(maxDiff < 1e-5, $"{ps[i].Name}: the returned weights are {maxDiff} from the average");
                if (moved > 1e-4) denseChecked++; // the average differs from the last training weights
            }
        }
        if (decay > 0) Assert.True(denseChecked > 0, "no dense parameter's average differs from its training weights");
    }

    /// <summary>The memory estimate counts the averages: 4 bytes per averaged (dense) parameter, as they are allocated.</summary>
    [Fact]
    public void TheMemoryEstimateCountsTheAveragesOfTheDenseParameters()
    {
        var store = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        using var be = new CpuBackend(1);
        using var model = new MtfmModel(be, Config, store.Layout, seed: 3);
        long dense = model.Parameters.Where(p => !p.SparseGrad).Sum(p => p.Value.Length);
        Assert.InRange(dense, 1, model.ParameterCount - 1); // the model has tables that are not averaged
        using var avg = new WeightAverage(be, model.Parameters, 0.995f);
        var off = MemoryEstimate.For(Config, store.Layout, model.ParameterCount, 512, checkpoints: true);
        var on = MemoryEstimate.For(Config, store.Layout, model.ParameterCount, 512, checkpoints: true, averagedCount: dense);
        Assert.Equal(avg.Bytes, on.SnapshotBytes - off.SnapshotBytes);
        Assert.Equal(avg.Bytes, on.TotalBytes - off.TotalBytes);
        Assert.Throws<ArgumentOutOfRangeException>(() => MemoryEstimate.For(Config, store.Layout, model.ParameterCount, 512, true, model.ParameterCount + 1));
    }

    /// <summary>A step-limited run that is never validated also returns the averaged dense weights.</summary>
    [Fact]
    public void AStepLimitedRunReturnsTheAverageToo()
    {
        var store = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        var train = UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Train, store.SortedByUserTime());
        var stats = store.ComputeNumericStats(store.Layout.Schema.Split!.ValidStart);
        float[][] Run(float decay, out float[][] last)
        {
            using var be = new CpuBackend(1);
            using var model = new MtfmModel(be, Config, store.Layout, seed: 3);
            float[][] seen = [];
            var trainer = new MtfmTrainer(model, new TrainOptions { Epochs = 1, BatchTokens = 256, MaxSteps = 3, WeightAverageDecay = decay })
            {
                StepCompleted = _ => seen = model.Parameters.Select(p => be.ToHost<float>(p.Value)).ToArray(),
            };
            var result = trainer.Train(train, new BatchBuilder(train, stats), new BatchBuilder(train, stats));
            Assert.Equal(3, result.Steps);
            last = seen;
            return model.Parameters.Select(p => be.ToHost<float>(p.Value)).ToArray();
        }
        var off = Run(0f, out var lastOff);
        Assert.Equal(lastOff, off);
        var on = Run(0.995f, out var lastOn);
        Assert.Equal(lastOff, lastOn); // the average does not change the training trajectory
        Assert.NotEqual(lastOn, on);
    }
}
