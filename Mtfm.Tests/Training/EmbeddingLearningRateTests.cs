using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.Training;

/// <summary><see cref="TrainOptions.EmbeddingLearningRate"/> drives the embedding tables and nothing else.</summary>
public class EmbeddingLearningRateTests
{
    private static readonly MtfmConfig Config = MtfmConfig.Tiny with
    {
        DModel = 8, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 4, TowerWidth = 3, EmbeddingDim = 3, TokenizerHidden = 5,
    };

    /// <summary>
    /// One epoch at an embedding rate of 1e-30 leaves every table bit-identical to its initialisation while the dense
    /// weights move; at the default rate the tables move too, by at most a few rates per coordinate and step (Adam's
    /// step bound), so the option reaches row-sparse Adam and only it.
    /// </summary>
    [Fact]
    public void TheEmbeddingRateMovesTheTablesAndOnlyThem()
    {
        var store = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        var train = UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Train, store.SortedByUserTime());
        var stats = store.ComputeNumericStats(store.Layout.Schema.Split!.ValidStart);
        Assert.Equal(1e-4f, new TrainOptions().EmbeddingLearningRate);

        foreach (float embLr in new[] { 1e-30f, TrainOptions.DefaultEmbeddingLearningRate })
        {
            using var be = new CpuBackend(1);
            using var model = new MtfmModel(be, Config, store.Layout, seed: 3);
            var before = model.Parameters.Select(p => be.ToHost<float>(p.Value)).ToArray();
            var options = new TrainOptions { Epochs = 1, BatchTokens = 256, EmbeddingLearningRate = embLr, WeightAverageDecay = 0f };
            var result = new MtfmTrainer(model, options).Train(train, new BatchBuilder(train, stats), new BatchBuilder(train, stats));
            long steps = result.LossCurve[^1].Step;
            Assert.True(steps >= 4, $"only {steps} steps");
            bool tablesMoved = false, denseMoved = false;
            for (int i = 0; i < before.Length; i++)
            {
                var p = model.Parameters[i];
                var after = be.ToHost<float>(p.Value);
                double maxDelta = before[i].Zip(after, (a, b) => Math.Abs((double)a - b)).Max();
                if (p.SparseGrad)
                {
                    if (embLr < 1e-20f) Assert.True(before[i].AsSpan().SequenceEqual(after), $"{p.Name} moved at an embedding rate of {embLr}");
                    else Assert.True(maxDelta <= 4.0 * steps * embLr, $"{p.Name}: a coordinate moved {maxDelta} in {steps} steps at {embLr}");
                    tablesMoved |= maxDelta > 0;
                }
                else denseMoved |= maxDelta > 0;
            }
            Assert.True(denseMoved, $"no dense weight moved at an embedding rate of {embLr}");
            Assert.Equal(embLr >= 1e-20f, tablesMoved);
        }
    }
}
