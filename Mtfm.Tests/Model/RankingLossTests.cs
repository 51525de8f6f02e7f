using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;
using Mtfm.Tests.Core;

namespace Mtfm.Tests.Model;

/// <summary>The within-user ranking term of the training objective (<see cref="TrainOptions.RankingLossWeight"/>).</summary>
public class RankingLossTests
{
    private static readonly Lazy<(SyntheticDataset Data, AggregatedInstances Train, NumericStats Stats)> Tiny = new(() =>
    {
        var data = SyntheticGenerator.Generate(SyntheticConfig.Tiny);
        var store = data.Store;
        return (data, UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Train, store.SortedByUserTime()),
            store.ComputeNumericStats(store.Layout.Schema.Split!.ValidStart));
    });

    private static MtfmConfig Small => MtfmConfig.Tiny with
    {
        DModel = 8, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 4, TowerWidth = 3, EmbeddingDim = 3, TokenizerHidden = 5,
    };

    private static JaggedBatch FirstBatch(int instances)
    {
        var t = Tiny.Value;
        return new BatchBuilder(t.Train, t.Stats).Build(Enumerable.Range(0, instances).ToArray());
    }

    /// <summary>A batch of T tokens only, with the given users and (label, mask) of one task: all RankingPairs reads.</summary>
    private static JaggedBatch Labelled(int[] users, float[] labels, byte[] mask) => new()
    {
        InstanceCount = 1, TokenCount = users.Length, TargetCount = users.Length, TaskCount = 1,
        Offsets = [0, users.Length], Segment = new byte[users.Length], Group = new int[users.Length], Time = new long[users.Length],
        RowInGroup = new int[users.Length], EventId = new int[users.Length], Blocks = [],
        TargetToken = Enumerable.Range(0, users.Length).ToArray(), TargetInstance = new int[users.Length],
        TargetScenario = new int[users.Length], TargetUser = users, Labels = labels, LabelMask = mask,
    };

    [Fact]
    public void PairsJoinAUsersClickedAndNotClickedExposuresOnly()
    {
        // user 7: positives at 0 and 5, negatives at 2 and 6 (3 carries no label); user 3: only negatives; user 9: one of each.
        int[] users = [7, 3, 7, 7, 9, 7, 7, 3, 9];
        float[] labels = [1, 0, 0, 1, 1, 1, 0, 0, 0];
        byte[] mask = [1, 1, 1, 0, 1, 1, 1, 1, 1];
        var (pos, neg) = RankingPairs.For(Labelled(users, labels, mask), 0);
        // m = min(8, N): user 7 has N = 2 → positive a takes N[(2a + t) mod 2]; user 9 → (4, 8). In order of first appearance.
        Assert.Equal([0, 0, 5, 5, 4], pos);
        Assert.Equal([2, 6, 2, 6, 8], neg);
    }

    [Fact]
    public void EachPositiveTakesAtMostEightNegativesAndTogetherTheyCoverAll()
    {
        const int positives = 3, negatives = 20;
        int n = positives + negatives;
        var users = new int[n];
        var labels = new float[n];
        for (int j = 0; j < positives; j++) labels[j] = 1;
        var mask = Enumerable.Repeat((byte)1, n).ToArray();
        var (pos, neg) = RankingPairs.For(Labelled(users, labels, mask), 0);
        Assert.Equal(positives * RankingPairs.PairsPerPositive, pos.Length);
        for (int a = 0; a < positives; a++)
            for (int t = 0; t < RankingPairs.PairsPerPositive; t++)
            {
                int i = a * RankingPairs.PairsPerPositive + t;
                Assert.Equal(a, pos[i]);
                Assert.Equal(positives + (a * RankingPairs.PairsPerPositive + t) % negatives, neg[i]);
            }
        Assert.Equal(20, neg.Distinct().Count()); // 3 · 8 ≥ 20: every negative is used
    }

    [Fact]
    public void ObjectiveIsTheLossPlusTheWeightedPairwiseTermAndTheLossIsUnchanged()
    {
        var batch = FirstBatch(6);
        using var be = new CpuBackend(2);
        using var model = new MtfmModel(be, Small, Tiny.Value.Data.Store.Layout, seed: 5);
        const float weight = 0.5f;
        float plain, loss, objective;
        float[][] logits;
        using (var tape = new Tape(be))
        {
            var o = model.Forward(tape, batch);
            Assert.Same(o.Loss, o.Objective);
            plain = TestTensors.Read(o.Loss.Value)[0];
        }
        using (var tape = new Tape(be))
        {
            var o = model.Forward(tape, batch, rankingWeight: weight);
            loss = TestTensors.Read(o.Loss.Value)[0];
            objective = TestTensors.Read(o.Objective.Value)[0];
            logits = o.TaskLogits.Select(l => TestTensors.Read(l.Value)).ToArray();
        }
        Assert.Equal(plain, loss); // the reported loss stays the BCE sum, bit for bit
        double expected = loss;
        int pairs = 0;
        for (int k = 0; k < batch.TaskCount; k++)
        {
            var (pos, neg) = RankingPairs.For(batch, k);
            if (pos.Length == 0) continue;
            pairs += pos.Length;
            double sum = 0;
            for (int i = 0; i < pos.Length; i++)
            {
                double d = logits[k][pos[i]] - logits[k][neg[i]];
                sum += Math.Log(1 + Math.Exp(-d)); // softplus(−d)
            }
            expected += weight * sum / pos.Length;
        }
        Assert.True(pairs > 0, "the batch should hold users with both labels");
        Assert.True(objective > loss);
        Assert.Equal(expected, objective, 5e-6);
    }

    [Fact]
    public void ObjectiveGradientsMatchFiniteDifferences()
    {
        var batch = FirstBatch(3);
        using var be = new CpuBackend(2);
        using var model = new MtfmModel(be, Small, Tiny.Value.Data.Store.Layout, seed: 5);
        Assert.True(RankingPairs.For(batch, 0).Positive.Length > 0);
        string[] picks = ["layer0.w1_kv.w", "mmoe.experts.w", "head.feed.click.tower2.w", "head.feed.click.tower2.b", "emb.category"];
        var leaves = model.Parameters.Where(p => picks.Contains(p.Name)).Cast<Variable>().ToList();
        Assert.Equal(picks.Length, leaves.Count);
        // A large weight, so that the pairwise term dominates the gradient being checked.
        GradCheck.AssertGradients(be, leaves, tape => model.Forward(tape, batch, rankingWeight: 4f).Objective, eps: 1e-4, atol: 3e-3, rtol: 3e-2);
    }

    [Fact]
    public void TrainerReportsTheBceAndTrainsOnTheObjective()
    {
        var t = Tiny.Value;
        (List<(long Step, double Loss)> Curve, float[] Weights) Run(float weight, float lr)
        {
            using var be = new CpuBackend(2);
            using var model = new MtfmModel(be, Small, t.Data.Store.Layout, seed: 3);
            var trainer = new MtfmTrainer(model, new TrainOptions
            {
                Epochs = 1, BatchTokens = 256, MaxSteps = 20, LearningRate = lr, EmbeddingLearningRate = lr, WeightAverageDecay = 0, RankingLossWeight = weight,
            });
            var r = trainer.Train(t.Train, new BatchBuilder(t.Train, t.Stats), new BatchBuilder(t.Train, t.Stats));
            return (r.LossCurve.Select(p => (p.Step, p.Loss)).ToList(), model.Parameters.SelectMany(p => TestTensors.Read(p.Value)).ToArray());
        }
        // A learning rate far below every weight's ulp leaves the weights as they are, so both runs see the same
        // network on the same batches: the reported curve must then be the BCE's, bit for bit, not the objective's.
        var frozen = Run(0f, 1e-30f);
        Assert.NotEmpty(frozen.Curve);
        Assert.Equal(frozen.Curve, Run(1f, 1e-30f).Curve);
        // With a real learning rate the term changes what is learned.
        Assert.NotEqual(Run(0f, 2e-3f).Weights, Run(1f, 2e-3f).Weights);
    }

    [Fact]
    public void OffByDefaultAndBadWeightsAreRefused()
    {
        Assert.Equal(0f, new TrainOptions().RankingLossWeight);
        Assert.Equal(0f, new Engine.Hosting.TrainingSettings().RankingLossWeight);
        var ex = Assert.Throws<ArgumentException>(() => new TrainOptions { RankingLossWeight = -1 }.Validate());
        Assert.Contains("RankingLossWeight", ex.Message);
        Assert.Throws<ArgumentException>(() => new TrainOptions { RankingLossWeight = float.NaN }.Validate());
        Assert.DoesNotContain("ranking", new TrainOptions().Fingerprint()); // runs without the term resume as before
        Assert.Contains("ranking=0.1", new TrainOptions { RankingLossWeight = 0.1f }.Fingerprint());
    }
}
