using System.Globalization;
using System.Runtime.InteropServices;
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
    private readonly FeedbackTokens.Plan?[] _feedback;

    private readonly PopulationStatistics? _population;

    /// <summary>An encoder for <paramref name="layout"/>; candidates read their cross-user columns from <paramref name="population"/> when given.</summary>
    public RequestEncoder(DataLayout layout, NumericStats stats, PopulationStatistics? population = null)
    {
        _population = population;
        _l = layout ?? throw new ArgumentNullException(nameof(layout));
        _stats = stats ?? throw new ArgumentNullException(nameof(stats));
        _win = WindowSpec.From(layout.Schema);
        _history = new HistoryStatistics(layout);
        _feedback = FeedbackTokens.Plans(layout);
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
        CheckSeconds(now, "time");
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
        var evSeq = new List<int>(events.Count); var evTime = new List<long>(events.Count);
        var evCat = new List<int[]>(events.Count); var evNum = new List<float[]>(events.Count);
        for (int i = 0; i < events.Count; i++)
        {
            var e = events[i] ?? throw new ScoreRequestException($"events[{i}]", "is null");
            if (string.IsNullOrEmpty(e.Sequence)) throw new ScoreRequestException($"events[{i}].sequence", "missing or empty");
            if (!_l.TryGetSource(e.Sequence, out int src) || src < ns)
                throw new ScoreRequestException($"events[{i}].sequence", $"'{e.Sequence}' is unknown (sequences: {string.Join(", ", _l.Schema.Sequences.Select(s => s.Name))})");
            if (e.Time is not { } t) throw new ScoreRequestException($"events[{i}].time", "missing (unix seconds expected)");
            CheckSeconds(t, $"events[{i}].time");
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
            evSeq.Add(src - ns); evTime.Add(t); evCat.Add(ec); evNum.Add(en);
        }
        // Past exposures with outcomes: feedback tokens, appended after the request's events (as a derived store
        // appends them after the log's events, so equal times order the same way).
        if (r.Exposures is { Count: > 0 } exposures) AddFeedbackTokens(exposures, evSeq, evTime, evCat, evNum);

        var historyCandidates = new List<int>();
        var realtime = new List<int>();
        for (int i = 0; i < evSeq.Count; i++)
        {
            if (evTime[i] < wStart) historyCandidates.Add(i);
            else if (evTime[i] < now) realtime.Add(i);
        }

        // H: per sequence the last historyCap events before the window, merged (the aggregator's HistorySelector);
        // R: time-ordered. Ties by request order.
        var byTime = Comparer<int>.Create((a, b) => { int c = evTime[a].CompareTo(evTime[b]); return c != 0 ? c : a.CompareTo(b); });
        historyCandidates.Sort(byTime);
        var selector = new HistorySelector(_l);
        foreach (var i in historyCandidates) selector.Push(evSeq[i], i);
        var hIds = new GrowBuffer<int>(historyCandidates.Count); var hSeqs = new GrowBuffer<int>(historyCandidates.Count);
        var evTimes = evTime.ToArray();
        selector.Merge(evTimes, ref hIds, ref hSeqs);
        // Older events up to the statistics caps (the aggregator's MergeOlder): counted by the history statistics only.
        var oIds = new GrowBuffer<int>(4); var oSeqs = new GrowBuffer<int>(4);
        if (selector.HasOlder) selector.MergeOlder(ref oIds, ref oSeqs);
        realtime.Sort(byTime);

        // The one-instance batch, through the same assembly as training (BatchBuilder).
        int nh = hIds.Count, nr = realtime.Count;
        var asm = new InstanceAssembly(_l, nh + nr + nc);
        for (int h = 0; h < nh; h++) asm.AddHistory(hSeqs.Items[h], evTimes[hIds.Items[h]], hIds.Items[h]);
        foreach (var i in realtime) asm.AddRealtime(evSeq[i], evTime[i], i);
        for (int c = 0; c < nc; c++) asm.AddTarget(scenario, now, c);
        for (int o = 0; o < oIds.Count; o++) asm.AddOlderHistory(oSeqs.Items[o], evTimes[oIds.Items[o]], oIds.Items[o]);
        asm.EndInstance();
        var batch = asm.Build(new RequestFeatures(2 * nq, cat.Length, num.Length, tCat, tNum, evCat, evNum), _stats, _history, population: _population); // raw numeric values (NaN = missing) encoded as BatchBuilder does
        return new EncodedRequest(batch, scenario, nh, nr);
    }

    /// <summary>Features of a request's tokens: candidates (T groups) by candidate index, events by request position.</summary>
    private sealed class RequestFeatures(int firstTargetGroup, int catWidth, int numWidth, int[] tCat, float[] tNum, List<int[]> evCat, List<float[]> evNum) : ITokenFeatures
    {
        public ReadOnlySpan<int> Categorical(int group, int source) =>
            group >= firstTargetGroup ? tCat.AsSpan(source * catWidth, catWidth) : evCat[source];

        public ReadOnlySpan<float> Numeric(int group, int source) =>
            group >= firstTargetGroup ? tNum.AsSpan(source * numWidth, numWidth) : evNum[source];
    }

    /// <summary>
    /// Validates the request's past exposures and appends their feedback tokens (<see cref="FeedbackTokens.ExposureTokens"/>,
    /// the derivation training uses) as events of the feedback sequences. Exposures are taken by (time, request order);
    /// a <c>revealedBy</c> outcome is matched among the request's behaviour events.
    /// </summary>
    private void AddFeedbackTokens(List<PastExposure> exposures, List<int> evSeq, List<long> evTime, List<int[]> evCat, List<float[]> evNum)
    {
        int ns = _l.ScenarioCount, nEvents = evSeq.Count;
        var parsed = new List<(int Index, long Time, FeedbackTokens.Plan Plan, int[] Cat, float[] Num, int[] Labels)>(exposures.Count);
        for (int i = 0; i < exposures.Count; i++)
        {
            string at = $"exposures[{i}]";
            var x = exposures[i] ?? throw new ScoreRequestException(at, "is null");
            if (string.IsNullOrEmpty(x.Scenario)) throw new ScoreRequestException(at + ".scenario", "missing or empty");
            if (!_l.TryGetSource(x.Scenario, out int sc) || sc >= ns)
                throw new ScoreRequestException(at + ".scenario", $"'{x.Scenario}' is unknown (scenarios: {string.Join(", ", _l.Schema.Scenarios.Select(q => q.Name))})");
            var withFeedback = _l.Schema.Scenarios.Where(q => q.Feedback is not null).Select(q => q.Name).ToList();
            var plan = _feedback[sc] ?? throw new ScoreRequestException(at + ".scenario",
                $"scenario '{x.Scenario}' declares no feedback block, so its exposures do not enter the user's sequences ("
                + (withFeedback.Count == 0 ? "the model's schema declares none" : "scenarios with feedback: " + string.Join(", ", withFeedback)) + ")");
            if (x.Time is not { } t) throw new ScoreRequestException(at + ".time", "missing (unix seconds expected)");
            CheckSeconds(t, at + ".time");
            var feats = x.Features ?? [];
            foreach (var key in feats.Keys) CheckKnown(key, sc, $"{at}.features.{key}");
            // Only the features the tokens take (and the match features) are needed; any other given value is still validated.
            var sCat = _l.SourceCat[sc]; var sNum = _l.SourceNum[sc];
            var needCat = new HashSet<int>(plan.CatFrom.Where(k => k >= 0).Concat(plan.MatchCat.SelectMany(m => m)));
            var needNum = new HashSet<int>(plan.NumFrom);
            var ec = new int[sCat.Length]; var en = new float[sNum.Length];
            for (int k = 0; k < sCat.Length; k++)
                if (Needed(feats, sCat[k], needCat.Contains(k), at, x.Scenario, out var v, out string path)) ec[k] = EncodeCategorical(sCat[k], v, path);
            for (int k = 0; k < sNum.Length; k++)
                if (Needed(feats, sNum[k], needNum.Contains(k), at, x.Scenario, out var v, out string path)) en[k] = ReadNumeric(sNum[k], v, path);
            var labels = new int[plan.Outcomes.Length];
            Array.Fill(labels, -1);
            var scenarioLabels = _l.Schema.Scenarios[sc].Labels;
            foreach (var (task, v) in x.Labels ?? [])
            {
                string path = $"{at}.labels.{task}";
                if (!scenarioLabels.ContainsKey(task)) throw new ScoreRequestException(path, $"'{task}' is not a label of scenario '{x.Scenario}' (its labels: {string.Join(", ", scenarioLabels.Keys)})");
                int label = v.ValueKind switch
                {
                    JsonValueKind.Null or JsonValueKind.Undefined => -1,
                    JsonValueKind.True => 1,
                    JsonValueKind.False => 0,
                    JsonValueKind.Number when v.TryGetInt32(out int n) && n is 0 or 1 => n,
                    _ => throw new ScoreRequestException(path, $"expected 0, 1, true, false or null, got {Describe(v)}"),
                };
                int o = Array.FindIndex(plan.Outcomes, q => q.Task == task);
                if (o >= 0) labels[o] = label;
            }
            parsed.Add((i, t, plan, ec, en, labels));
        }
        parsed.Sort((a, b) => { int c = a.Time.CompareTo(b.Time); return c != 0 ? c : a.Index.CompareTo(b.Index); });

        // Per sequence, the request's behaviour events by (time, request order): where revealing behaviour is looked up.
        var bySequence = new List<int>[_l.SequenceCount];
        for (int q = 0; q < bySequence.Length; q++) bySequence[q] = [];
        for (int i = 0; i < nEvents; i++) bySequence[evSeq[i]].Add(i);
        foreach (var q in bySequence) q.Sort((a, b) => { int c = evTime[a].CompareTo(evTime[b]); return c != 0 ? c : a.CompareTo(b); });

        var tokens = new List<FeedbackTokens.Token>();
        foreach (var (_, t, p, ec, en, labels) in parsed)
        {
            tokens.Clear();
            FeedbackTokens.ExposureTokens(p, t, labels, (k, from) => FeedbackTokens.FirstMatch(ec, p.MatchCat[k], p.RevealCat[k],
                CollectionsMarshal.AsSpan(bySequence[p.RevealSource[k] - ns]), ev => evTime[ev], ev => evCat[ev], from), tokens);
            foreach (var tok in tokens)
            {
                var tc = new int[p.CatFrom.Length + 1];
                for (int k = 0; k < p.CatFrom.Length; k++) tc[k] = p.TokenCategorical(k, ec);
                tc[^1] = _l.EncodeCategorical(p.OutcomeFeature, tok.Code);
                var tn = new float[p.NumFrom.Length];
                for (int k = 0; k < tn.Length; k++) tn[k] = en[p.NumFrom[k]];
                evSeq.Add(p.Source - ns); evTime.Add(tok.Time); evCat.Add(tc); evNum.Add(tn);
            }
        }
    }

    /// <summary>Rejects a time at or beyond 1e11 unix seconds (the year 5138): a request in milliseconds would otherwise score silently wrong.</summary>
    private static void CheckSeconds(long t, string field)
    {
        if (Math.Abs(t) >= RowDecoder.MaxUnixSeconds)
            throw new ScoreRequestException(field, $"{t} is beyond the year 5000 as unix seconds (milliseconds? request times are unix seconds)");
    }

    /// <summary>Whether exposure feature <paramref name="feature"/> is to be read: needed (and then required unless <c>missing: allow</c>) or given.</summary>
    private bool Needed(Dictionary<string, JsonElement> feats, int feature, bool needed, string at, string scenario, out JsonElement value, out string path)
    {
        string name = _l.Schema.Features[feature].Name;
        path = $"{at}.features.{name}";
        if (feats.TryGetValue(name, out value)) return true;
        if (!needed) return false;
        if (_l.AllowMissing[feature]) return true; // an absent value is a missing value
        var spec = _l.Schema.Scenarios[_l.TryGetSource(scenario, out int sc) ? sc : 0];
        var fb = spec.Feedback!;
        var own = spec.AllFeatures().ToHashSet(StringComparer.Ordinal); // a token feature the scenario lacks takes its absent row and is not sent
        throw new ScoreRequestException(path, $"missing (scenario '{scenario}' feedback tokens take {string.Join(", ", fb.Features.Where(own.Contains).Concat(fb.Outcomes.SelectMany(o => o.Match)).Distinct())})");
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
