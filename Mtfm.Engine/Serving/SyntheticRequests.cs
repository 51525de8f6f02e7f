using System.Globalization;
using System.Text.Json;
using Mtfm.Engine.Data;

namespace Mtfm.Engine.Serving;

/// <summary>
/// Valid scoring requests for any schema, with values drawn from each feature's own domain (id range, vocabulary,
/// hashed text, numbers): the warm-up request of <c>mtfm serve</c> and the requests of benchmarks and load tests.
/// </summary>
internal static class SyntheticRequests
{
    /// <summary>
    /// A request of user <paramref name="user"/> for <paramref name="scenario"/> at <paramref name="time"/> with up to
    /// <paramref name="history"/> events before the window (spread over the sequences within their history caps),
    /// <paramref name="realtime"/> events inside the window before <paramref name="time"/>, and
    /// <paramref name="candidates"/> candidates; the same arguments give the same request.
    /// </summary>
    public static ScoreRequest Make(DatasetSchema schema, string scenario, long time, int history, int realtime, int candidates, string user = "u1", int seed = 1)
    {
        ArgumentNullException.ThrowIfNull(schema);
        var rng = new Random(seed);
        var win = WindowSpec.From(schema);
        long start = win.StartOf(win.IndexOf(time));
        var features = schema.Features.ToDictionary(f => f.Name, StringComparer.Ordinal);
        var sc = schema.Scenarios.FirstOrDefault(s => s.Name == scenario) ?? throw new ArgumentException($"scenario '{scenario}' is not in the schema.", nameof(scenario));
        var scenarioFeatures = sc.UserFeatures.Concat(sc.ContextFeatures).Concat(sc.ItemFeatures).ToList();
        var events = new List<BehaviorEvent>();
        int left = history;
        foreach (var sq in schema.Sequences)
        {
            int n = Math.Min(left, sq.HistoryCap);
            left -= n;
            for (int i = 0; i < n; i++)
                events.Add(Event(sq, start - 1 - 60L * (n - i), features, rng));
        }
        for (int i = 0; i < realtime && schema.Sequences.Count > 0; i++)
        {
            var sq = schema.Sequences[i % schema.Sequences.Count];
            long t = start + (time - start) * i / Math.Max(1, realtime);
            events.Add(Event(sq, Math.Min(t, time - 1), features, rng));
        }
        var cands = new List<Dictionary<string, JsonElement>>(candidates);
        for (int c = 0; c < candidates; c++)
            cands.Add(scenarioFeatures.ToDictionary(f => f, f => Value(features[f], rng), StringComparer.Ordinal));
        return new ScoreRequest { User = user, Scenario = scenario, Time = time, Events = events, Candidates = cands };
    }

    private static BehaviorEvent Event(SequenceSpec sq, long time, Dictionary<string, FeatureSpec> features, Random rng) => new()
    {
        Sequence = sq.Name,
        Time = time,
        Features = sq.Features.ToDictionary(f => f, f => Value(features[f], rng), StringComparer.Ordinal),
    };

    private static JsonElement Value(FeatureSpec f, Random rng) => f.Kind switch
    {
        "id" => Json(rng.Next(Math.Max(1, f.Cardinality)).ToString(CultureInfo.InvariantCulture)),
        "categorical" when f.Vocabulary is { Count: > 0 } v => JsonString(v[rng.Next(v.Count)]),
        "categorical" => Json("\"x\""),
        "hashed" => Json($"\"h{rng.Next(100_000)}\""),
        _ => Json((rng.NextDouble() * 10).ToString("R", CultureInfo.InvariantCulture)),
    };

    private static JsonElement JsonString(string s)
    {
        var buf = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buf)) w.WriteStringValue(s);
        using var doc = JsonDocument.Parse(buf.WrittenMemory);
        return doc.RootElement.Clone();
    }

    private static JsonElement Json(string text)
    {
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.Clone();
    }
}
