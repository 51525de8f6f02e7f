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
        var st = AggregatorTests.RandomStore(3, 10);
        var l = st.Layout;
        var sel = new HistorySelector(l);
        int nq = l.SequenceCount;
        var time = new long[40];
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
    }
}
