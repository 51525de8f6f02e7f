using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.Training;

/// <summary><see cref="TrainOptions.MaxSteps"/>: the step-limited runs the throughput benchmarks (cuda-quick) make.</summary>
public class TrainerMaxStepsTests
{
    private static readonly Lazy<(AggregatedInstances Train, AggregatedInstances Valid, NumericStats Stats, DataLayout Layout)> Data = new(() =>
    {
        var store = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        var order = store.SortedByUserTime();
        return (UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Train, order),
            UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Valid, order),
            store.ComputeNumericStats(store.Layout.Schema.Split!.ValidStart), store.Layout);
    });

    private static readonly MtfmConfig Config = MtfmConfig.Tiny with
    {
        DModel = 8, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 4, TowerWidth = 3, EmbeddingDim = 3, TokenizerHidden = 5,
    };

    private static (TrainResult Result, List<long> Steps) Run(long maxSteps, int epochs)
    {
        var d = Data.Value;
        using var be = new CpuBackend(1);
        using var model = new MtfmModel(be, Config, d.Layout, seed: 2);
        var trainer = new MtfmTrainer(model, new TrainOptions { Epochs = epochs, BatchTokens = 128, MaxSteps = maxSteps, Patience = 5 });
        var steps = new List<long>();
        trainer.StepCompleted = steps.Add;
        var result = trainer.Train(d.Train, new BatchBuilder(d.Train, d.Stats), new BatchBuilder(d.Valid, d.Stats));
        return (result, steps);
    }

    /// <summary>Batches whose population statistics read the user columns with another prior than the model's are refused by name; the model's own train.</summary>
    [Fact]
    public void BatchesReadWithAnotherUserRecentPriorThanTheModelsAreRefused()
    {
        var d = Data.Value;
        using var be = new CpuBackend(1);
        var config = Config.WithDefaultPopulationStatistics();
        Assert.Equal(MtfmConfig.DefaultUserRecentRatePrior, config.UserRecentRatePrior);
        using var model = new MtfmModel(be, config, d.Layout, seed: 2);
        var trainer = new MtfmTrainer(model, new TrainOptions { Epochs = 1, BatchTokens = 128, MaxSteps = 2 });
        var ex = Assert.Throws<ArgumentException>(() => trainer.Train(d.Train, new BatchBuilder(d.Train, d.Stats, population: true), config.Batches(d.Valid, d.Stats)));
        Assert.Contains("prior 10, user rates at window start off, the model with user recent-rate prior 100, user rates at window start on", ex.Message);
        Assert.Equal("trainBatches", ex.ParamName);
        var result = trainer.Train(d.Train, config.Batches(d.Train, d.Stats), config.Batches(d.Valid, d.Stats));
        Assert.Equal(2, result.Steps);
        Assert.Equal(MtfmConfig.DefaultUserRecentRatePrior, model.Population!.UserRecentPrior);
        Assert.True(model.Population.UserRatesAtWindowStart);
    }

    [Fact]
    public void AStepLimitStopsTheRunWithoutValidatingTheCutEpoch()
    {
        var d = Data.Value;
        // Batches of epochs 0 and 1 in the trainer's order (shuffle seed = Seed · 1000003 + epoch, Seed = 1).
        int perEpoch = new BatchBuilder(d.Train, d.Stats).Batches(128, shuffleSeed: 1000003UL).Count();
        int epoch1 = new BatchBuilder(d.Train, d.Stats).Batches(128, shuffleSeed: 1000004UL).Count();
        Assert.True(perEpoch >= 4, $"the tiny data gives only {perEpoch} batches of 128 tokens");

        var (cut, steps) = Run(3, epochs: 3);
        Assert.Equal(3, cut.Steps);
        Assert.Equal([1L, 2L, 3L], steps);
        Assert.Equal(1, cut.Epochs);
        Assert.Empty(cut.ValidCurve);
        Assert.Equal(3, cut.LossCurve[^1].Step); // the last loss window closes at the limit

        // A limit inside the second epoch: the first epoch is validated as usual, the cut one is not.
        var (second, _) = Run(perEpoch + 1, epochs: 3);
        Assert.Equal(perEpoch + 1, second.Steps);
        Assert.Equal(2, second.Epochs);
        Assert.Equal([(long)perEpoch], second.ValidCurve.Select(v => v.Step));

        // No limit (0): every epoch runs and is validated.
        var (all, _) = Run(0, epochs: 2);
        Assert.Equal(perEpoch + epoch1, all.Steps);
        Assert.Equal(2, all.ValidCurve.Count);
    }

    [Fact]
    public void ANegativeStepLimitIsRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new TrainOptions { MaxSteps = -1 }.Validate());
        Assert.Contains("MaxSteps = -1", e.Message);
        Assert.Equal("MaxSteps", e.ParamName);
    }
}
