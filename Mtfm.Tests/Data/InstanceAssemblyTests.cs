using Mtfm.Engine.Data;

namespace Mtfm.Tests.Data;

public class InstanceAssemblyTests
{
    /// <summary>CountBatches (offsets only) equals the number of batches Batches builds, for several packings.</summary>
    [Fact]
    public void CountBatchesMatchesTheBatchesBuilt()
    {
        var st = SyntheticGenerator.Generate(SyntheticConfig.Tiny with { Users = 120, Days = 4 }).Store;
        var agg = UserLevelAggregator.Aggregate(st);
        var bb = new BatchBuilder(agg, st.ComputeNumericStats());
        foreach (var (tokens, inst) in new[] { (1, int.MaxValue), (37, int.MaxValue), (500, 3), (4096, int.MaxValue), (1 << 20, 7) })
            Assert.Equal(bb.Batches(tokens, inst).LongCount(), bb.CountBatches(tokens, inst));
        Assert.Throws<ArgumentOutOfRangeException>(() => bb.CountBatches(0));
    }

    /// <summary>The history selector keeps per sequence the last cap pushes and merges them by (time, id).</summary>
    [Fact]
    public void HistorySelectorKeepsTheLastCapPerSequenceMergedByTime()
    {
        var l = AggregatorTests.RandomStore(3, 10).Layout;
        PushAndCheckMerge(new HistorySelector(l), l, 40);
    }

    /// <summary>Pushes <paramref name="count"/> events round-robin over the sequences (three per second), checks Merge against the last H cap per sequence; returns the pushes per sequence.</summary>
    private static List<int>[] PushAndCheckMerge(HistorySelector sel, DataLayout l, int count)
    {
        int nq = l.SequenceCount;
        var time = new long[count];
        var pushed = new List<int>[nq];
        for (int j = 0; j < nq; j++) pushed[j] = [];
        for (int i = 0; i < time.Length; i++)
        {
            time[i] = 100 + i / 3;
            int j = i % nq;
            sel.Push(j, i); pushed[j].Add(i);
        }
        var ids = new GrowBuffer<int>(4); var seqs = new GrowBuffer<int>(4);
        sel.Merge(time, ref ids, ref seqs);
        var want = Enumerable.Range(0, nq)
            .SelectMany(j => pushed[j].Skip(Math.Max(0, pushed[j].Count - l.Schema.Sequences[j].HistoryCap)).Select(id => (id, j)))
            .OrderBy(p => time[p.id]).ThenBy(p => p.id).ToArray();
        Assert.Equal(want.Select(p => p.id), ids.ToArray());
        Assert.Equal(want.Select(p => p.j), seqs.ToArray());
        return pushed;
    }

    /// <summary>
    /// With statistics caps above the H caps, Merge still yields the last H-cap pushes per sequence, and MergeOlder the
    /// pushes before them up to the statistics cap, sequence by sequence in push order; with no statistics cap above an
    /// H cap there are none.
    /// </summary>
    [Fact]
    public void HistorySelectorHandsTheOlderPushesUpToTheStatisticsCapToMergeOlder()
    {
        var extra = new[] { 3, 7 };
        var st = AggregatorTests.RandomStore(3, 10, s => { for (int j = 0; j < s.Sequences.Count; j++) s.Sequences[j].StatisticsCap = s.Sequences[j].HistoryCap + extra[j]; });
        var l = st.Layout;
        var sel = new HistorySelector(l);
        Assert.True(sel.HasOlder);
        Assert.False(new HistorySelector(AggregatorTests.RandomStore(3, 10).Layout).HasOlder);
        int nq = l.SequenceCount;
        var pushed = PushAndCheckMerge(sel, l, 60);
        var oIds = new GrowBuffer<int>(4); var oSeqs = new GrowBuffer<int>(4);
        sel.MergeOlder(ref oIds, ref oSeqs);
        var older = Enumerable.Range(0, nq).SelectMany(j =>
        {
            int cap = l.Schema.Sequences[j].HistoryCap, n = pushed[j].Count;
            return pushed[j].Skip(Math.Max(0, n - cap - extra[j])).Take(Math.Min(extra[j], Math.Max(0, n - cap))).Select(id => (id, j));
        }).ToArray();
        Assert.Equal(extra.Sum(), older.Length);
        Assert.Equal(older.Select(p => p.id), oIds.ToArray());
        Assert.Equal(older.Select(p => p.j), oSeqs.ToArray());
    }

    /// <summary>A statistics cap below the H cap is refused, for a sequence and for a feedback block; a feedback block's cap reaches its sequence.</summary>
    [Fact]
    public void StatisticsCapsAreValidatedAndCarriedIntoFeedbackSequences()
    {
        var s = AggregatorTests.RandomSchema(4, 2);
        s.Sequences[0].StatisticsCap = 3;
        Assert.Contains("sequence 's0' has statisticsCap 3 < its historyCap 4", Assert.Throws<DataFormatException>(() => s.Validate()).Message);
        s.Sequences[0].StatisticsCap = 4;
        s.Validate();
        var f = FeedbackTokens.WithClickFeedback(AggregatorTests.RandomSchema(4, 2), 5, 40);
        var fb = f.Scenarios.First(x => x.Feedback is not null).Feedback!;
        Assert.Equal(40, fb.StatisticsCap);
        Assert.Equal(40, FeedbackTokens.Expand(f).Sequences.Single(q => q.Name == fb.Sequence).StatisticsCap);
        Assert.Equal(40, DatasetSchema.Parse(FeedbackTokens.Expand(f).ToJson()).Sequences.Single(q => q.Name == fb.Sequence).StatisticsCap);
        fb.StatisticsCap = 4;
        Assert.Contains("statisticsCap 4 < its historyCap 5", Assert.Throws<DataFormatException>(() => f.Validate()).Message);
        Assert.Null(DatasetSchema.Parse(AggregatorTests.RandomSchema(1, 1).ToJson()).Sequences[0].StatisticsCap);
    }
}
