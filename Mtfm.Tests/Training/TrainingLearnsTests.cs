using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Evaluation;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.Training;

/// <summary>
/// Training learns: the `tiny` preset trained on a small synthetic log (a few seconds on one thread) reaches a held-out
/// (test window) click AUC within 1.5 points of the data's Bayes-optimal AUC, computed from the generator's true
/// probabilities on the same exposures. Deterministic (fixed seeds, one thread): the figures are the same on every run;
/// a broken gradient, optimizer or mask lands far below the bound (an untrained model scores ≈ 0.5 … 0.7 here).
/// </summary>
public class TrainingLearnsTests
{
    [Fact]
    public void TinyPresetOnSmallSyntheticDataReachesNearTheBayesAuc()
    {
        var store = SyntheticGenerator.Generate(new SyntheticConfig { Users = 2500, Items = 400, Days = 10, Categories = 8, Seed = 5 }).Store;
        var split = store.Layout.Schema.Split!;
        var order = store.SortedByUserTime();
        AggregatedInstances Part(SplitPart p) => UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, p, order);
        var stats = store.ComputeNumericStats(split.ValidStart);
        var train = Part(SplitPart.Train);
        using var be = new CpuBackend(1);
        using var model = new MtfmModel(be, MtfmConfig.Tiny, store.Layout, seed: 3);
        var trainer = new MtfmTrainer(model, new TrainOptions { Epochs = 4, BatchTokens = 1024, Seed = 3 });
        trainer.Train(train, new BatchBuilder(train, stats), new BatchBuilder(Part(SplitPart.Valid), stats));
        var eval = ModelEvaluation.Evaluate(model, new BatchBuilder(Part(SplitPart.Test), stats), batchTokens: 1024);
        int click = store.Layout.Schema.Tasks.IndexOf("click");
        int all = eval.Model.Select((m, i) => (m, i)).Single(x => x.m.Scenario < 0 && x.m.Task == click).i;
        double auc = eval.Model[all].Auc, bayes = eval.Bayes![all].Auc;
        Assert.True(bayes > 0.75, $"the bound itself is informative: Bayes AUC {bayes:F4}");
        // Measured 0.9102 vs 0.9152 with history statistics, 0.8968 without them (docs/quality.md): 1.5 pp fails without.
        Assert.True(bayes - auc < 0.015, $"held-out click AUC {auc:F4} is more than 1.5 pp below the Bayes AUC {bayes:F4}");
    }
}
