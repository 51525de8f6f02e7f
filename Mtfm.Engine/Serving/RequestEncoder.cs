using System.Globalization;
using System.Text.Json;
using Mtfm.Engine.Data;

namespace Mtfm.Engine.Serving;

/// <summary>
/// Validates a <see cref="ScoreRequest"/> and turns it into a one-instance <see cref="JaggedBatch"/> exactly as
/// <see cref="UserLevelAggregator"/> and <see cref="BatchBuilder"/> would for a window holding the request time:
/// H = per sequence the last <see cref="SequenceSpec.HistoryCap"/> events strictly before the window start, merged by
/// (time, position in the request); R = the events inside the window strictly before the request time (the only R
/// events a T token at that time can see, spec §4), by (time, position); T = one token per candidate at the request
/// time, in candidate order. Categorical values are encoded with the schema's vocabulary/id/hash and OOV rules, numeric
/// values transformed with the checkpoint's statistics (<see cref="NumericStats.EncodeToken"/>, as in training). A
/// feature with <c>missing: allow</c> may be absent, null or "" (a missing value, encoded as a log's empty cell is).
/// </summary>
internal sealed class RequestEncoder
{
    private readonly DataLayout _l;
    private readonly NumericStats _stats;
    private readonly WindowSpec _win;
    private readonly Dictionary<string, int> _featureIndex = new(StringComparer.Ordinal);
    private readonly HashSet<int>[] _sourceFeatures;
    private readonly HistoryStatistics _history;

    public RequestEncoder(DataLayout layout, NumericStats stats)
    {
        _l = layout ?? throw new ArgumentNullException(nameof(layout));
        _stats = stats ?? throw new ArgumentNullException(nameof(stats));
        _win = WindowSpec.From(layout.Schema);
        _history = new HistoryStatistics(layout);
        for (int f = 0; f < layout.Schema.Features.Count; f++) _featureIndex[layout.Schema.Features[f].Name] = f;
        _sourceFeatures = new HashSet<int>[layout.ScenarioCount + layout.SequenceCount];
        for (int s = 0; s < _sourceFeatures.Length; s++) _sourceFeatures[s] = [.. layout.SourceCat[s], .. layout.SourceNum[s]];
    }

    public DataLayout Layout => _l;

    /// <summary>Validates and encodes <paramref name="r"/>; throws <see cref="ScoreRequestException"/> naming the field.</summary>
    public EncodedRequest Encode(ScoreRequest r)
    {
        ArgumentNullException.ThrowIfNull(r);
        if (string.IsNullOrEmpty(r.User)) throw new ScoreRequestException("user", "missing or empty");
        if (string.IsNullOrEmpty(r.Scenario)) throw new ScoreRequestException("scenario", "missing or empty");
        if (!_l.TryGetSource(r.Scenario, out int scenario) || scenario >= _l.ScenarioCount)
            throw new ScoreRequestException("scenario", $"'{r.Scenario}' is unknown (scenarios: {string.Join(", ", _l.Schema.Scenarios.Select(s => s.Name))})");
        if (r.Time is not { } now) throw new ScoreRequestException("time", "missing (unix seconds expected)");
        if (r.Candidates is null || r.Candidates.Count == 0) throw new ScoreRequestException("candidates", "missing or empty (at least one candidate is needed)");

        // Candidates: T tokens of the scenario's group.
        var cat = _l.SourceCat[scenario]; var num = _l.SourceNum[scenario];
        int nc = r.Candidates.Count;
        var tCat = new int[nc * cat.Length];
        var tNum = new float[nc * num.Length];
        var shared = r.Features ?? [];
        foreach (var key in shared.Keys) CheckKnown(key, scenario, "features." + key);
        for (int c = 0; c < nc; c++)
        {
            var cand = r.Candidates[c] ?? throw new ScoreRequestException($"candidates[{c}]", "is null");
            foreach (var key in cand.Keys)
            {
                CheckKnown(key, scenario, $"candidates[{c}].{key}");
                if (shared.ContainsKey(key)) throw new ScoreRequestException($"candidates[{c}].{key}", "also given in the request's features (give it once)");
            }
            for (int k = 0; k < cat.Length; k++)
                tCat[c * cat.Length + k] = EncodeCategorical(cat[k], Lookup(cand, shared, cat[k], scenario, c, out string path), path);
            for (int k = 0; k < num.Length; k++)
                tNum[c * num.Length + k] = ReadNumeric(num[k], Lookup(cand, shared, num[k], scenario, c, out string path), path);
        }

        // Behaviour events: validate all, keep the visible ones.
        long wStart = _win.StartOf(_win.IndexOf(now));
        int nq = _l.SequenceCount, ns = _l.ScenarioCount;
        var events = r.Events ?? [];
        var historyCandidates = new List<int>();
        var realtime = new List<int>();
        var evSeq = new int[events.Count]; var evTime = new long[events.Count];
        var evCat = new int[events.Count][]; var evNum = new float[events.Count][];
        for (int i = 0; i < events.Count; i++)
        {
            var e = events[i] ?? throw new ScoreRequestException($"events[{i}]", "is null");
            if (string.IsNullOrEmpty(e.Sequence)) throw new ScoreRequestException($"events[{i}].sequence", "missing or empty");
            if (!_l.TryGetSource(e.Sequence, out int src) || src < ns)
                throw new ScoreRequestException($"events[{i}].sequence", $"'{e.Sequence}' is unknown (sequences: {string.Join(", ", _l.Schema.Sequences.Select(s => s.Name))})");
            if (e.Time is not { } t) throw new ScoreRequestException($"events[{i}].time", "missing (unix seconds expected)");
            var feats = e.Features ?? [];
            foreach (var key in feats.Keys)
            {
                if (!_featureIndex.TryGetValue(key, out int f) || !_sourceFeatures[src].Contains(f))
                    throw new ScoreRequestException($"events[{i}].features.{key}", $"not a feature of sequence '{e.Sequence}' (its features: {string.Join(", ", _l.Schema.Sequences[src - ns].Features)})");
            }
            var sc = _l.SourceCat[src]; var sn = _l.SourceNum[src];
            var ec = new int[sc.Length]; var en = new float[sn.Length];
            for (int k = 0; k < sc.Length; k++)
            {
                string path = $"events[{i}].features.{_l.Schema.Features[sc[k]].Name}";
                ec[k] = EncodeCategorical(sc[k], Required(feats, sc[k], path, $"sequence '{e.Sequence}'", src), path);
            }
            for (int k = 0; k < sn.Length; k++)
            {
                string path = $"events[{i}].features.{_l.Schema.Features[sn[k]].Name}";
                en[k] = ReadNumeric(sn[k], Required(feats, sn[k], path, $"sequence '{e.Sequence}'", src), path);
            }
            evSeq[i] = src - ns; evTime[i] = t; evCat[i] = ec; evNum[i] = en;
            if (t < wStart) historyCandidates.Add(i);
            else if (t < now) realtime.Add(i);
        }

        // H: per sequence the last historyCap events before the window, merged (the aggregator's HistorySelector);
        // R: time-ordered. Ties by request order.
        var byTime = Comparer<int>.Create((a, b) => { int c = evTime[a].CompareTo(evTime[b]); return c != 0 ? c : a.CompareTo(b); });
        historyCandidates.Sort(byTime);
        var selector = new HistorySelector(_l);
        foreach (var i in historyCandidates) selector.Push(evSeq[i], i);
        var hIds = new GrowBuffer<int>(historyCandidates.Count); var hSeqs = new GrowBuffer<int>(historyCandidates.Count);
        selector.Merge(evTime, ref hIds, ref hSeqs);
        realtime.Sort(byTime);

        // The one-instance batch, through the same assembly as training (BatchBuilder).
        int nh = hIds.Count, nr = realtime.Count;
        var asm = new InstanceAssembly(_l, nh + nr + nc);
        for (int h = 0; h < nh; h++) asm.AddHistory(hSeqs.Items[h], evTime[hIds.Items[h]], hIds.Items[h]);
        foreach (var i in realtime) asm.AddRealtime(evSeq[i], evTime[i], i);
        for (int c = 0; c < nc; c++) asm.AddTarget(scenario, now, c);
        asm.EndInstance();
        var batch = asm.Build(new RequestFeatures(2 * nq, cat.Length, num.Length, tCat, tNum, evCat, evNum), _stats, _history); // raw numeric values (NaN = missing) encoded as BatchBuilder does
        return new EncodedRequest(batch, scenario, nh, nr);
    }

    /// <summary>Features of a request's tokens: candidates (T groups) by candidate index, events by request position.</summary>
    private sealed class RequestFeatures(int firstTargetGroup, int catWidth, int numWidth, int[] tCat, float[] tNum, int[][] evCat, float[][] evNum) : ITokenFeatures
    {
        public ReadOnlySpan<int> Categorical(int group, int source) =>
            group >= firstTargetGroup ? tCat.AsSpan(source * catWidth, catWidth) : evCat[source];

        public ReadOnlySpan<float> Numeric(int group, int source) =>
            group >= firstTargetGroup ? tNum.AsSpan(source * numWidth, numWidth) : evNum[source];
    }

    private void CheckKnown(string key, int scenario, string path)
    {
        if (!_featureIndex.TryGetValue(key, out int f) || !_sourceFeatures[scenario].Contains(f))
            throw new ScoreRequestException(path, $"not a feature of scenario '{_l.Schema.Scenarios[scenario].Name}' (its features: {ScenarioFeatures(scenario)})");
    }

    private string ScenarioFeatures(int scenario) => string.Join(", ", _l.Schema.Scenarios[scenario].AllFeatures());

    private JsonElement Lookup(Dictionary<string, JsonElement> cand, Dictionary<string, JsonElement> shared, int feature, int scenario, int c, out string path)
    {
        string name = _l.Schema.Features[feature].Name;
        if (cand.TryGetValue(name, out var v)) { path = $"candidates[{c}].{name}"; return v; }
        if (shared.TryGetValue(name, out v)) { path = "features." + name; return v; }
        path = $"candidates[{c}].{name}";
        if (_l.AllowMissing[feature]) return default; // missing: allow — an absent value is a missing value
        throw new ScoreRequestException(path, $"missing (scenario '{_l.Schema.Scenarios[scenario].Name}' needs {ScenarioFeatures(scenario)})");
    }

    private JsonElement Required(Dictionary<string, JsonElement> feats, int feature, string path, string owner, int src)
    {
        if (feats.TryGetValue(_l.Schema.Features[feature].Name, out var v)) return v;
        if (_l.AllowMissing[feature]) return default; // missing: allow — an absent value is a missing value
        throw new ScoreRequestException(path, $"missing ({owner} needs {string.Join(", ", _l.Schema.Sequences[src - _l.ScenarioCount].Features)})");
    }

    /// <summary>Raw text of a string or number value (a number keeps its JSON spelling, like a CSV cell).</summary>
    private static string Text(JsonElement v, string path) => v.ValueKind switch
    {
        JsonValueKind.String => v.GetString()!,
        JsonValueKind.Number => v.GetRawText(),
        _ => throw new ScoreRequestException(path, $"expected a string or number, got {Describe(v)}"),
    };

    private static string Describe(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.Undefined => "null",
        JsonValueKind.True or JsonValueKind.False => $"boolean {v.GetRawText()}",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        _ => $"'{v.GetRawText()}'",
    };

    private int EncodeCategorical(int feature, JsonElement v, string path)
    {
        var f = _l.Schema.Features[feature];
        if (_l.AllowMissing[feature] && IsMissing(v)) return _l.MissingRow[feature];
        string raw = Text(v, path);
        int row;
        if (f.Kind == "id")
        {
            long id;
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long l)) id = l;
            else if (double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d) && d == Math.Floor(d) && Math.Abs(d) < 9e15) id = (long)d;
            else throw new ScoreRequestException(path, $"'{raw}' is not an integer (id feature '{f.Name}')");
            row = _l.EncodeId(feature, id);
            if (row < 0) throw new ScoreRequestException(path, $"'{raw}' is outside [0, {f.Cardinality}) of id feature '{f.Name}' (oov policy: error)");
            return row;
        }
        row = _l.EncodeCategorical(feature, raw);
        if (row < 0) throw new ScoreRequestException(path, $"'{raw}' is not in the vocabulary of feature '{f.Name}' (oov policy: error)");
        return row;
    }

    /// <summary>A missing value of a <c>missing: allow</c> feature: absent, JSON null, or an empty/blank string (an empty CSV cell).</summary>
    private static bool IsMissing(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Undefined or JsonValueKind.Null => true,
        JsonValueKind.String => string.IsNullOrWhiteSpace(v.GetString()),
        _ => false,
    };

    /// <summary>The raw numeric value; NaN for a missing value of a <c>missing: allow</c> feature.</summary>
    private float ReadNumeric(int feature, JsonElement v, string path)
    {
        if (_l.AllowMissing[feature] && IsMissing(v)) return float.NaN;
        string raw = Text(v, path);
        if (!double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out double d))
            throw new ScoreRequestException(path, $"'{raw}' is not a number (numeric feature '{_l.Schema.Features[feature].Name}')");
        if (!double.IsFinite(d) || !float.IsFinite((float)d))
            throw new ScoreRequestException(path, $"non-finite numeric value '{raw}' (numeric feature '{_l.Schema.Features[feature].Name}')");
        return (float)d;
    }
}

/// <summary>An encoded request: the one-instance batch, the scenario index and the H/R token counts.</summary>
internal sealed record EncodedRequest(JaggedBatch Batch, int Scenario, int HistoryTokens, int RealtimeTokens);
