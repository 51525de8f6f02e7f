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
    /// rates of the scenario's user columns with <paramref name="userRecentPrior"/>).
    /// </summary>
    [Theory]
    [InlineData(10.0)]
    [InlineData(100.0)]
    public void ColumnsEqualABruteForceCountOfEarlierSecondsOfTheSameValue(double userRecentPrior)
    {
        var st = Small.Value.Store;
        var cols = PopulationStatistics.ForStore(st, userRecentPrior);
        var l = st.Layout;
        int userColumns = 0, recentUserCells = 0;
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
                // (1) this scenario's exposures with the value, (2) every scenario's exposures whose column of the same table holds it
                Check(earlier.Where(e => st.Categorical(e)[col] == v), p, recentPrior, got.Slice(k * a, 4));
                Check(earlierAll.Where(e => TableRow(e, table) == v), pAll, recentPrior, got.Slice(k * a + 4, 4));
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

    [Fact]
    public void TheSavedStateReadsBackBitForBitAndBadTensorsAreRefusedByName()
    {
        var st = Small.Value.Store;
        var state = PopulationStatistics.ForStore(st, 100).FinalState;
        string dir = Directory.CreateTempSubdirectory("mtfm-pop-").FullName;
        try
        {
            var w = new SafetensorsWriter();
            PopulationCheckpoint.Write(state, w);
            string path = Path.Combine(dir, "pop.safetensors");
            w.Save(path);
            var back = PopulationCheckpoint.Read(SafetensorsFile.Load(path), st.Layout, path, state.UserRecentPrior);
            long tEnd = Enumerable.Range(0, st.Count).Max(st.TimeOf) + 1;
            int compared = 0;
            for (int ev = 0; ev < st.Count; ev += 7)
            {
                if (!st.IsExposure(ev)) continue;
                int s = st.SourceOf(ev), width = state.Width(s);
                var a = new float[width]; var b = new float[width];
                state.Read(s, st.Categorical(ev), tEnd + ev, a);
                back.Read(s, st.Categorical(ev), tEnd + ev, b);
                Assert.True(MemoryMarshal.AsBytes(a.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(b.AsSpan())), $"event {ev}");
                compared++;
            }
            Assert.True(compared > 100);

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
