using Mtfm.Engine.Data;

namespace Mtfm.Tests.Data;

public class CausalStatisticsTests
{
    private static readonly Lazy<MarketDataset> Small = new(() => MarketGenerator.Generate(MarketConfig.Small));

    [Fact]
    public void UserCountsEqualBruteForceCountsOfEventsStrictlyBeforeTheSecond()
    {
        var st = Small.Value.Store;
        var f = CausalStatistics.Compute(st, null, out var cs);
        int w = cs.FeatureCount;
        int cExp = Col(cs, "user.exposures"), cClk = Col(cs, "user.clicks"), cBeh = Col(cs, "user.behaviours");
        int cRec = Col(cs, "user×item_id.behaviour_recency");
        var byUser = Enumerable.Range(0, st.Count).GroupBy(st.UserOf).ToDictionary(g => g.Key, g => g.ToArray());
        int x = 0, checkedRec = 0;
        for (int ev = 0; ev < st.Count; ev++)
        {
            if (!st.IsExposure(ev)) continue;
            long t = st.TimeOf(ev);
            var before = byUser[st.UserOf(ev)].Where(e => st.TimeOf(e) < t).ToArray();
            var labelled = before.Where(e => st.IsExposure(e) && st.Label(e, 0) >= 0).ToArray();
            Assert.Equal(labelled.Length, f[x * w + cExp]);
            Assert.Equal(labelled.Sum(e => st.Label(e, 0)), f[x * w + cClk]);
            Assert.Equal(before.Count(e => !st.IsExposure(e)), f[x * w + cBeh]);
            // The own-second click of this item is never visible: recency of same-item behaviour counts only earlier seconds.
            if (st.SourceOf(ev) == 0 && (x & 7) == 0)
            {
                int item = st.Categorical(ev)[2];
                double rec = before.Where(e => st.SourceOf(e) is 4 or 6 or 7 && st.Categorical(e)[0] == item)
                    .Sum(e => Math.Exp(-(t - st.TimeOf(e)) / 3600.0));
                Assert.Equal(rec, f[x * w + cRec], 3);
                checkedRec++;
            }
            x++;
        }
        Assert.True(checkedRec > 500);
    }

    [Fact]
    public void FlippingLabelsFromTimeTLeavesEveryEarlierFeatureBitIdentical()
    {
        var st = MarketGenerator.Generate(MarketConfig.Small).Store;
        var f0 = CausalStatistics.Compute(st, null, out var cs);
        long t = MedianExposureTime(st);
        FlipLabelsFrom(st, t);
        var f1 = CausalStatistics.Compute(st, null, out _);
        int w = cs.FeatureCount, x = 0, before = 0; bool laterDiffers = false;
        for (int ev = 0; ev < st.Count; ev++)
        {
            if (!st.IsExposure(ev)) continue;
            var a = f0.AsSpan(x * w, w); var b = f1.AsSpan(x * w, w);
            bool same = System.Runtime.InteropServices.MemoryMarshal.AsBytes(a).SequenceEqual(System.Runtime.InteropServices.MemoryMarshal.AsBytes(b));
            if (st.TimeOf(ev) < t) { Assert.True(same, $"exposure {x} at {st.TimeOf(ev)} < {t} changed"); before++; }
            else laterDiffers |= !same;
            x++;
        }
        Assert.True(before > 1000);
        Assert.True(laterDiffers, "the flip must change later features (else this test could not fail)");
    }

    [Fact]
    public void TheLeakOptionMakesOwnSecondBehaviourVisible()
    {
        var st = Small.Value.Store;
        var causal = CausalStatistics.Compute(st, null, out var cs);
        var leaky = CausalStatistics.Compute(st, new CausalStatisticsOptions { LeakSameSecond = true }, out _);
        int w = cs.FeatureCount, c = Col(cs, "user×item_id.behaviour_recency"), x = 0, clickedHigher = 0, clicked = 0;
        for (int ev = 0; ev < st.Count; ev++)
        {
            if (!st.IsExposure(ev)) continue;
            if (st.SourceOf(ev) is 0 or 1 && st.Label(ev, 0) == 1)
            {
                clicked++;
                if (leaky[x * w + c] >= causal[x * w + c] + 0.99f) clickedHigher++;
            }
            x++;
        }
        Assert.Equal(clicked, clickedHigher);
    }

    internal static int Col(CausalStatistics cs, string name)
    {
        int i = cs.FeatureNames.ToList().IndexOf(name);
        Assert.True(i >= 0, $"no column {name}");
        return i;
    }

    internal static long MedianExposureTime(EventStore st)
    {
        var times = Enumerable.Range(0, st.Count).Where(st.IsExposure).Select(st.TimeOf).Order().ToArray();
        return times[times.Length / 2];
    }

    /// <summary>Flips every present label of every exposure at or after <paramref name="t"/>.</summary>
    internal static void FlipLabelsFrom(EventStore st, long t)
    {
        int tasks = st.Layout.TaskCount;
        for (int ev = 0; ev < st.Count; ev++)
        {
            if (!st.IsExposure(ev) || st.TimeOf(ev) < t) continue;
            int x = st.ExposureIndex.Items[ev];
            for (int k = 0; k < tasks; k++)
            {
                ref byte b = ref st.Labels.Items[x * tasks + k];
                if (b != 255) b = (byte)(1 - b);
            }
        }
    }
}
