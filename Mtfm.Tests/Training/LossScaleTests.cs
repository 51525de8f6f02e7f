using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.Training;

/// <summary>Training and validation loss are reported as the same objective (Σ over tasks of the mean BCE over labelled exposures).</summary>
public class LossScaleTests
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

    [Theory]
    [InlineData(null)]
    [InlineData(1)] // one scenario trained alone: both losses cover that scenario's labels only
    public void WithAZeroLearningRateTrainAndValidationLossAgreeOnTheSameData(int? onlyScenario)
    {
        var store = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        var train = UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Train, store.SortedByUserTime());
        var stats = store.ComputeNumericStats(store.Layout.Schema.Split!.ValidStart);
        using var be = new CpuBackend(1);
        using var model = new MtfmModel(be, Config, store.Layout, seed: 3);
        // A learning rate of 1e-30 leaves every weight bit-identical: every step sees the same model.
        var options = new TrainOptions { Epochs = 1, BatchTokens = 256, LearningRate = 1e-30f, EmbeddingLearningRate = 1e-30f, OnlyScenario = onlyScenario };
        var result = new MtfmTrainer(model, options).Train(train, new BatchBuilder(train, stats), new BatchBuilder(train, stats));

        // The training loss over the epoch: step-weighted mean of the loss windows.
        double sum = 0; long prev = 0;
        foreach (var (step, loss) in result.LossCurve) { sum += loss * (step - prev); prev = step; }
        double trainLoss = sum / prev;
        double validLoss = Assert.Single(result.ValidCurve).ValidLoss;
        Assert.True(prev >= 4, $"only {prev} steps: the epoch should span several batches");
        // Batches weight exposures slightly differently from the pooled mean; a different objective (one task only, or
        // tasks averaged instead of summed) is off by tens of percent.
        Assert.True(Math.Abs(trainLoss - validLoss) <= 0.02 * trainLoss, $"{prev} steps: train loss {trainLoss:F5} vs validation loss {validLoss:F5} on the same data");
    }
}
