using System.Text.Json;
using Mtfm.Engine.Data;
using Mtfm.Engine.Serving;

namespace Mtfm.Tests.Serving;

/// <summary>
/// Serving accepts exposures-with-outcomes: a request carrying the user's raw behaviour and raw past exposures with
/// their labels encodes to exactly the batch training builds from the feedback-derived store, through the same
/// derivation (FeedbackTokens.ExposureTokens), and bad exposures are rejected naming the field.
/// </summary>
public class FeedbackServingTests
{
    private static readonly Lazy<(EventStore Raw, EventStore Derived)> Stores = new(() => Make(absent: false));
    private static readonly Lazy<(EventStore Raw, EventStore Derived)> StoresWithAbsent = new(() => Make(absent: true));

    private static (EventStore Raw, EventStore Derived) Make(bool absent)
    {
        var raw = SyntheticGenerator.Generate(SyntheticConfig.Tiny with { Users = 40, Days = 5 }).Store;
        return (raw, FeedbackTokens.Derive(raw, Data.FeedbackTokenTests.WithFeedback(raw.Layout.Schema, absent)));
    }

    /// <summary>Every exposure of the user in a scenario with feedback, as the raw log holds it, with its labels.</summary>
    private static List<PastExposure> PastExposures(EventStore raw, int user)
    {
        var l = raw.Layout;
        var list = new List<PastExposure>();
        int tasks = l.TaskCount;
        for (int ev = 0; ev < raw.Count; ev++)
        {
            if (!raw.IsExposure(ev) || raw.UserOf(ev) != user) continue;
            var sc = l.Schema.Scenarios[raw.SourceOf(ev)];
            if (sc.Name is not ("feed" or "groupbuy")) continue;
            var labels = new Dictionary<string, JsonElement>();
            int e = raw.ExposureIndex.Items[ev];
            for (int k = 0; k < tasks; k++)
            {
                byte b = raw.Labels.Items[e * tasks + k];
                if (b != 255 && sc.Labels.ContainsKey(l.Schema.Tasks[k])) labels[l.Schema.Tasks[k]] = ServingTestData.Num(b);
            }
            list.Add(new PastExposure { Scenario = sc.Name, Time = raw.TimeOf(ev), Features = ServingTestData.RawFeatures(raw, ev), Labels = labels });
        }
        return list;
    }

    /// <summary>
    /// With <paramref name="absent"/> the feedback tokens also carry groupbuy's shop_id, which feed lacks: the request
    /// encoder gives feed's tokens the same absent row as the derived store.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RequestWithPastExposuresEncodesToTheTrainingInstanceOfTheDerivedStore(bool absent)
    {
        var (raw, derived) = absent ? StoresWithAbsent.Value : Stores.Value;
        var stats = derived.ComputeNumericStats();
        var per = UserLevelAggregator.Aggregate(derived, AggregationMode.PerExposure);
        var builder = new BatchBuilder(per, stats);
        var enc = new RequestEncoder(derived.Layout, stats);
        var behaviour = ServingTestData.BehaviourByUser(raw); // raw sequences only: the feedback tokens come from the exposures
        var past = new Dictionary<int, List<PastExposure>>();
        int fbSource = derived.Layout.TryGetSource("fb", out int s) ? s : throw new InvalidOperationException("no fb sequence");
        int checkedInstances = 0, withFeedback = 0;
        for (int i = 0; i < per.Count; i++)
        {
            var ev = per.Events(i);
            int target = ev[^1];
            int user = derived.UserOf(target);
            if (!past.TryGetValue(user, out var p)) past[user] = p = PastExposures(raw, user);
            var request = ServingTestData.RequestFor(derived, behaviour, [target]);
            request.Exposures = p;
            var want = builder.Build([i]);
            var got = enc.Encode(request);
            ScorerEquivalenceTests.AssertSameBatch(want, got.Batch, $"instance {i}");
            checkedInstances++;
            var fbTokens = ev.ToArray().Where(e => derived.SourceOf(e) == fbSource).ToList();
            if (fbTokens.Count > 0) withFeedback++;
        }
        Assert.True(checkedInstances > 200, $"{checkedInstances} instances");
        Assert.True(withFeedback > checkedInstances / 2, $"{withFeedback} of {checkedInstances} instances hold feedback tokens");
        if (!absent) return;
        var l = derived.Layout;
        int shop = l.Schema.Features.FindIndex(f => f.Name == "shop_id"), at = Array.IndexOf(l.SourceCat[fbSource], shop);
        Assert.True(l.AbsentRow[shop] >= 0);
        int absentTokens = Enumerable.Range(0, derived.Count).Count(e => derived.SourceOf(e) == fbSource && derived.Categorical(e)[at] == l.AbsentRow[shop]);
        int present = Enumerable.Range(0, derived.Count).Count(e => derived.SourceOf(e) == fbSource && derived.Categorical(e)[at] != l.AbsentRow[shop]);
        Assert.True(absentTokens > 0 && present > 0, $"{absentTokens} feed tokens with the absent shop row, {present} groupbuy tokens with a shop");
    }

    /// <summary>A conversion revealed by an order enters the tokens at the order's time, and not before: the request sees it only once the order is strictly earlier.</summary>
    [Fact]
    public void ConversionEntersOnlyOnceTheRevealingOrderIsVisible()
    {
        var (raw, derived) = Stores.Value;
        var l = derived.Layout;
        var stats = derived.ComputeNumericStats();
        var enc = new RequestEncoder(l, stats);
        long t0 = l.Schema.WindowOrigin + 3 * l.Schema.WindowSeconds; // a window start
        var exposure = new PastExposure
        {
            Scenario = "feed", Time = t0 + 1000,
            Features = new() { ["item_id"] = ServingTestData.Num(5), ["category"] = ServingTestData.Num(2) },
            Labels = new() { ["click"] = ServingTestData.Num(1), ["conversion"] = ServingTestData.Num(1) },
        };
        var order = raw.Layout.Schema.Sequences.First(q => q.Name == "order");
        var orderFeatures = order.Features.ToDictionary(f => f, f => l.Schema.Features.First(x => x.Name == f).Kind == "numeric" ? ServingTestData.Num(9.5) : f == "item_id" ? ServingTestData.Num(5) : ServingTestData.Num(2));
        ScoreRequest At(long now) => new()
        {
            User = "u", Scenario = "feed", Time = t0 + now,
            Features = l.Schema.Scenarios[0].UserFeatures.Concat(l.Schema.Scenarios[0].ContextFeatures).ToDictionary(f => f, _ => ServingTestData.Num(1)),
            Events = [new BehaviorEvent { Sequence = "order", Time = t0 + 1500, Features = orderFeatures }],
            Exposures = [exposure],
            Candidates = [l.Schema.Scenarios[0].ItemFeatures.ToDictionary(f => f, _ => ServingTestData.Num(1))],
        };
        int outcome = l.Schema.Features.FindIndex(f => f.Name == "fb.outcome");
        string[] Codes(EncodedRequest r)
        {
            var b = r.Batch;
            int fb = l.TryGetSource("fb", out int src) ? src - l.ScenarioCount : -1;
            var codes = new List<string>();
            foreach (int g in new[] { fb, l.SequenceCount + fb })
            {
                var blk = b.Blocks[g];
                int w = blk.Categorical.Length / Math.Max(1, blk.Rows);
                for (int row = 0; row < blk.Rows; row++) codes.Add(l.Schema.Features[outcome].Vocabulary![blk.Categorical[row * w + w - 1] - 1]);
            }
            return [.. codes];
        }
        // The window of the synthetic schema is a day: t0 + 1000..2000 are one window, so every token is in R.
        Assert.Equal(["1?"], Codes(enc.Encode(At(1400))));
        Assert.Equal(["1?"], Codes(enc.Encode(At(1500)))); // the order at 1500 is not strictly earlier
        Assert.Equal(["1?", "11"], Codes(enc.Encode(At(1501))));
        Assert.Empty(Codes(enc.Encode(At(1000)))); // the exposure's own token is not strictly earlier
    }

    [Theory]
    [InlineData("""{"scenario":"coupon","time":10,"features":{"item_id":1}}""", "exposures[0].scenario: scenario 'coupon' declares no feedback block, so its exposures do not enter the user's sequences (scenarios with feedback: feed, groupbuy)")]
    [InlineData("""{"scenario":"nope","time":10}""", "exposures[0].scenario: 'nope' is unknown (scenarios: feed, groupbuy, coupon)")]
    [InlineData("""{"scenario":"feed"}""", "exposures[0].time: missing (unix seconds expected)")]
    [InlineData("""{"scenario":"feed","time":10,"features":{"category":2}}""", "exposures[0].features.item_id: missing (scenario 'feed' feedback tokens take item_id, category)")]
    [InlineData("""{"scenario":"feed","time":10,"features":{"item_id":1,"category":2,"color":1}}""", "exposures[0].features.color: not a feature of scenario 'feed'")]
    [InlineData("""{"scenario":"feed","time":10,"features":{"item_id":1,"category":2},"labels":{"click":2}}""", "exposures[0].labels.click: expected 0, 1, true, false or null, got '2'")]
    [InlineData("""{"scenario":"feed","time":10,"features":{"item_id":1,"category":2},"labels":{"like":1}}""", "exposures[0].labels.like: 'like' is not a label of scenario 'feed'")]
    [InlineData("""{"scenario":"feed","time":10,"when":3}""", "exposures[0].when: unknown field (an exposure has scenario, time, features, labels)")]
    [InlineData("""[1]""", "exposures[0]: wrong JSON type, expected an exposure object")]
    [InlineData("""{"scenario":"feed","time":10,"features":{"item_id":1}}""", "exposures[0].features.category: missing (scenario 'feed' feedback tokens take item_id, category)", true)] // not shop_id: feed lacks it (absent row)
    [InlineData("""{"scenario":"feed","time":10,"features":{"item_id":1,"category":2,"shop_id":3}}""", "exposures[0].features.shop_id: not a feature of scenario 'feed'", true)]
    public void BadExposuresAreRejectedNamingTheField(string exposure, string message, bool absent = false)
    {
        var (_, derived) = absent ? StoresWithAbsent.Value : Stores.Value;
        var l = derived.Layout;
        var enc = new RequestEncoder(l, derived.ComputeNumericStats());
        var sc = l.Schema.Scenarios[0];
        string features = JsonSerializer.Serialize(sc.UserFeatures.Concat(sc.ContextFeatures).ToDictionary(f => f, _ => 1));
        string candidate = JsonSerializer.Serialize(sc.ItemFeatures.ToDictionary(f => f, _ => 1));
        string exposures = exposure.StartsWith('[') ? exposure : $"[{exposure}]";
        string json = $$"""{"user":"u","scenario":"feed","time":100,"features":{{features}},"exposures":{{exposures}},"candidates":[{{candidate}}]}""";
        var ex = Assert.Throws<ScoreRequestException>(() => enc.Encode(ScoreRequest.Parse(json)));
        Assert.StartsWith(message, ex.Message);
    }
}
