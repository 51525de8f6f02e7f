using Mtfm.Baselines;
using Mtfm.Engine.Data;
using Mtfm.Engine.Evaluation;
using Mtfm.Tests.Data;

namespace Mtfm.Tests.Baselines;

/// <summary>Leak tests of the causal statistics through a model trained on them (issue 9 item 6).</summary>
public class LightGbmLeakTests
{
    private static readonly LightGbmOptions Quick = new() { Iterations = 80, LearningRate = 0.1, Threads = 1 };
    private static readonly Lazy<MarketDataset> Small = new(() => MarketGenerator.Generate(MarketConfig.Small));

    private static ScenarioTaskMetrics Click(IReadOnlyList<ScenarioTaskMetrics> m, int scenario) => m.Single(r => r.Scenario == scenario && r.Task == 0);

    [Fact]
    public void OnMarketSmallLightGbmStaysBelowTheBayesAucAndLearns()
    {
        var r = LightGbmBaseline.Train(Small.Value.Store, Quick);
        Assert.NotNull(r.Bayes);
        for (int s = -1; s < 4; s++)
        {
            var m = Click(r.Test, s); var b = Click(r.Bayes, s);
            Assert.True(m.Auc < b.Auc, $"scenario {s}: model AUC {m.Auc:F4} ≥ Bayes {b.Auc:F4}: a leak");
            Assert.True(m.Auc > 0.7, $"scenario {s}: model AUC {m.Auc:F4}: learned nothing");
        }
    }

    [Fact]
    public void FedTheOwnSecondBehaviourLightGbmBeatsTheBayesAuc()
    {
        var r = LightGbmBaseline.Train(Small.Value.Store, Quick with { Statistics = new CausalStatisticsOptions { LeakSameSecond = true } });
        var m = Click(r.Test, -1); var b = Click(r.Bayes!, -1);
        Assert.True(m.Auc > b.Auc + 0.02, $"leaky model AUC {m.Auc:F4} vs Bayes {b.Auc:F4}: the leak test could not detect a leak");
    }

    [Fact]
    public void FlippingLabelsFromTheTestStartLeavesEveryEarlierPredictionBitIdentical()
    {
        var cfg = MarketConfig.Small with { Users = 800 };
        var st = MarketGenerator.Generate(cfg).Store;
        var a = LightGbmBaseline.Train(st, Quick);
        long t = st.Layout.Schema.Split!.TestStart;
        CausalStatisticsTests.FlipLabelsFrom(st, t);
        var b = LightGbmBaseline.Train(st, Quick);
        int tasks = st.Layout.TaskCount, x = 0, before = 0; bool laterDiffers = false;
        for (int ev = 0; ev < st.Count; ev++)
        {
            if (!st.IsExposure(ev)) continue;
            for (int k = 0; k < tasks; k++)
            {
                int i = x * tasks + k;
                bool same = BitConverter.SingleToInt32Bits(a.Probabilities[i]) == BitConverter.SingleToInt32Bits(b.Probabilities[i]);
                if (st.TimeOf(ev) < t) { Assert.True(same, $"exposure {x} task {k} at {st.TimeOf(ev)} < {t}: {a.Probabilities[i]} vs {b.Probabilities[i]}"); before++; }
                else laterDiffers |= !same;
            }
            x++;
        }
        Assert.True(before > 1000);
        Assert.True(laterDiffers, "the flip must change later predictions (else this test could not fail)");
    }
}
