using System.Runtime.InteropServices;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;

namespace Mtfm.Tests.Data;

public class PopulationStatisticsTests
{
    private static readonly Lazy<MarketDataset> Small = new(() => MarketGenerator.Generate(MarketConfig.Small));

    /// <summary>
    /// Every column of every exposure recomputed independently from the raw log: counts and clicks of the exposures of
    /// the same scenario holding the same value in strictly earlier seconds (first-task label present), decayed sums
    /// Σ e^(−Δt/1 d), and the smoothed log-odds ratios against the scenario's click rate so far (prior 10; the decayed
    /// rates of the scenario's user columns with <paramref name="userRecentPrior"/>). With
    /// <paramref name="atWindowStart"/> the user columns count only exposures of earlier windows (one-day windows of the
    /// schema), decayed to the exposure's time, against the same running rates p.
    /// </summary>
    [Theory]
    [InlineData(10.0, false)]
    [InlineData(100.0, false)]
    [InlineData(100.0, true)]
    public void ColumnsEqualABruteForceCountOfEarlierSecondsOfTheSameValue(double userRecentPrior, bool atWindowStart)
    {
        var st = Small.Value.Store;
        var cols = PopulationStatistics.ForStore(st, userRecentPrior, atWindowStart);
        var l = st.Layout;
        long windowSeconds = l.Schema.WindowSeconds, origin = l.Schema.WindowOrigin;
        int userColumns = 0, recentUserCells = 0, sameWindowUserCells = 0;
        var exposures = Enumerable.Range(0, st.Count).Where(st.IsExposure).ToArray();
        var behaviours = Enumerable.Range(0, st.Count).Where(e => !st.IsExposure(e)).ToArray();
        int ns = l.ScenarioCount, k = PopulationStatistics.ColumnsPerFeature;
        int checkedCells = 0, sameSecondPeers = 0, behaviourCells = 0;
        for (int i = 0; i < exposures.Length; i += 23) // a spread sample: the brute force is O(n) per exposure
        {
            int ev = exposures[i], s = st.SourceOf(ev);
            long t = st.TimeOf(ev);
            var earlierAll = exposures.Where(e => st.TimeOf(e) < t && st.Label(e, 0) >= 0).ToArray();
            var earlier = earlierAll.Where(e => st.SourceOf(e) == s).ToArray();
            sameSecondPeers += exposures.Count(e => e != ev && st.SourceOf(e) == s && st.TimeOf(e) == t);
            double p = (earlier.Sum(e => st.Label(e, 0)) + 1) / (earlier.Length + 2.0);
            double pAll = (earlierAll.Sum(e => st.Label(e, 0)) + 1) / (earlierAll.Length + 2.0);
            var got = cols.Of(st.ExposureIndexOf(ev));
            var rows = st.Categorical(ev).ToArray();
            var tables = l.Groups[l.TargetGroup(s)].CategoricalTables;
            Assert.Equal(k * rows.Length, got.Length);
            var features = l.Schema.Scenarios[s].AllFeatures().Where(f => l.Schema.Features.First(x => x.Name == f).Kind != "numeric").ToArray();
            Assert.Equal(rows.Length, features.Length);
            for (int a = 0; a < rows.Length; a++)
            {
                int v = rows[a], col = a, table = tables[a];
                bool user = l.Schema.Scenarios[s].UserFeatures.Contains(features[a]);
                double recentPrior = user ? userRecentPrior : 10;
                if (user) userColumns++;
                // At the window start: only exposures of windows before the token's own count for a user column.
                long from = user && atWindowStart ? origin + (long)Math.Floor((t - origin) / (double)windowSeconds) * windowSeconds : t;
                if (user && atWindowStart && earlier.Any(e => st.TimeOf(e) >= from && st.Categorical(e)[col] == v)) sameWindowUserCells++;
                // (1) this scenario's exposures with the value, (2) every scenario's exposures whose column of the same table holds it
                Check(earlier.Where(e => st.TimeOf(e) < from && st.Categorical(e)[col] == v), p, recentPrior, got.Slice(k * a, 4));
                Check(earlierAll.Where(e => st.TimeOf(e) < from && TableRow(e, table) == v), pAll, recentPrior, got.Slice(k * a + 4, 4));
                // (3) behaviour events (any sequence) whose column of the same table holds it
                var acted = behaviours.Where(e => st.TimeOf(e) < t && TableRow(e, table) == v).ToArray();
                Assert.Equal(Math.Log(1 + acted.Length) / 4, got[k * a + 8], tolerance: 1e-5);
                Assert.Equal(Math.Log(1 + acted.Sum(e => Math.Exp(-(t - st.TimeOf(e)) / 86400.0))) / 4, got[k * a + 9], tolerance: 1e-4);
                if (acted.Length > 0) behaviourCells++;
                checkedCells++;
            }

            void Check(IEnumerable<int> sameValue, double prior, double recentPrior, ReadOnlySpan<float> o)
            {
                var same = sameValue.ToArray();
                double e0 = same.Length, c0 = same.Sum(e => st.Label(e, 0));
                double ed = same.Sum(e => Math.Exp(-(t - st.TimeOf(e)) / 86400.0));
                double cd = same.Where(e => st.Label(e, 0) == 1).Sum(e => Math.Exp(-(t - st.TimeOf(e)) / 86400.0));
                Assert.Equal(Math.Log(1 + e0) / 4, o[0], tolerance: 1e-5);
                Assert.Equal(Math.Log(1 + ed) / 4, o[1], tolerance: 1e-4);
                Assert.Equal(Lor(c0, e0, prior, 10), o[2], tolerance: 1e-4);
                Assert.Equal(Lor(cd, ed, prior, recentPrior), o[3], tolerance: 1e-4);
                if (recentPrior != 10 && ed > 0.5) recentUserCells++;
            }
        }
        Assert.True(checkedCells > 2000, $"{checkedCells} cells");
        Assert.True(userColumns > 200, $"{userColumns} user columns");
        if (userRecentPrior != 10) Assert.True(recentUserCells > 100, $"{recentUserCells} user cells with last-day exposures (else the prior is not exercised)");
        if (atWindowStart) Assert.True(sameWindowUserCells > 100, $"{sameWindowUserCells} user cells with earlier exposures in the same window (else the rule is not exercised)");
        Assert.True(behaviourCells > 200, $"{behaviourCells} cells with earlier behaviour");
        Assert.True(sameSecondPeers > 0, "the sample must hold exposures that share their second (pages), or the strict rule is not exercised");

        // The row of embedding table `table` in event e's categorical columns, or −1 when e has no column of that table.
        int TableRow(int e, int table)
        {
            int src = st.SourceOf(e);
            var tabs = src < ns ? l.Groups[l.TargetGroup(src)].CategoricalTables : l.Groups[l.HistoryGroup(src - ns)].CategoricalTables;
            int c = Array.IndexOf(tabs, table);
            return c < 0 ? -1 : st.Categorical(e)[c];
        }

        static double Lor(double c, double e, double p, double k)
        {
            double q = (c + k * p) / (e + k);
            return Math.Log(q / (1 - q)) - Math.Log(p / (1 - p));
        }
    }

    /// <summary>Leak test (issue 9 item 6): flipping every label at or after t leaves every column before t bit-identical, and changes later ones.</summary>
    [Fact]
    public void FlippingLabelsFromTimeTLeavesEveryEarlierColumnBitIdentical()
    {
        var st = MarketGenerator.Generate(MarketConfig.Small).Store;
        var before = PopulationStatistics.ForStore(st);
        long t = CausalStatisticsTests.MedianExposureTime(st);
        CausalStatisticsTests.FlipLabelsFrom(st, t);
        var after = PopulationStatistics.ForStore(st);
        int earlier = 0; bool laterDiffers = false;
        for (int ev = 0; ev < st.Count; ev++)
        {
            if (!st.IsExposure(ev)) continue;
            int x = st.ExposureIndexOf(ev);
            bool same = MemoryMarshal.AsBytes(before.Of(x)).SequenceEqual(MemoryMarshal.AsBytes(after.Of(x)));
            if (st.TimeOf(ev) < t) { Assert.True(same, $"exposure {x} at {st.TimeOf(ev)} < {t} changed"); earlier++; }
            else laterDiffers |= !same;
        }
        Assert.True(earlier > 1000);
        Assert.True(laterDiffers, "the flip must change later columns (else this test could not fail)");
    }

    /// <summary>
    /// The saved state reads back bit for bit, at times in the last window of the log (where a window-start state reads
    /// its snapshots: checked against the per-exposure state, which must differ there) and later.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheSavedStateReadsBackBitForBitAndBadTensorsAreRefusedByName(bool atWindowStart)
    {
        var st = Small.Value.Store;
        var state = PopulationStatistics.ForStore(st, 100, atWindowStart).FinalState;
        var perExposure = PopulationStatistics.ForStore(st, 100).FinalState;
        string dir = Directory.CreateTempSubdirectory("mtfm-pop-").FullName;
        try
        {
            var w = new SafetensorsWriter();
            PopulationCheckpoint.Write(state, w);
            string path = Path.Combine(dir, "pop.safetensors");
            w.Save(path);
            var back = PopulationCheckpoint.Read(SafetensorsFile.Load(path), st.Layout, path, state.UserRecentPrior, atWindowStart);
            Assert.Equal(atWindowStart, back.UserRatesAtWindowStart);
            long tLast = Enumerable.Range(0, st.Count).Max(st.TimeOf);
            var windows = WindowSpec.From(st.Layout.Schema);
            int compared = 0, snapshotReads = 0;
            for (int ev = 0; ev < st.Count; ev += 7)
            {
                if (!st.IsExposure(ev)) continue;
                int s = st.SourceOf(ev), width = state.Width(s);
                // Half the reads at the last event's second (inside the log's last window), half a day and more later.
                long time = ev % 2 == 0 ? tLast : tLast + 86400 + ev;
                var a = new float[width]; var b = new float[width]; var c = new float[width];
                state.Read(s, st.Categorical(ev), time, a);
                back.Read(s, st.Categorical(ev), time, b);
                Assert.True(MemoryMarshal.AsBytes(a.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(b.AsSpan())), $"event {ev}");
                perExposure.Read(s, st.Categorical(ev), time, c);
                bool same = MemoryMarshal.AsBytes(a.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(c.AsSpan()));
                if (!atWindowStart || windows.IndexOf(time) != windows.IndexOf(tLast)) Assert.True(same, $"event {ev} at {time}: the rules must agree outside the last window");
                else if (!same) snapshotReads++;
                compared++;
            }
            Assert.True(compared > 100);
            if (atWindowStart) Assert.True(snapshotReads > 20, $"{snapshotReads} reads from window-start counts");
            if (atWindowStart)
            {
                // A window-start state needs its snapshots: a file without them is refused by name.
                var plain = new SafetensorsWriter();
                PopulationCheckpoint.Write(perExposure, plain);
                string noWindow = Path.Combine(dir, "nowindow.safetensors");
                plain.Save(noWindow);
                var missing = Assert.Throws<CheckpointFormatException>(() => PopulationCheckpoint.Read(SafetensorsFile.Load(noWindow), st.Layout, noWindow, 100, userRatesAtWindowStart: true));
                Assert.Contains(".window' is missing", missing.Message);
            }

            var partial = new SafetensorsWriter();
            partial.AddInt64("population.0.totals", [0, 0], 2);
            string bad = Path.Combine(dir, "bad.safetensors");
            partial.Save(bad);
            var ex = Assert.Throws<CheckpointFormatException>(() => PopulationCheckpoint.Read(SafetensorsFile.Load(bad), st.Layout, bad, 10));
            Assert.Contains("bad.safetensors", ex.Message);
            Assert.Contains("'population.0.0' is missing", ex.Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
