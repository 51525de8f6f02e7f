using Mtfm.Engine.Data;
using Mtfm.Engine.Serving;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.Serving;

public class ScorerEquivalenceTests(ServingFixture fx) : IClassFixture<ServingFixture>
{
    internal static void AssertSameBatch(JaggedBatch want, JaggedBatch got, string what)
    {
        Assert.Equal(want.Offsets, got.Offsets);
        Assert.True(want.Segment.AsSpan().SequenceEqual(got.Segment), what + ": segments");
        Assert.True(want.Group.AsSpan().SequenceEqual(got.Group), what + ": groups");
        Assert.True(want.Time.AsSpan().SequenceEqual(got.Time), what + ": times");
        Assert.True(want.RowInGroup.AsSpan().SequenceEqual(got.RowInGroup), what + ": rows");
        Assert.Equal(want.TargetToken, got.TargetToken);
        Assert.Equal(want.TargetScenario, got.TargetScenario);
        Assert.Equal(want.Blocks.Length, got.Blocks.Length);
        for (int g = 0; g < want.Blocks.Length; g++)
        {
            Assert.Equal(want.Blocks[g].Rows, got.Blocks[g].Rows);
            Assert.Equal(want.Blocks[g].TokenIndex, got.Blocks[g].TokenIndex);
            Assert.True(want.Blocks[g].Categorical.AsSpan().SequenceEqual(got.Blocks[g].Categorical), $"{what}: categorical of group {g}");
            Assert.True(want.Blocks[g].Numeric.AsSpan().SequenceEqual(got.Blocks[g].Numeric), $"{what}: numeric of group {g}");
            Assert.Equal(want.Blocks[g].StatisticsWidth, got.Blocks[g].StatisticsWidth);
            Assert.True(want.Blocks[g].Statistics.AsSpan().SequenceEqual(got.Blocks[g].Statistics), $"{what}: history statistics of group {g}");
        }
    }

    /// <summary>
    /// Random logs with many equal timestamps, events inserted out of time order, history caps 0..5: a one-candidate
    /// request built from the raw log (all of the user's behaviour, in log order, including later windows) encodes to
    /// exactly the batch BatchBuilder makes of the per-exposure instance of that exposure.
    /// </summary>
    /// <remarks>With <paramref name="statisticsCaps"/> every sequence's statistics cap is its H cap + 4: the older events
    /// a request carries enter its T tokens' history statistics exactly as the aggregator's do.</remarks>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OneCandidateRequestEncodesToThePerExposureInstance(bool statisticsCaps)
    {
        int checkedInstances = 0, withOlder = 0;
        for (ulong seed = 1; seed <= 25; seed++)
        {
            var st = Data.AggregatorTests.RandomStore(seed, 120, statisticsCaps ? s => { foreach (var q in s.Sequences) q.StatisticsCap = q.HistoryCap + 4; } : null);
            var stats = st.ComputeNumericStats();
            var per = UserLevelAggregator.Aggregate(st, AggregationMode.PerExposure);
            var builder = new BatchBuilder(per, stats);
            var enc = new RequestEncoder(st.Layout, stats);
            var behaviour = ServingTestData.BehaviourByUser(st);
            for (int i = 0; i < per.Count; i++)
            {
                var ev = per.Events(i);
                var request = ServingTestData.RequestFor(st, behaviour, [ev[^1]]);
                AssertSameBatch(builder.Build([i]), enc.Encode(request).Batch, $"seed {seed} instance {i}");
                checkedInstances++;
                if (per.OlderCountOf(i) > 0) withOlder++;
            }
        }
        Assert.True(checkedInstances > 500, $"{checkedInstances} instances");
        Assert.True(statisticsCaps ? withOlder > 100 : withOlder == 0, $"{withOlder} instances with older events");
    }

    /// <summary>
    /// Synthetic tiny test window, random-init model (seed 7, one thread). For every exposure, a request at its time
    /// whose candidates are all of the instance's exposures in its scenario (the exposure itself among them; T tokens
    /// never see each other, so the others change nothing) gives bit for bit the probability MtfmModel.Score gives on
    /// the BatchBuilder batch of the user-window instance, and of the per-exposure instance.
    /// </summary>
    [Fact]
    public void ScoresEqualTrainerScoresOnAggregatedInstancesBitForBit()
    {
        var st = fx.Store;
        int tasks = st.Layout.TaskCount;
        using var scorer = new Scorer(fx.Model, fx.Stats);
        var uw = new BatchBuilder(fx.UserWindow, fx.Stats);
        var pe = new BatchBuilder(fx.PerExposure, fx.Stats);
        var perIndex = new Dictionary<int, int>();
        for (int i = 0; i < fx.PerExposure.Count; i++) perIndex[fx.PerExposure.Events(i)[^1]] = i;
        int exposures = 0, multi = 0, differUw = 0, differPe = 0;
        float maxDiff = 0;
        for (int i = 0; i < fx.UserWindow.Count; i++)
        {
            var want = fx.Model.Score(uw.Build([i]));
            var events = fx.UserWindow.Events(i); var segs = fx.UserWindow.Segments(i);
            var targets = new List<int>();
            for (int p = 0; p < events.Length; p++) if (segs[p] == (byte)SegmentKind.Target) targets.Add(events[p]);
            for (int j = 0; j < targets.Count; j++)
            {
                int e = targets[j];
                var sameScenario = targets.Where(x => st.SourceOf(x) == st.SourceOf(e)).ToList();
                int pos = sameScenario.IndexOf(e);
                var request = ServingTestData.RequestFor(st, fx.Behaviour, sameScenario);
                request.Time = st.TimeOf(e);
                var got = scorer.ScoreProbabilities(request);
                Assert.Equal(sameScenario.Count * tasks, got.Length);
                if (sameScenario.Count > 1) multi++;
                var single = fx.Model.Score(pe.Build([perIndex[e]]));
                for (int k = 0; k < tasks; k++)
                {
                    float g = got[pos * tasks + k], w = want[j * tasks + k], s1 = single[k];
                    if (Bits(g) != Bits(w)) { differUw++; maxDiff = Math.Max(maxDiff, Math.Abs(g - w)); }
                    if (Bits(g) != Bits(s1)) { differPe++; maxDiff = Math.Max(maxDiff, Math.Abs(g - s1)); }
                }
                exposures++;
            }
        }
        Assert.True(exposures > 100 && multi > 50, $"{exposures} exposures, {multi} multi-candidate requests");
        Assert.True(differUw == 0 && differPe == 0,
            $"of {exposures * tasks} probabilities {differUw} differ from the user-window batch, {differPe} from the per-exposure batch (max |diff| {maxDiff:G3})");
    }

    private static int Bits(float f) => BitConverter.SingleToInt32Bits(f);
}
