using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.Data;

public class FeedbackTokenTests
{
    /// <summary>The tiny synthetic schema with feedback on feed and groupbuy: click seen at the exposure, conversion revealed by an order of the same item.</summary>
    internal static DatasetSchema WithFeedback(DatasetSchema s)
    {
        var x = DatasetSchema.Parse(s.ToJson());
        foreach (var sc in x.Scenarios.Where(sc => sc.Name is "feed" or "groupbuy"))
            sc.Feedback = new FeedbackSpec
            {
                Sequence = "fb", Features = ["item_id", "category"], HistoryCap = 30,
                Outcomes = [new FeedbackOutcome { Task = "click" }, new FeedbackOutcome { Task = "conversion", RevealedBy = "order", Match = ["item_id"] }],
            };
        x.Validate();
        return x;
    }

    private static int Item(EventStore st, int ev) => st.Categorical(ev)[st.Layout.SourceCat[st.SourceOf(ev)].ToList().FindIndex(f => st.Layout.Schema.Features[f].Name == "item_id")];

    /// <summary>
    /// Labels of exposures at or after t0 flipped, and conversions not yet revealed by t0 (no order of the item in
    /// [exposure, t0]) flipped too: every prediction of a target at or before t0 is bit-identical, and some later one
    /// changes (the outcomes do reach the targets).
    /// </summary>
    [Fact]
    public void FlippingOutcomesNotYetObservableLeavesEarlierPredictionsBitIdentical()
    {
        var cfg = SyntheticConfig.Tiny with { Users = 60, Days = 5 };
        var raw = SyntheticGenerator.Generate(cfg).Store;
        var schema = WithFeedback(raw.Layout.Schema);
        var times = Enumerable.Range(0, raw.Count).Where(raw.IsExposure).Select(raw.TimeOf).Order().ToArray();
        long t0 = times[times.Length / 2];
        var orders = Enumerable.Range(0, raw.Count).Where(e => raw.SourceOf(e) == raw.Layout.ScenarioCount + 1).ToArray();
        var flipped = SyntheticGenerator.Generate(cfg).Store; // the same log, labels flipped below
        int tasks = raw.Layout.TaskCount, flips = 0;
        for (int ev = 0; ev < flipped.Count; ev++)
        {
            if (!flipped.IsExposure(ev)) continue;
            int e = flipped.ExposureIndex.Items[ev];
            long t = flipped.TimeOf(ev);
            bool convRevealed = t < t0 && flipped.SourceOf(ev) <= 1 && orders.Any(o => raw.UserOf(o) == raw.UserOf(ev) && raw.TimeOf(o) >= t && raw.TimeOf(o) <= t0 && Item(raw, o) == Item(raw, ev));
            for (int k = 0; k < tasks; k++)
            {
                ref byte b = ref flipped.Labels.Items[e * tasks + k];
                if (b == 255) continue;
                if (t >= t0 || (k == 1 && !convRevealed)) { b = (byte)(1 - b); flips++; }
            }
        }
        Assert.True(flips > 100, $"{flips} flips");
        var a = FeedbackTokens.Derive(raw, schema);
        var b2 = FeedbackTokens.Derive(flipped, schema);
        Assert.Equal(a.Count, b2.Count);
        var stats = a.ComputeNumericStats();
        using var backend = new CpuBackend(1);
        using var model = new MtfmModel(backend, MtfmConfig.Tiny, a.Layout, seed: 3);
        var pa = Scores(model, a, stats); var pb = Scores(model, b2, stats);
        int early = 0, lateChanged = 0;
        foreach (var (ev, probs) in pa)
        {
            var other = pb[ev];
            bool same = probs.AsSpan().SequenceEqual(other);
            if (a.TimeOf(ev) <= t0) { Assert.True(same, $"target event {ev} at {a.TimeOf(ev)} <= t0 {t0} changed"); early++; }
            else if (!same) lateChanged++;
        }
        Assert.True(early > 50, $"{early} early targets");
        Assert.True(lateChanged > 0, "no later prediction changed: the feedback outcomes do not reach the targets");
    }

    private static Dictionary<int, float[]> Scores(MtfmModel model, EventStore st, NumericStats stats)
    {
        var agg = UserLevelAggregator.Aggregate(st, AggregationMode.PerExposure);
        var bb = new BatchBuilder(agg, stats);
        var res = new Dictionary<int, float[]>();
        int tasks = st.Layout.TaskCount;
        foreach (var batch in bb.Batches(2048))
        {
            var p = model.Score(batch);
            for (int j = 0; j < batch.TargetCount; j++) res[batch.EventId[batch.TargetToken[j]]] = p.AsSpan(j * tasks, tasks).ToArray();
        }
        return res;
    }

    /// <summary>Every feedback token carries exactly the outcomes observable at its time (brute force over the log).</summary>
    [Fact]
    public void TokensCarryOnlyOutcomesObservableAtTheirTime()
    {
        var raw = SyntheticGenerator.Generate(SyntheticConfig.Tiny with { Users = 40, Days = 4 }).Store;
        var st = FeedbackTokens.Derive(raw, WithFeedback(raw.Layout.Schema));
        var l = st.Layout;
        Assert.True(l.TryGetSource("fb", out int fb));
        int outcome = l.Schema.Features.FindIndex(f => f.Name == "fb.outcome");
        var vocab = l.Schema.Features[outcome].Vocabulary!;
        var orders = Enumerable.Range(0, raw.Count).Where(e => raw.SourceOf(e) == raw.Layout.ScenarioCount + 1).ToArray();
        var expected = new List<(int User, long Time, int Item, string Code)>();
        for (int ev = 0; ev < raw.Count; ev++)
        {
            if (!raw.IsExposure(ev) || raw.SourceOf(ev) > 1) continue;
            long t = raw.TimeOf(ev);
            long rev = orders.Where(o => raw.UserOf(o) == raw.UserOf(ev) && raw.TimeOf(o) >= t && Item(raw, o) == Item(raw, ev)).Select(raw.TimeOf).DefaultIfEmpty(long.MaxValue).Min();
            string c = raw.Label(ev, 0).ToString(System.Globalization.CultureInfo.InvariantCulture);
            expected.Add((raw.UserOf(ev), t, Item(raw, ev), c + (rev == t ? raw.Label(ev, 1).ToString(System.Globalization.CultureInfo.InvariantCulture) : "?")));
            if (rev != long.MaxValue && rev > t) expected.Add((raw.UserOf(ev), rev, Item(raw, ev), c + raw.Label(ev, 1).ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
        var got = new List<(int User, long Time, int Item, string Code)>();
        for (int ev = raw.Count; ev < st.Count; ev++)
        {
            Assert.Equal(fb, st.SourceOf(ev));
            var cat = st.Categorical(ev);
            got.Add((st.UserOf(ev), st.TimeOf(ev), cat[0], vocab[cat[^1] - 1]));
        }
        Assert.True(expected.Any(e => e.Code[1] == '?') && expected.Any(e => e.Code[1] != '?'));
        Assert.Equal(expected.OrderBy(e => e.User).ThenBy(e => e.Time).ThenBy(e => e.Item).ThenBy(e => e.Code, StringComparer.Ordinal),
            got.OrderBy(e => e.User).ThenBy(e => e.Time).ThenBy(e => e.Item).ThenBy(e => e.Code, StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("price", "feedback: feature 'price' is not a feature of the scenario")]
    [InlineData("task:purchase", "outcome 'purchase' is not a label of the scenario")]
    [InlineData("reveal:nosuch", "revealedBy 'nosuch' is not a sequence")]
    [InlineData("match:", "needs match features")]
    [InlineData("match:price", "match feature 'price' is not a feature of both")]
    [InlineData("seq:click", "feedback sequence 'click' is also declared in sequences")]
    [InlineData("delay:-5", "delaySeconds -5 < 0")]
    public void SchemaErrorsAreNamed(string bad, string message)
    {
        var x = DatasetSchema.Parse(SyntheticGenerator.Generate(SyntheticConfig.Tiny with { Users = 5, Days = 2 }).Store.Layout.Schema.ToJson());
        var o = new FeedbackOutcome { Task = "conversion", RevealedBy = "order", Match = ["item_id"] };
        var fb = new FeedbackSpec { Sequence = "fb", Features = ["item_id"], Outcomes = [new FeedbackOutcome { Task = "click" }, o] };
        var feed = x.Scenarios.First(s => s.Name == "feed");
        feed.Feedback = fb;
        string v = bad[(bad.IndexOf(':') + 1)..];
        if (bad == "price") fb.Features = ["price"];
        else if (bad.StartsWith("task:", StringComparison.Ordinal)) o.Task = v;
        else if (bad.StartsWith("reveal:", StringComparison.Ordinal)) o.RevealedBy = v;
        else if (bad.StartsWith("match:", StringComparison.Ordinal)) o.Match = v.Length == 0 ? [] : [v];
        else if (bad.StartsWith("seq:", StringComparison.Ordinal)) fb.Sequence = v;
        else if (bad.StartsWith("delay:", StringComparison.Ordinal)) o.DelaySeconds = long.Parse(v, System.Globalization.CultureInfo.InvariantCulture);
        var ex = Assert.Throws<DataFormatException>(() => DatasetSchema.Parse(x.ToJson(), "schema.json"));
        Assert.Contains("schema.json", ex.Message);
        Assert.Contains(message, ex.Message);
        if (bad != "seq:click") Assert.Contains("scenario 'feed' feedback", ex.Message);
    }

    /// <summary>
    /// --feedback's schema: one shared sequence with the common categorical item features when the clicked scenarios
    /// share some (the synthetic schema), one sequence per scenario with its own when they share none (market).
    /// </summary>
    [Fact]
    public void ClickFeedbackSharesASequenceOnlyWhenScenariosShareItemFeatures()
    {
        var synth = FeedbackTokens.WithClickFeedback(SyntheticGenerator.Generate(SyntheticConfig.Tiny with { Users = 5, Days = 2 }).Store.Layout.Schema);
        var fbs = synth.Scenarios.Where(sc => sc.Feedback is not null).Select(sc => sc.Feedback!).ToList();
        Assert.NotEmpty(fbs);
        Assert.All(fbs, fb => Assert.Equal("feedback", fb.Sequence));
        Assert.All(fbs, fb => Assert.Equal(["category"], fb.Features)); // the one categorical item feature all clicked scenarios have

        var market = FeedbackTokens.WithClickFeedback(MarketGenerator.Schema(new MarketConfig()));
        var byScenario = market.Scenarios.ToDictionary(sc => sc.Name, sc => sc.Feedback!);
        Assert.Equal("feedback_search", byScenario["search"].Sequence);
        Assert.Equal(["item_id", "query_cat"], byScenario["search"].Features); // price is numeric
        Assert.Equal(["shop_id", "local_cat"], byScenario["local"].Features);
        Assert.Equal(["promo_cat"], byScenario["promo"].Features);
        Assert.Equal(4, byScenario.Values.Select(fb => fb.Sequence).Distinct().Count());
        var expanded = FeedbackTokens.Expand(market);
        Assert.Contains(expanded.Sequences, q => q.Name == "feedback_home" && q.Features.SequenceEqual(["item_id", "category", FeedbackTokens.OutcomeFeature("feedback_home")]));
    }
}
