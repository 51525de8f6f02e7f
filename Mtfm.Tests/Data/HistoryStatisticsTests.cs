using Mtfm.Engine.Data;

namespace Mtfm.Tests.Data;

public class HistoryStatisticsTests
{
    private static float L(double x) => (float)(Math.Log(1 + x) / 4);

    private static float Since(long now, long last) => last == long.MinValue ? 2f : (float)(Math.Log(1 + (now - last) / 60.0) / 10);

    /// <summary>
    /// Random logs (equal timestamps, out-of-order inserts, history caps 0..5): every T token's statistics equal an
    /// independent recomputation from the instance's tokens under the spec §4 rule (all H tokens, R tokens strictly
    /// earlier), per sequence: count, 1 h and 1 d decayed counts, time since the latest, and for the shared id feature
    /// the same figures over the tokens holding the candidate's value; per numeric sequence feature its shrunk means
    /// over the visible and the same-value tokens. An R token at the target's own second must not
    /// count (the test fails if the rule is relaxed to ≤).
    /// </summary>
    [Fact]
    public void StatisticsAreTheVisibleTokensCountsAndShares()
    {
        int checkedTargets = 0, sameSecondSeen = 0, numericChecked = 0;
        for (ulong seed = 1; seed <= 30; seed++)
        {
            var st = AggregatorTests.RandomStore(seed, 150);
            var l = st.Layout;
            var hs = new HistoryStatistics(l);
            var agg = UserLevelAggregator.Aggregate(st);
            var batch = new BatchBuilder(agg, st.ComputeNumericStats()).Build(Enumerable.Range(0, agg.Count).ToArray());
            for (int i = 0; i < batch.InstanceCount; i++)
            {
                for (int t = batch.Offsets[i]; t < batch.Offsets[i + 1]; t++)
                {
                    if (batch.Segment[t] != (byte)SegmentKind.Target) continue;
                    int g = batch.Group[t], s = l.Groups[g].Source;
                    var tb = batch.Blocks[g];
                    Assert.Equal(hs.Width(s), tb.StatisticsWidth);
                    var got = tb.Statistics.AsSpan(batch.RowInGroup[t] * tb.StatisticsWidth, tb.StatisticsWidth).ToArray();
                    var want = new List<float>();
                    var tTables = l.Groups[g].CategoricalTables;
                    for (int j = 0; j < l.SequenceCount; j++)
                    {
                        var qTables = l.Groups[l.HistoryGroup(j)].CategoricalTables;
                        Assert.All(qTables, q => Assert.True(l.Tables[q].Rows > HistoryStatistics.MaxLowCardinalityRows));
                        var visible = new List<int>();
                        for (int k = batch.Offsets[i]; k < batch.Offsets[i + 1]; k++)
                        {
                            bool mine = batch.Group[k] == l.HistoryGroup(j) || batch.Group[k] == l.RealtimeGroup(j);
                            if (!mine) continue;
                            if (batch.Segment[k] == (byte)SegmentKind.Realtime && batch.Time[k] == batch.Time[t]) sameSecondSeen++;
                            if (batch.Segment[k] == (byte)SegmentKind.History || batch.Time[k] < batch.Time[t]) visible.Add(k);
                        }
                        long now = batch.Time[t];
                        double n = visible.Count;
                        want.Add(L(n));
                        want.Add(L(visible.Sum(k => Math.Exp(-(now - batch.Time[k]) / 3600.0))));
                        want.Add(L(visible.Sum(k => Math.Exp(-(now - batch.Time[k]) / 86400.0))));
                        want.Add(Since(now, visible.Count == 0 ? long.MinValue : visible.Max(k => batch.Time[k])));
                        var sameSets = new List<List<int>>();
                        for (int a = 0; a < tTables.Length; a++)
                        {
                            int b = Array.IndexOf(qTables, tTables[a]);
                            if (b < 0) continue;
                            int value = tb.Categorical[batch.RowInGroup[t] * tb.CategoricalWidth + a];
                            var same = visible.Where(k =>
                            {
                                var kb = batch.Blocks[batch.Group[k]];
                                return kb.Categorical[batch.RowInGroup[k] * kb.CategoricalWidth + b] == value;
                            }).ToList();
                            sameSets.Add(same);
                            want.Add(L(same.Count));
                            want.Add((float)(same.Count / (n + 1)));
                            want.Add(L(same.Sum(k => Math.Exp(-(now - batch.Time[k]) / 86400.0))));
                            want.Add(Since(now, same.Count == 0 ? long.MinValue : same.Max(k => batch.Time[k])));
                        }
                        // Numeric columns of the sequence: shrunk means of the transformed values.
                        int nw = l.Groups[l.HistoryGroup(j)].NumericFeatures.Length;
                        double Num(int k, int c)
                        {
                            var kb = batch.Blocks[batch.Group[k]];
                            return kb.Numeric[batch.RowInGroup[k] * kb.NumericWidth + c];
                        }
                        for (int c = 0; c < nw; c++)
                        {
                            numericChecked++;
                            want.Add((float)(visible.Sum(k => Num(k, c)) / (n + 1)));
                            foreach (var same in sameSets) want.Add((float)(same.Sum(k => Num(k, c)) / (same.Count + 1)));
                        }
                    }
                    Assert.Equal(want.Count, got.Length);
                    for (int c = 0; c < got.Length; c++)
                        Assert.True(Math.Abs(want[c] - got[c]) <= 1e-6f, $"seed {seed} token {t} column {c}: want {want[c]}, got {got[c]}");
                    checkedTargets++;
                }
            }
        }
        Assert.True(checkedTargets > 1000, $"{checkedTargets} targets");
        Assert.True(numericChecked > 0, "no sequence with a numeric feature was checked");
        Assert.True(sameSecondSeen > 0, "no R token at a target's own second: the strict rule was not exercised");
    }

    /// <summary>
    /// The trainer computes a batch's statistics over its instances in parallel on the CPU pool
    /// (<see cref="BatchBuilder.Parallel"/>): the columns equal the serial fill's bit for bit, on random logs and on
    /// the synthetic default (feedback tokens, low-cardinality outcomes, pages of exposures at one second), and every
    /// instance range was handed to the pool (so the test fails if the parallel path is skipped).
    /// </summary>
    [Fact]
    public void AParallelFillEqualsTheSerialFillBitForBit()
    {
        using var pool = new Mtfm.Engine.Backends.Cpu.CpuWorkerPool(2);
        int parallelCalls = 0;
        ParallelRanges parallel = (n, min, body) => { parallelCalls++; pool.For(n, min, body); };
        var stores = new List<EventStore>();
        for (ulong seed = 1; seed <= 5; seed++) stores.Add(AggregatorTests.RandomStore(seed, 600));
        int wide = 0; // batches with enough instances for two chunks
        var syn = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        stores.Add(FeedbackTokens.Derive(syn, FeedbackTokens.WithClickFeedback(syn.Layout.Schema)));
        foreach (var st in stores)
        {
            var agg = UserLevelAggregator.Aggregate(st);
            var stats = st.ComputeNumericStats();
            var all = Enumerable.Range(0, agg.Count).ToArray();
            var serial = new BatchBuilder(agg, stats).Build(all);
            var par = new BatchBuilder(agg, stats) { Parallel = parallel }.Build(all);
            Assert.True(serial.TargetCount > 0);
            if (serial.InstanceCount >= 16) wide++;
            for (int g = 0; g < serial.Blocks.Length; g++)
                Assert.Equal(serial.Blocks[g].Statistics, par.Blocks[g].Statistics);
        }
        Assert.True(wide >= 2, $"{wide} batches with ≥ 16 instances");
        Assert.Equal(wide, parallelCalls);
    }

    /// <summary>
    /// Per-value shares of a low-cardinality sequence feature (a rating, a feedback outcome): c_v/(n+1) over the
    /// visible tokens and c_{same,v}/(m+1) over those holding the candidate's item; the behaviour at the exposure's own
    /// second (its own outcome) is not counted.
    /// </summary>
    [Fact]
    public void LowCardinalitySequenceFeaturesGiveValueShares()
    {
        var schema = DatasetSchema.Parse("""
        {
          "userColumn": "user", "timeColumn": "ts", "sourceColumn": "source", "windowSeconds": 86400, "windowOrigin": 0,
          "tasks": ["click"],
          "features": [
            { "name": "item", "kind": "id", "cardinality": 100 },
            { "name": "outcome", "kind": "categorical", "vocabulary": ["no", "yes"] }
          ],
          "scenarios": [ { "name": "feed", "itemFeatures": ["item"], "labels": { "click": "click" } } ],
          "sequences": [ { "name": "seen", "features": ["item", "outcome"], "historyCap": 10 } ]
        }
        """);
        var l = new DataLayout(schema);
        var st = new EventStore(l);
        int u = st.InternUser("u");
        void Seen(long t, int item, string outcome)
        {
            st.BeginEvent(u, t, 1);
            st.CatValues.Add(l.EncodeId(0, item));
            st.CatValues.Add(l.EncodeCategorical(1, outcome));
        }
        Seen(10, 5, "yes"); Seen(20, 6, "no"); Seen(30, 5, "yes");
        st.BeginEvent(u, 30, 0);
        st.CatValues.Add(l.EncodeId(0, 5));
        st.Labels.Add(1); st.TrueProb.Add(float.NaN);
        var agg = UserLevelAggregator.Aggregate(st);
        var batch = new BatchBuilder(agg, st.ComputeNumericStats()).Build([0]);
        var hs = new HistoryStatistics(l);
        // base 4, same item 4, outcome rows (OOV, no, yes) overall 3 and among the same item 3
        Assert.Equal(14, hs.Width(0));
        var tb = batch.Blocks[l.TargetGroup(0)];
        Assert.Equal(1, tb.Rows);
        var got = tb.Statistics;
        Assert.Equal(L(2), got[0], 6);                 // two visible behaviours (t = 30 is the exposure's own second)
        Assert.Equal(L(1), got[4], 6);                 // one of them on item 5
        Assert.Equal(1 / 3f, got[5], 6);
        Assert.Equal([0f, 1 / 3f, 1 / 3f], got[8..11]);
        Assert.Equal([0f, 0f, 1 / 2f], got[11..14]);
    }

    /// <summary>
    /// A statistics cap counts the older events without tokenizing them: on random logs, every T token's statistics
    /// with H caps c and statistics caps c + k equal, bit for bit, those of the same log with H caps c + k, while the
    /// batch holds only the c-capped H tokens. Logs where some instance has older events are required (a fill that
    /// ignored them would differ there).
    /// </summary>
    [Fact]
    public void AStatisticsCapCountsWhatALongerHistoryWouldWithoutItsTokens()
    {
        var extra = new[] { 2, 5 };
        int instancesWithOlder = 0, targets = 0;
        for (ulong seed = 1; seed <= 30; seed++)
        {
            var capped = AggregatorTests.RandomStore(seed, 200, s => { for (int j = 0; j < 2; j++) s.Sequences[j].StatisticsCap = s.Sequences[j].HistoryCap + extra[j]; });
            var longer = AggregatorTests.RandomStore(seed, 200, s => { for (int j = 0; j < 2; j++) s.Sequences[j].HistoryCap += extra[j]; });
            var a = UserLevelAggregator.Aggregate(capped);
            var b = UserLevelAggregator.Aggregate(longer);
            Assert.Equal(a.Count, b.Count);
            var ba = new BatchBuilder(a, capped.ComputeNumericStats()).Build(Enumerable.Range(0, a.Count).ToArray());
            var bb = new BatchBuilder(b, longer.ComputeNumericStats()).Build(Enumerable.Range(0, b.Count).ToArray());
            for (int i = 0; i < a.Count; i++)
            {
                int older = a.OlderCountOf(i);
                if (older > 0) instancesWithOlder++;
                int hA = a.Segments(i).ToArray().Count(x => x == (byte)SegmentKind.History), hB = b.Segments(i).ToArray().Count(x => x == (byte)SegmentKind.History);
                Assert.Equal(hB, hA + older);
                var ta = Targets(ba, i); var tb = Targets(bb, i);
                Assert.Equal(ta.Count, tb.Count);
                for (int x = 0; x < ta.Count; x++)
                {
                    Assert.Equal(ba.EventId[ta[x]], bb.EventId[tb[x]]);
                    Assert.True(Row(ba, ta[x]).SequenceEqual(Row(bb, tb[x])), $"seed {seed} instance {i} target {x}");
                    targets++;
                }
            }
        }
        Assert.True(instancesWithOlder > 50 && targets > 500, $"{instancesWithOlder} instances with older events, {targets} targets");

        static List<int> Targets(JaggedBatch batch, int i) =>
            Enumerable.Range(batch.Offsets[i], batch.Offsets[i + 1] - batch.Offsets[i]).Where(t => batch.Segment[t] == (byte)SegmentKind.Target).ToList();

        static ReadOnlySpan<float> Row(JaggedBatch batch, int t)
        {
            var blk = batch.Blocks[batch.Group[t]];
            return blk.Statistics.AsSpan(batch.RowInGroup[t] * blk.StatisticsWidth, blk.StatisticsWidth);
        }
    }

    /// <summary>
    /// A feedback sequence's absent row gets a share column but does not count against the low-cardinality limit: a
    /// 15-value feature (16 rows) that only groupbuy has still gives feed's T tokens its per-value shares over the
    /// feedback tokens (17 columns per aggregate: its 16 rows and the absent row) once the table has 17 rows.
    /// </summary>
    [Fact]
    public void AnAbsentRowDoesNotTakeALowCardinalityFeaturesShares()
    {
        var raw = SyntheticGenerator.Generate(SyntheticConfig.Tiny with { Users = 5, Days = 2 }).Store.Layout.Schema;
        int FeedWidth(bool tier, out DataLayout layout)
        {
            var x = DatasetSchema.Parse(raw.ToJson());
            if (tier)
            {
                x.Features.Add(new FeatureSpec { Name = "tier", Kind = "categorical", Vocabulary = [.. Enumerable.Range(0, 15).Select(i => "t" + i)] });
                x.Scenarios.Single(sc => sc.Name == "groupbuy").ItemFeatures.Add("tier");
            }
            layout = new DataLayout(FeedbackTokens.Expand(FeedbackTokens.WithClickFeedback(x)));
            return new HistoryStatistics(layout).Width(layout.Schema.Scenarios.FindIndex(sc => sc.Name == "feed"));
        }
        int without = FeedWidth(false, out _), with = FeedWidth(true, out var l);
        int tierFeature = l.Schema.Features.FindIndex(f => f.Name == "tier");
        Assert.Equal(17, l.Tables[l.FeatureTable[tierFeature]].Rows);
        Assert.True(l.AbsentRow[tierFeature] == 16);
        Assert.Equal(without + 17 * (1 + 2), with); // overall and per same-value column (item_id, category) of the feedback sequence
    }
}
