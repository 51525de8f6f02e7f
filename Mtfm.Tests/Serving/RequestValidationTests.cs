using System.Text.Json.Nodes;
using Mtfm.Engine.Data;
using Mtfm.Engine.Serving;

namespace Mtfm.Tests.Serving;

/// <summary>Every kind of bad request is rejected with a message naming the field; good values encode as the schema says.</summary>
public class RequestValidationTests
{
    private static readonly DatasetSchema Schema = new()
    {
        Name = "shop", WindowSeconds = 100, WindowOrigin = 0,
        Features =
        [
            new FeatureSpec { Name = "user_id", Kind = "id", Cardinality = 10, Oov = "error" },
            new FeatureSpec { Name = "item_id", Kind = "id", Cardinality = 100 },
            new FeatureSpec { Name = "brand", Kind = "hashed", Buckets = 97 },
            new FeatureSpec { Name = "color", Kind = "categorical", Vocabulary = ["red", "green"], Oov = "error" },
            new FeatureSpec { Name = "size", Kind = "categorical", Vocabulary = ["s", "m", "l"] },
            new FeatureSpec { Name = "price", Kind = "numeric", Transform = "log1p_standardize" },
        ],
        Scenarios =
        [
            new ScenarioSpec { Name = "feed", UserFeatures = ["user_id"], ItemFeatures = ["item_id", "color", "size", "price"], Labels = new() { ["click"] = "c", ["conversion"] = "v" } },
            new ScenarioSpec { Name = "ads", ContextFeatures = ["brand"], ItemFeatures = ["item_id"], Labels = new() { ["click"] = "c" } },
        ],
        Sequences =
        [
            new SequenceSpec { Name = "click", Features = ["item_id", "color"], HistoryCap = 2 },
            new SequenceSpec { Name = "buy", Features = ["item_id", "price"], HistoryCap = 1 },
        ],
    };

    private static readonly DataLayout Layout = new(Schema);
    private static readonly NumericStats Stats = new(Layout, [0, 0, 0, 0, 0, 2f], [1, 1, 1, 1, 1, 0.5f]);

    private const string Base = """
        {"user":"u1","scenario":"feed","time":1050,"features":{"user_id":3},
         "events":[{"sequence":"click","time":900,"features":{"item_id":5,"color":"red"}},
                   {"sequence":"buy","time":950,"features":{"item_id":5,"price":12.5}}],
         "candidates":[{"item_id":1,"color":"red","size":"s","price":3},{"item_id":2,"color":"green","size":"m","price":4},
                       {"item_id":3,"color":"red","size":"l","price":5},{"item_id":4,"color":"red","size":"s","price":6}]}
        """;

    private static readonly Dictionary<string, Action<JsonObject>> Cases = new()
    {
        ["bad json"] = _ => { },
        ["not an object"] = _ => { },
        ["events not an array"] = r => r["events"] = "none",
        ["candidate not an object"] = r => r["candidates"]![1] = 5,
        ["unknown event key"] = r => r["events"]![0]!["when"] = 5,
        ["time is a string"] = r => r["time"] = "soon",
        ["unknown key"] = r => r["userid"] = "x",
        ["no user"] = r => r.Remove("user"),
        ["no scenario"] = r => r.Remove("scenario"),
        ["unknown scenario"] = r => r["scenario"] = "x",
        ["sequence as scenario"] = r => r["scenario"] = "click",
        ["no time"] = r => r.Remove("time"),
        ["time in milliseconds"] = r => r["time"] = 1_700_000_000_123L,
        ["no candidates"] = r => r.Remove("candidates"),
        ["empty candidates"] = r => r["candidates"] = new JsonArray(),
        ["null candidate"] = r => r["candidates"]![1] = null,
        ["id not an integer"] = r => r["candidates"]![3]!["item_id"] = "abc",
        ["id fractional"] = r => r["candidates"]![0]!["item_id"] = 2.5,
        ["id out of range (oov error)"] = r => r["features"]!["user_id"] = 10,
        ["category out of vocabulary (oov error)"] = r => r["candidates"]![2]!["color"] = "blue",
        ["missing feature"] = r => r["candidates"]!.AsArray()[1]!.AsObject().Remove("price"),
        ["missing shared feature"] = r => r.Remove("features"),
        ["feature of another scenario"] = r => r["candidates"]![0]!["brand"] = "acme",
        ["unknown feature"] = r => r["features"]!["userid"] = 3,
        ["feature given twice"] = r => r["candidates"]![2]!["user_id"] = 3,
        ["NaN numeric"] = r => r["candidates"]![1]!["price"] = "NaN",
        ["infinite numeric"] = r => r["candidates"]![1]!["price"] = 1e39,
        ["numeric not a number"] = r => r["candidates"]![1]!["price"] = "cheap",
        ["null value"] = r => r["candidates"]![0]!["size"] = null,
        ["boolean value"] = r => r["candidates"]![0]!["size"] = true,
        ["object value"] = r => r["candidates"]![0]!["size"] = new JsonObject(),
        ["unknown sequence"] = r => r["events"]![1]!["sequence"] = "view",
        ["scenario as sequence"] = r => r["events"]![1]!["sequence"] = "feed",
        ["event without sequence"] = r => r["events"]![0]!.AsObject().Remove("sequence"),
        ["event without time"] = r => r["events"]![1]!.AsObject().Remove("time"),
        ["event time in milliseconds"] = r => r["events"]![0]!["time"] = 1_699_999_999_000L,
        ["null event"] = r => r["events"]![0] = null,
        ["event feature missing"] = r => r["events"]![0]!["features"]!.AsObject().Remove("color"),
        ["event feature of another source"] = r => r["events"]![0]!["features"]!["price"] = 1,
        ["event NaN numeric"] = r => r["events"]![1]!["features"]!["price"] = "-Infinity",
        ["event id not an integer"] = r => r["events"]![1]!["features"]!["item_id"] = "five",
    };

    [Theory]
    [InlineData("bad json", "request: invalid JSON: 'this is not json' is an invalid JSON literal. Expected the literal 'true'.")]
    [InlineData("not an object", "request: expected a JSON object")]
    [InlineData("events not an array", "events: wrong JSON type, expected an array of events")]
    [InlineData("candidate not an object", "candidates[1]: wrong JSON type, expected an object of feature values")]
    [InlineData("unknown event key", "events[0].when: unknown field (an event has sequence, time, features)")]
    [InlineData("time is a string", "time: wrong JSON type, expected an integer (unix seconds)")]
    [InlineData("unknown key", "userid: unknown field (a request has user, scenario, time, features, events, exposures, candidates)")]
    [InlineData("no user", "user: missing or empty")]
    [InlineData("no scenario", "scenario: missing or empty")]
    [InlineData("unknown scenario", "scenario: 'x' is unknown (scenarios: feed, ads)")]
    [InlineData("sequence as scenario", "scenario: 'click' is unknown (scenarios: feed, ads)")]
    [InlineData("no time", "time: missing (unix seconds expected)")]
    [InlineData("time in milliseconds", "time: 1700000000123 is beyond the year 5000 as unix seconds (milliseconds? request times are unix seconds)")]
    [InlineData("no candidates", "candidates: missing or empty (at least one candidate is needed)")]
    [InlineData("empty candidates", "candidates: missing or empty (at least one candidate is needed)")]
    [InlineData("null candidate", "candidates[1]: is null")]
    [InlineData("id not an integer", "candidates[3].item_id: 'abc' is not an integer (id feature 'item_id')")]
    [InlineData("id fractional", "candidates[0].item_id: '2.5' is not an integer (id feature 'item_id')")]
    [InlineData("id out of range (oov error)", "features.user_id: '10' is outside [0, 10) of id feature 'user_id' (oov policy: error)")]
    [InlineData("category out of vocabulary (oov error)", "candidates[2].color: 'blue' is not in the vocabulary of feature 'color' (oov policy: error)")]
    [InlineData("missing feature", "candidates[1].price: missing (scenario 'feed' needs user_id, item_id, color, size, price)")]
    [InlineData("missing shared feature", "candidates[0].user_id: missing (scenario 'feed' needs user_id, item_id, color, size, price)")]
    [InlineData("feature of another scenario", "candidates[0].brand: not a feature of scenario 'feed' (its features: user_id, item_id, color, size, price)")]
    [InlineData("unknown feature", "features.userid: not a feature of scenario 'feed' (its features: user_id, item_id, color, size, price)")]
    [InlineData("feature given twice", "candidates[2].user_id: also given in the request's features (give it once)")]
    [InlineData("NaN numeric", "candidates[1].price: non-finite numeric value 'NaN' (numeric feature 'price')")]
    [InlineData("infinite numeric", "candidates[1].price: non-finite numeric value '1E+39' (numeric feature 'price')")]
    [InlineData("numeric not a number", "candidates[1].price: 'cheap' is not a number (numeric feature 'price')")]
    [InlineData("null value", "candidates[0].size: expected a string or number, got null")]
    [InlineData("boolean value", "candidates[0].size: expected a string or number, got boolean true")]
    [InlineData("object value", "candidates[0].size: expected a string or number, got an object")]
    [InlineData("unknown sequence", "events[1].sequence: 'view' is unknown (sequences: click, buy)")]
    [InlineData("scenario as sequence", "events[1].sequence: 'feed' is unknown (sequences: click, buy)")]
    [InlineData("event without sequence", "events[0].sequence: missing or empty")]
    [InlineData("event without time", "events[1].time: missing (unix seconds expected)")]
    [InlineData("event time in milliseconds", "events[0].time: 1699999999000 is beyond the year 5000 as unix seconds (milliseconds? request times are unix seconds)")]
    [InlineData("null event", "events[0]: is null")]
    [InlineData("event feature missing", "events[0].features.color: missing (sequence 'click' needs item_id, color)")]
    [InlineData("event feature of another source", "events[0].features.price: not a feature of sequence 'click' (its features: item_id, color)")]
    [InlineData("event NaN numeric", "events[1].features.price: non-finite numeric value '-Infinity' (numeric feature 'price')")]
    [InlineData("event id not an integer", "events[1].features.item_id: 'five' is not an integer (id feature 'item_id')")]
    public void BadRequestIsRejectedNamingTheField(string name, string expected)
    {
        string json = Base;
        if (name == "bad json") json = "this is not json";
        else if (name == "not an object") json = "[1, 2]";
        else
        {
            var node = JsonNode.Parse(Base)!.AsObject();
            Cases[name](node);
            json = node.ToJsonString();
        }
        var enc = new RequestEncoder(Layout, Stats);
        var ex = Assert.Throws<ScoreRequestException>(() => enc.Encode(ScoreRequest.Parse(json)));
        Assert.Equal(expected, ex.Message);
        Assert.Equal(expected[..expected.IndexOf(':')], ex.Field);
    }

    [Fact]
    public void EveryCaseIsExercised() =>
        Assert.Equal(Cases.Count, typeof(RequestValidationTests).GetMethod(nameof(BadRequestIsRejectedNamingTheField))!
            .GetCustomAttributes(typeof(InlineDataAttribute), false).Length);

    [Fact]
    public void ValuesEncodeWithTheSchemaRulesAndTheWindowRules()
    {
        var node = JsonNode.Parse(Base)!.AsObject();
        node["candidates"]![0]!["item_id"] = "7";          // a numeric string is an id too
        node["candidates"]![1]!["item_id"] = 7.0;          // so is an integral number
        node["candidates"]![2]!["item_id"] = 500;          // outside [0, 100), oov bucket → row 0
        node["candidates"]![3]!["size"] = "xl";            // outside the vocabulary, oov bucket → row 0
        node["scenario"] = "feed";
        var events = node["events"]!.AsArray();
        // Window of 1050 is [1000, 1100). click cap 2, buy cap 1.
        events.Add(JsonNode.Parse("""{"sequence":"click","time":100,"features":{"item_id":1,"color":"green"}}"""));   // beyond the cap
        events.Add(JsonNode.Parse("""{"sequence":"click","time":900,"features":{"item_id":9,"color":"green"}}"""));   // ties with events[0], later in the list
        events.Add(JsonNode.Parse("""{"sequence":"buy","time":999,"features":{"item_id":8,"price":1}}"""));           // the buy H (cap 1)
        events.Add(JsonNode.Parse("""{"sequence":"click","time":1000,"features":{"item_id":2,"color":"red"}}"""));    // R
        events.Add(JsonNode.Parse("""{"sequence":"buy","time":1049,"features":{"item_id":3,"price":2}}"""));          // R
        events.Add(JsonNode.Parse("""{"sequence":"click","time":1050,"features":{"item_id":4,"color":"red"}}"""));    // at the request time: invisible
        events.Add(JsonNode.Parse("""{"sequence":"click","time":5000,"features":{"item_id":4,"color":"red"}}"""));    // future: invisible
        var enc = new RequestEncoder(Layout, Stats).Encode(ScoreRequest.Parse(node.ToJsonString()));
        var b = enc.Batch;
        Assert.Equal((3, 2), (enc.HistoryTokens, enc.RealtimeTokens));
        Assert.Equal(new long[] { 900, 900, 999, 1000, 1049, 1050, 1050, 1050, 1050 }, b.Time);
        Assert.Equal(new byte[] { 0, 0, 0, 1, 1, 2, 2, 2, 2 }, b.Segment);
        Assert.Equal(new[] { 0, 0, 1, 2, 3, 4, 4, 4, 4 }, b.Group);
        Assert.Equal(new[] { 0, 3, 4, 5, 6, 0, 1, 2, 3 }, b.EventId);
        var t = b.Blocks[Layout.TargetGroup(0)];
        // Columns: user_id, item_id, color, size (categorical), then price.
        Assert.Equal(new[] { 4, 8, 1, 1, 4, 8, 2, 2, 4, 0, 1, 3, 4, 5, 1, 0 }, t.Categorical);
        float Tr(double p) => (float)((Math.Log(1 + p) - 2f) / 0.5f);
        Assert.Equal(new[] { Tr(3), Tr(4), Tr(5), Tr(6) }, t.Numeric);
        var hClick = b.Blocks[Layout.HistoryGroup(0)];
        Assert.Equal(new[] { 6, 1, 10, 2 }, hClick.Categorical);   // events[0] then events[3] (tie kept in list order)
        var rBuy = b.Blocks[Layout.RealtimeGroup(1)];
        Assert.Equal(new[] { 4 }, rBuy.Categorical);
        Assert.Equal(new[] { Tr(2) }, rBuy.Numeric);

        // Hashed feature: FNV-1a of the text (a number keeps its JSON spelling).
        var ads = new RequestEncoder(Layout, Stats).Encode(ScoreRequest.Parse(
            """{"user":"u","scenario":"ads","time":5,"candidates":[{"brand":"acme","item_id":1},{"brand":12,"item_id":1}]}"""));
        Assert.Equal(new[] { StableHash.Bucket("acme", 97) + 0, 2, StableHash.Bucket("12", 97), 2 }, ads.Batch.Blocks[Layout.TargetGroup(1)].Categorical);
    }
}
