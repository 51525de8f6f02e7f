using Mtfm.Engine.Data;

namespace Mtfm.Tests.Data;

public class MarketGeneratorTests
{
    private static readonly Lazy<MarketDataset> Small = new(() => MarketGenerator.Generate(MarketConfig.Small));

    [Fact]
    public void MarketIsDeterministicAndHasItsTraps()
    {
        var a = Small.Value.Store;
        var b = MarketGenerator.Generate(MarketConfig.Small).Store;
        Assert.Equal(a.Count, b.Count);
        Assert.True(a.Time.Span.SequenceEqual(b.Time.Span) && a.CatValues.Span.SequenceEqual(b.CatValues.Span) && a.Labels.Span.SequenceEqual(b.Labels.Span));
        Assert.True(a.TrueProb.Span.SequenceEqual(b.TrueProb.Span));
        var l = a.Layout;
        Assert.Equal(4, l.ScenarioCount);
        Assert.Equal(4, Enumerable.Range(0, 4).Select(s => string.Join(",", l.Schema.Scenarios[s].AllFeatures())).Distinct().Count());
        int click = l.ScenarioCount, order = l.ScenarioCount + 3;
        // Pages: several exposures of one user at one second; own-second clicks written before and after the exposure.
        var byUserSecond = new Dictionary<(int, long), List<int>>();
        for (int e = 0; e < a.Count; e++)
        {
            var k = (a.UserOf(e), a.TimeOf(e));
            if (!byUserSecond.TryGetValue(k, out var list)) byUserSecond[k] = list = [];
            list.Add(e);
        }
        int pages = 0, clickBefore = 0, clickAfter = 0;
        foreach (var evs in byUserSecond.Values)
        {
            var exps = evs.Where(a.IsExposure).ToList();
            if (exps.Count >= 2) pages++;
            foreach (int c in evs.Where(e => a.SourceOf(e) == click))
            {
                if (c < exps.Min()) clickBefore++;
                if (c > exps.Max()) clickAfter++;
            }
        }
        Assert.True(pages > 1000, $"{pages} multi-exposure pages");
        Assert.True(clickBefore > 100 && clickAfter > 100, $"own-second clicks before {clickBefore}, after {clickAfter}");
        // Orders at least 60 s after a click of the same user.
        var clicksOf = Enumerable.Range(0, a.Count).Where(e => a.SourceOf(e) == click).ToLookup(a.UserOf, a.TimeOf);
        int orders = 0;
        for (int e = 0; e < a.Count; e++)
        {
            if (a.SourceOf(e) != order) continue;
            orders++;
            Assert.Contains(clicksOf[a.UserOf(e)], t => a.TimeOf(e) - t >= 60 && a.TimeOf(e) - t <= 60 + 1800);
        }
        Assert.True(orders > 100);
        // Promo has no conversion label; every exposure's p(click) is in (0, 1).
        for (int e = 0; e < a.Count; e++)
            if (a.IsExposure(e))
            {
                Assert.InRange(a.TrueProbability(e, 0), 1e-6f, 1 - 1e-6f);
                Assert.Equal(a.SourceOf(e) == 3, a.Label(e, 1) < 0);
            }
    }

    [Fact]
    public void ActivityIsHeavyTailedAndMostUsersUseOneScenario()
    {
        var a = Small.Value.Store;
        var exposures = new int[a.UserCount]; var scenarios = new int[a.UserCount];
        for (int e = 0; e < a.Count; e++)
            if (a.IsExposure(e)) { exposures[a.UserOf(e)]++; scenarios[a.UserOf(e)] |= 1 << a.SourceOf(e); }
        var active = Enumerable.Range(0, a.UserCount).Where(u => exposures[u] > 0).ToArray();
        double single = active.Count(u => System.Numerics.BitOperations.PopCount((uint)scenarios[u]) == 1) / (double)active.Length;
        Assert.InRange(single, 0.55, 0.9);
        var sorted = active.Select(u => exposures[u]).Order().ToArray();
        int median = sorted[sorted.Length / 2], p99 = sorted[(int)(sorted.Length * 0.99)];
        Assert.True(p99 >= 15 * median, $"median {median}, p99 {p99}");
    }

    [Fact]
    public void TruthReportsBayesAboveBothOracles()
    {
        var rows = Small.Value.TruthReport(SplitPart.Test);
        Assert.Equal(5, rows.Count);
        foreach (var r in rows)
        {
            Assert.InRange(r.BayesAuc, 0.75, 0.97);
            Assert.True(r.NoUserAuc < r.BayesAuc - 0.1, $"{r}");
            Assert.True(r.NoRecencyAuc < r.BayesAuc, $"{r}");
        }
        Assert.True(double.IsNaN(rows.Single(r => r.Scenario == "promo").BayesCtcvrAuc));
        Assert.Contains("no-recency", Small.Value.TruthTable());
    }
    [Fact]
    public void DataNamesMapToTheBuiltInSizes()
    {
        Assert.Equal(MarketConfig.Default, MarketConfig.FromName("synthetic:market"));
        Assert.Equal(MarketConfig.Small, MarketConfig.FromName("synthetic:market-small"));
        var light = MarketConfig.FromName("synthetic:market-light");
        Assert.Equal(MarketConfig.Light, light);
        // Light users: more users than the default with fewer sessions each, otherwise the same generator settings.
        Assert.True(light!.Users > MarketConfig.Default.Users && light.MaxSessions < MarketConfig.Default.MaxSessions);
        Assert.Equal(MarketConfig.Default with { Users = light.Users, MaxSessions = light.MaxSessions }, light);
        Assert.Null(MarketConfig.FromName("synthetic:market-tiny"));
        Assert.Null(MarketConfig.FromName("synthetic"));
        Assert.Equal(MarketConfig.Names.Count, MarketConfig.Names.Select(MarketConfig.FromName).Count(c => c is not null));
        var e = Assert.Throws<ArgumentException>(() => Mtfm.Cli.Commands.DataCommand.Truth("synthetic:market-tiny"));
        foreach (var name in MarketConfig.Names) Assert.Contains(name, e.Message);
    }
}
