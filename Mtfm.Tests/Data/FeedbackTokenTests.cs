using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.Data;

public class FeedbackTokenTests
{
    /// <summary>The tiny synthetic schema with feedback on feed and groupbuy: click seen at the exposure, conversion revealed by an order of the same item.</summary>
    /// <summary>Feedback on feed and groupbuy; with <paramref name="absent"/> the tokens also carry groupbuy's shop_id, which feed lacks (its tokens take the absent row).</summary>
    internal static DatasetSchema WithFeedback(DatasetSchema s, bool absent = false)
    {
        var x = DatasetSchema.Parse(s.ToJson());
        foreach (var sc in x.Scenarios.Where(sc => sc.Name is "feed" or "groupbuy"))
            sc.Feedback = new FeedbackSpec
            {
                Sequence = "fb", Features = absent ? ["item_id", "category", "shop_id"] : ["item_id", "category"], HistoryCap = 30,
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
    [InlineData("price", "feedback: feature 'price' is numeric and not a feature of the scenario")]
    [InlineData("feature:shop_id", "feedback: feature 'shop_id' is a feature of no scenario whose feedback uses sequence 'fb'")]
    [InlineData("feature:nosuch", "feedback: feature 'nosuch' is not a feature of the schema")]
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
        else if (bad.StartsWith("feature:", StringComparison.Ordinal)) fb.Features = ["item_id", v]; // feed lacks shop_id; no other scenario uses fb
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
    /// --feedback's schema: scenarios that share a categorical item feature (directly or through others) share one
    /// sequence carrying all their categorical item features; a scenario's tokens take the absent row for the ones it
    /// lacks, so one scenario with fewer features never takes the item away from the others' tokens. The synthetic
    /// schema is one group through category; the market's home and search share item_id, local and promo share nothing.
    /// </summary>
    [Fact]
    public void ClickFeedbackSharesASequenceAmongScenariosConnectedByItemFeatures()
    {
        var raw = SyntheticGenerator.Generate(SyntheticConfig.Tiny with { Users = 30, Days = 3 }).Store;
        var synth = FeedbackTokens.WithClickFeedback(raw.Layout.Schema);
        Assert.All(synth.Scenarios, sc => Assert.Equal("feedback", sc.Feedback!.Sequence));
        Assert.All(synth.Scenarios, sc => Assert.Equal(["item_id", "category", "shop_id"], sc.Feedback!.Features)); // price is numeric

        // The derived tokens: each holds its exposure's values, and the absent row where the scenario lacks the feature.
        var derived = FeedbackTokens.Derive(raw, synth);
        var l = derived.Layout;
        l.TryGetSource("feedback", out int fbSource);
        int[] tokenFeatures = l.SourceCat[fbSource];
        var bySecond = new Dictionary<(int, long), List<int>>();
        for (int ev = 0; ev < raw.Count; ev++)
            if (raw.IsExposure(ev)) { var k = (raw.UserOf(ev), raw.TimeOf(ev)); if (!bySecond.TryGetValue(k, out var list)) bySecond[k] = list = []; list.Add(ev); }
        var seen = new HashSet<string>();
        for (int ev = raw.Count; ev < derived.Count; ev++)
        {
            var exposures = bySecond[(derived.UserOf(ev), derived.TimeOf(ev))]; // clicks are observable at once: one token per exposure, at its time
            var tok = derived.Categorical(ev).ToArray();
            bool matched = exposures.Any(x =>
            {
                var sc = raw.Layout.Schema.Scenarios[raw.SourceOf(x)];
                var cat = raw.Categorical(x);
                for (int k = 0; k < tokenFeatures.Length - 1; k++)
                {
                    string name = l.Schema.Features[tokenFeatures[k]].Name;
                    int pos = Array.IndexOf(raw.Layout.SourceCat[raw.SourceOf(x)], tokenFeatures[k]);
                    int want = sc.AllFeatures().Contains(name) ? cat[pos] : l.AbsentRow[tokenFeatures[k]];
                    if (tok[k] != want) return false;
                }
                seen.Add(sc.Name);
                return true;
            });
            Assert.True(matched, $"feedback token {ev} matches no exposure of its user and second");
        }
        Assert.Equal(["coupon", "feed", "groupbuy"], seen.Order());
        Assert.True(l.AbsentRow[l.Schema.Features.FindIndex(f => f.Name == "item_id")] >= 0);
        Assert.Equal(-1, l.AbsentRow[l.Schema.Features.FindIndex(f => f.Name == "category")]); // every scenario has it

        var market = FeedbackTokens.WithClickFeedback(MarketGenerator.Schema(new MarketConfig()));
        var byScenario = market.Scenarios.ToDictionary(sc => sc.Name, sc => sc.Feedback!);
        Assert.Equal("feedback_home", byScenario["search"].Sequence);
        Assert.Equal(["item_id", "category", "query_cat"], byScenario["search"].Features);
        Assert.Equal(["shop_id", "local_cat"], byScenario["local"].Features);
        Assert.Equal(["promo_cat"], byScenario["promo"].Features);
        Assert.Equal(["feedback_home", "feedback_local", "feedback_promo"], byScenario.Values.Select(fb => fb.Sequence).Distinct());
        var expanded = FeedbackTokens.Expand(market);
        Assert.Contains(expanded.Sequences, q => q.Name == "feedback_home" && q.Features.SequenceEqual(["item_id", "category", "query_cat", FeedbackTokens.OutcomeFeature("feedback_home")]));

        Assert.Equal(["feedback_home ← home, search: item_id, category, query_cat + click outcome; H 50, statistics 400",
            "feedback_local ← local: shop_id, local_cat + click outcome; H 50, statistics 400",
            "feedback_promo ← promo: promo_cat + click outcome; H 50, statistics 400"], FeedbackTokens.Describe(market));

        // Groups merge when a later scenario links two earlier ones.
        var linked = DatasetSchema.Parse(MarketGenerator.Schema(new MarketConfig()).ToJson());
        linked.Scenarios.Single(sc => sc.Name == "promo").ItemFeatures = ["promo_cat", "shop_id", "item_id"];
        Assert.All(FeedbackTokens.WithClickFeedback(linked).Scenarios, sc => Assert.Equal("feedback", sc.Feedback!.Sequence));
    }

    /// <summary>
    /// `mtfm eval`'s derivation: a raw schema takes a model's feedback blocks scenario by scenario, whichever rule made
    /// them (today's, or a block of another rule such as one shared sequence of the common features), and none from a
    /// model without; a raw schema with blocks of its own is refused.
    /// </summary>
    [Fact]
    public void WithFeedbackOfCopiesAModelsBlocks()
    {
        var raw = SyntheticGenerator.Generate(SyntheticConfig.Tiny with { Users = 5, Days = 2 }).Store.Layout.Schema;
        var today = FeedbackTokens.WithClickFeedback(raw, 5, 40);
        Assert.Equal(today.ToJson(), FeedbackTokens.WithFeedbackOf(raw, FeedbackTokens.Expand(today)).ToJson());

        var older = DatasetSchema.Parse(raw.ToJson());
        foreach (var sc in older.Scenarios)
            sc.Feedback = new FeedbackSpec { Sequence = "feedback", Features = ["category"], Outcomes = [new FeedbackOutcome { Task = older.Tasks[0] }], HistoryCap = 50 };
        var copied = FeedbackTokens.WithFeedbackOf(raw, FeedbackTokens.Expand(older));
        Assert.Equal(older.ToJson(), copied.ToJson());
        Assert.NotEqual(today.ToJson(), copied.ToJson());

        Assert.False(FeedbackTokens.Declared(FeedbackTokens.WithFeedbackOf(raw, raw)));
        Assert.Throws<ArgumentException>(() => FeedbackTokens.WithFeedbackOf(today, today));
    }
}
