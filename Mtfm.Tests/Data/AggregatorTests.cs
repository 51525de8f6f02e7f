using Mtfm.Engine.Data;

namespace Mtfm.Tests.Data;

public class AggregatorTests
{
    internal static DatasetSchema RandomSchema(int cap0, int cap1) => new()
    {
        WindowSeconds = 100, WindowOrigin = 7,
        Features = [new FeatureSpec { Name = "x", Kind = "id", Cardinality = 50 }, new FeatureSpec { Name = "v", Kind = "numeric" }],
        Scenarios =
        [
            new ScenarioSpec { Name = "a", ItemFeatures = ["x"], Labels = new() { ["click"] = "c", ["conversion"] = "v2" } },
            new ScenarioSpec { Name = "b", ItemFeatures = ["v"], Labels = new() { ["click"] = "c" } },
        ],
        Sequences = [new SequenceSpec { Name = "s0", Features = ["x"], HistoryCap = cap0 }, new SequenceSpec { Name = "s1", Features = ["x", "v"], HistoryCap = cap1 }],
    };

    /// <summary>A random log: few users, clustered times (many ties), events in random insertion order.</summary>
    internal static EventStore RandomStore(ulong seed, int events, Action<DatasetSchema>? schema = null)
    {
        var rng = new Random((int)seed);
        var sc = RandomSchema(rng.Next(0, 4), rng.Next(1, 6));
        schema?.Invoke(sc);
        var l = new DataLayout(sc);
        var st = new EventStore(l);
        for (int i = 0; i < events; i++)
        {
            int u = st.InternUser("u" + rng.Next(0, 5));
            long t = rng.Next(-150, 600) / (rng.Next(2) == 0 ? 1 : 10) * (rng.Next(2) == 0 ? 1 : 10);
            int src = rng.Next(0, 4);
            st.BeginEvent(u, t, src);
            if (src is 0 or 2) st.CatValues.Add(l.EncodeId(0, rng.Next(0, 50)));
            if (src is 1 or 3) st.NumValues.Add((float)rng.NextDouble());
            if (src == 3) st.CatValues.Add(l.EncodeId(0, rng.Next(0, 50)));
            if (src < 2) { st.Labels.Add((byte)rng.Next(2)); st.Labels.Add(src == 0 ? (byte)rng.Next(2) : (byte)255); st.TrueProb.Add(float.NaN); st.TrueProb.Add(float.NaN); }
        }
        return st;
    }

    /// <summary>Brute force per-exposure sampling, independent of the aggregator: for each exposure, scan all events.</summary>
    internal static SortedSet<string> NaivePerExposure(EventStore st)
    {
        var l = st.Layout; var s = l.Schema; var win = WindowSpec.From(s);
        var set = new SortedSet<string>(StringComparer.Ordinal);
        for (int e = 0; e < st.Count; e++)
        {
            if (!st.IsExposure(e)) continue;
            long t = st.TimeOf(e), w = win.IndexOf(t), ws = win.StartOf(w);
            var h = new List<int>();
            for (int j = 0; j < l.SequenceCount; j++)
            {
                var cand = Enumerable.Range(0, st.Count).Where(x => st.UserOf(x) == st.UserOf(e) && st.SourceOf(x) == l.ScenarioCount + j && st.TimeOf(x) < ws)
                    .OrderBy(x => st.TimeOf(x)).ThenBy(x => x).ToList();
                h.AddRange(cand.Skip(Math.Max(0, cand.Count - s.Sequences[j].HistoryCap)));
            }
            var r = Enumerable.Range(0, st.Count).Where(x => st.UserOf(x) == st.UserOf(e) && !st.IsExposure(x) && st.TimeOf(x) >= ws && st.TimeOf(x) < t);
            set.Add(Key(st, e, h, r));
        }
        return set;
    }

    private static string Key(EventStore st, int e, IEnumerable<int> h, IEnumerable<int> r) =>
        $"{e}|{st.Label(e, 0)},{st.Label(e, 1)}|H:{string.Join(',', h.Order())}|R:{string.Join(',', r.Order())}";

    /// <summary>Expands aggregated instances with the spec's visibility rule: a T token sees all H and the R events strictly earlier.</summary>
    internal static SortedSet<string> Expand(AggregatedInstances a)
    {
        var st = a.Store;
        var set = new SortedSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < a.Count; i++)
        {
            var ev = a.Events(i).ToArray(); var seg = a.Segments(i).ToArray();
            var h = ev.Where((x, k) => seg[k] == 0).ToList();
            for (int k = 0; k < ev.Length; k++)
            {
                if (seg[k] != 2) continue;
                var r = ev.Where((x, m) => seg[m] == 1 && st.TimeOf(x) < st.TimeOf(ev[k]));
                Assert.True(set.Add(Key(st, ev[k], h, r)), $"exposure {ev[k]} appears twice");
            }
        }
        return set;
    }

    [Fact]
    public void UserLevelAggregationEqualsPerExposureSamplingOnRandomLogs()
    {
        for (ulong seed = 1; seed <= 60; seed++)
        {
            var st = RandomStore(seed, 20 + (int)(seed * 7 % 150));
            var naive = NaivePerExposure(st);
            var agg = UserLevelAggregator.Aggregate(st);
            var per = UserLevelAggregator.Aggregate(st, AggregationMode.PerExposure);
            Assert.Equal(naive, Expand(agg));
            Assert.Equal(naive, Expand(per));
            Assert.Equal(st.ExposureCount, agg.TargetCount);
            Assert.Equal(st.ExposureCount, per.Count);
            Assert.True(agg.Count <= per.Count);
            CheckInstanceInvariants(agg);
        }
    }

    internal static void CheckInstanceInvariants(AggregatedInstances a)
    {
        var st = a.Store; var l = st.Layout; var win = WindowSpec.From(l.Schema);
        for (int i = 0; i < a.Count; i++)
        {
            long ws = a.WindowStartOf(i), we = ws + win.Length;
            var ev = a.Events(i); var seg = a.Segments(i); var grp = a.Groups(i);
            int prevSeg = 0; long prevT = long.MinValue; int prevE = -1;
            for (int k = 0; k < ev.Length; k++)
            {
                Assert.Equal(a.UserOf(i), st.UserOf(ev[k]));
                Assert.True(seg[k] >= prevSeg, "segments must be ordered H, R, T");
                if (seg[k] != prevSeg) { prevT = long.MinValue; prevE = -1; }
                long t = st.TimeOf(ev[k]);
                Assert.True(t > prevT || (t == prevT && ev[k] > prevE), "tokens must be time-ordered within a segment");
                prevSeg = seg[k]; prevT = t; prevE = ev[k];
                int src = st.SourceOf(ev[k]);
                switch (seg[k])
                {
                    case 0: Assert.True(t < ws); Assert.Equal(l.HistoryGroup(src - l.ScenarioCount), grp[k]); break;
                    case 1: Assert.True(t >= ws && t < we); Assert.Equal(l.RealtimeGroup(src - l.ScenarioCount), grp[k]); break;
                    default: Assert.True(t >= ws && t < we); Assert.Equal(l.TargetGroup(src), grp[k]); break;
                }
            }
            Assert.Contains((byte)2, seg.ToArray());
        }
    }

    [Fact]
    public void HistoryCapKeepsTheMostRecentEvents()
    {
        var l = new DataLayout(RandomSchema(2, 1));
        var st = new EventStore(l);
        int u = st.InternUser("u");
        foreach (var t in new long[] { 10, 20, 30, 40 }) { st.BeginEvent(u, t, 2); st.CatValues.Add(1); }
        st.BeginEvent(u, 50, 3); st.CatValues.Add(1); st.NumValues.Add(1);
        st.BeginEvent(u, 60, 3); st.CatValues.Add(1); st.NumValues.Add(1);
        st.BeginEvent(u, 120, 3); st.CatValues.Add(1); st.NumValues.Add(1);  // window [107, 207): R
        st.BeginEvent(u, 130, 0); st.CatValues.Add(1); st.Labels.Add(1); st.Labels.Add(0); st.TrueProb.Add(0); st.TrueProb.Add(0);
        var a = UserLevelAggregator.Aggregate(st);
        Assert.Equal(1, a.Count);
        Assert.Equal(107, a.WindowStartOf(0));
        Assert.Equal(new[] { 2, 3, 5, 6, 7 }, a.Events(0).ToArray()); // s0 last 2 (30, 40), s1 last 1 (60), R (120), T (130)
        Assert.Equal(new byte[] { 0, 0, 0, 1, 2 }, a.Segments(0).ToArray());
    }

    [Fact]
    public void WindowIndexIsFloorDivision()
    {
        var w = new WindowSpec(100, 7);
        Assert.Equal(0, w.IndexOf(7)); Assert.Equal(0, w.IndexOf(106)); Assert.Equal(1, w.IndexOf(107)); Assert.Equal(-1, w.IndexOf(6)); Assert.Equal(-2, w.IndexOf(-94));
    }
}
