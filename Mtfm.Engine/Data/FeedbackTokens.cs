using System.Runtime.InteropServices;
using System.Text;

namespace Mtfm.Engine.Data;

/// <summary>
/// Feedback tokens (docs/data.md, "Feedback tokens"): a scenario's exposures also enter a behaviour sequence as tokens carrying their
/// outcome. The one derivation for training (<see cref="Derive(EventStore)"/>, on an <see cref="EventStore"/>) and serving (the
/// request encoder's exposures-with-outcomes): per exposure a token at its own time holding the outcomes observable
/// then, and one more token at each later time at which a further outcome becomes observable (declared delay or
/// revealing behaviour). Tokens are ordinary behaviour events of the feedback sequence, so H (capped), R and the
/// strictly-earlier mask apply to them unchanged; an outcome is never in a token earlier than its reveal time.
/// </summary>
internal static class FeedbackTokens
{
    /// <summary>Name of the outcome feature of feedback sequence <paramref name="sequence"/>.</summary>
    public static string OutcomeFeature(string sequence) => sequence + ".outcome";

    /// <summary>True when some scenario declares feedback tokens.</summary>
    public static bool Declared(DatasetSchema schema) => schema.Scenarios.Any(s => s.Feedback is not null);

    internal static void Validate(DatasetSchema s, Action<string> fail)
    {
        var byName = new Dictionary<string, FeedbackSpec>(StringComparer.Ordinal);
        foreach (var sc in s.Scenarios)
        {
            if (sc.Feedback is not { } fb) continue;
            string at = $"scenario '{sc.Name}' feedback";
            if (string.IsNullOrEmpty(fb.Sequence)) fail($"{at}: sequence is missing");
            if (s.Scenarios.Any(x => x.Name == fb.Sequence)) fail($"{at}: sequence '{fb.Sequence}' is a scenario name");
            if (fb.HistoryCap < 0) fail($"{at}: historyCap {fb.HistoryCap} < 0");
            if (fb.StatisticsCap < fb.HistoryCap) fail($"{at}: statisticsCap {fb.StatisticsCap} < its historyCap {fb.HistoryCap}");
            var feats = sc.AllFeatures().ToHashSet(StringComparer.Ordinal);
            foreach (var f in fb.Features)
            {
                if (feats.Contains(f)) continue;
                // A feature the scenario lacks: its tokens take the table's absent row, so it must be categorical and carried by another scenario of the sequence.
                var spec = s.Features.FirstOrDefault(x => x.Name == f);
                if (spec is null) fail($"{at}: feature '{f}' is not a feature of the schema");
                else if (spec.Kind == "numeric") fail($"{at}: feature '{f}' is numeric and not a feature of the scenario (only categorical features may be absent from a scenario's tokens)");
                else if (!s.Scenarios.Any(o => o.Feedback?.Sequence == fb.Sequence && o.AllFeatures().Contains(f)))
                    fail($"{at}: feature '{f}' is a feature of no scenario whose feedback uses sequence '{fb.Sequence}'");
            }
            if (fb.Features.Distinct().Count() != fb.Features.Count) fail($"{at}: features lists a feature twice");
            if (fb.Outcomes.Count == 0) fail($"{at}: outcomes is empty (name at least one label)");
            if (fb.Outcomes.Count > 4) fail($"{at}: {fb.Outcomes.Count} outcomes (at most 4)");
            foreach (var o in fb.Outcomes)
            {
                if (!sc.Labels.ContainsKey(o.Task)) fail($"{at}: outcome '{o.Task}' is not a label of the scenario");
                if (o.DelaySeconds is < 0) fail($"{at}: outcome '{o.Task}' has delaySeconds {o.DelaySeconds} < 0");
                if (o.RevealedBy is null) { if (o.Match.Count > 0) fail($"{at}: outcome '{o.Task}' has match without revealedBy"); continue; }
                var q = s.Sequences.FirstOrDefault(x => x.Name == o.RevealedBy);
                if (q is null) fail($"{at}: outcome '{o.Task}' revealedBy '{o.RevealedBy}' is not a sequence");
                if (o.Match.Count == 0) fail($"{at}: outcome '{o.Task}' revealedBy '{o.RevealedBy}' needs match features");
                foreach (var m in o.Match)
                {
                    var f = s.Features.FirstOrDefault(x => x.Name == m);
                    if (f is null || !feats.Contains(m) || !q!.Features.Contains(m))
                        fail($"{at}: outcome '{o.Task}' match feature '{m}' is not a feature of both the scenario and sequence '{o.RevealedBy}'");
                    if (f!.Kind == "numeric") fail($"{at}: outcome '{o.Task}' match feature '{m}' is numeric (match on categorical, id or hashed features)");
                }
            }
            if (fb.Outcomes.Select(o => o.Task).Distinct().Count() != fb.Outcomes.Count) fail($"{at}: outcomes lists a label twice");
            if (byName.TryGetValue(fb.Sequence, out var other))
            {
                if (!other.Features.SequenceEqual(fb.Features) || other.HistoryCap != fb.HistoryCap || other.StatisticsCap != fb.StatisticsCap
                    || !other.Outcomes.Select(o => o.Task).SequenceEqual(fb.Outcomes.Select(o => o.Task)))
                    fail($"{at}: sequence '{fb.Sequence}' is shared with another scenario whose feedback block has other features, outcomes, historyCap or statisticsCap");
            }
            else byName[fb.Sequence] = fb;
        }
        foreach (var (name, fb) in byName)
        {
            // A compiled (expanded) schema lists the sequence with the outcome feature last; a raw one must not list it.
            var q = s.Sequences.FirstOrDefault(x => x.Name == name);
            if (q is null) continue;
            if (!q.Features.SequenceEqual(fb.Features.Append(OutcomeFeature(name))) || q.HistoryCap != fb.HistoryCap || q.StatisticsCap != fb.StatisticsCap || !s.Features.Any(f => f.Name == OutcomeFeature(name)))
                fail($"feedback sequence '{name}' is also declared in sequences (a feedback block creates its sequence; remove it from sequences)");
        }
    }

    /// <summary>
    /// Names of the features that some scenario's feedback tokens carry without the scenario having them (its tokens
    /// hold the table's absent row, <see cref="DataLayout.AbsentRow"/>).
    /// </summary>
    internal static HashSet<string> AbsentFeatures(DatasetSchema schema)
    {
        var absent = new HashSet<string>(StringComparer.Ordinal);
        foreach (var sc in schema.Scenarios)
            if (sc.Feedback is { } fb)
                foreach (var f in fb.Features.Except(sc.AllFeatures(), StringComparer.Ordinal)) absent.Add(f);
        return absent;
    }

    /// <summary>
    /// The schema with each feedback sequence and its outcome feature added (what the feedback store is compiled from);
    /// the schema itself when no scenario declares feedback or it is already expanded.
    /// </summary>
    public static DatasetSchema Expand(DatasetSchema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        if (!Declared(schema)) return schema;
        var x = DatasetSchema.Parse(schema.ToJson());
        foreach (var sc in x.Scenarios)
        {
            if (sc.Feedback is not { } fb || x.Sequences.Any(q => q.Name == fb.Sequence)) continue;
            string of = OutcomeFeature(fb.Sequence);
            x.Features.Add(new FeatureSpec { Name = of, Kind = "categorical", Vocabulary = OutcomeVocabulary(fb.Outcomes.Count), Oov = "error" });
            x.Sequences.Add(new SequenceSpec { Name = fb.Sequence, Features = [.. fb.Features, of], HistoryCap = fb.HistoryCap, StatisticsCap = fb.StatisticsCap });
        }
        x.Validate();
        return x;
    }

    private static string WithoutFeedback(DatasetSchema s)
    {
        var x = DatasetSchema.Parse(s.ToJson());
        foreach (var sc in x.Scenarios) sc.Feedback = null;
        return x.ToJson();
    }

    /// <summary>
    /// Statistics cap of the click feedback sequences <see cref="WithClickFeedback"/> adds by default: the T tokens'
    /// history statistics count a user's last 400 exposures with their outcomes (the user's running click rates, overall
    /// and per item value), while attention sees the last 50 (docs/quality.md).
    /// </summary>
    public const int ClickFeedbackStatisticsCap = 400;

    /// <summary>
    /// <paramref name="schema"/> with a feedback block on every scenario labelled with the first task (click), observable
    /// at the exposure's time (a click is seen when it happens; later outcomes such as conversions need their delay or
    /// revealing behaviour declared in a schema). Scenarios that share a categorical item feature, directly or through
    /// others, share one sequence; its tokens carry every categorical item feature of those scenarios and the click
    /// outcome, and a scenario's tokens hold the absent row for the features it lacks (so one scenario with features of
    /// its own never takes the item away from the others' tokens). When all clicked scenarios are connected that is one
    /// sequence <c>feedback</c> (H cap <paramref name="historyCap"/>); otherwise each connected group gets a sequence
    /// <c>feedback_&lt;first scenario of the group&gt;</c>.
    /// <paramref name="statisticsCap"/> is the sequences' <see cref="SequenceSpec.StatisticsCap"/> (default
    /// <see cref="ClickFeedbackStatisticsCap"/>; null or at most the H cap: none, the statistics count the H tokens only).
    /// </summary>
    public static DatasetSchema WithClickFeedback(DatasetSchema schema, int historyCap = 50, int? statisticsCap = ClickFeedbackStatisticsCap)
    {
        ArgumentNullException.ThrowIfNull(schema);
        if (statisticsCap <= historyCap) statisticsCap = null; // no older history: the block says nothing (as schemas without the key)
        var x = DatasetSchema.Parse(schema.ToJson());
        string task = x.Tasks[0];
        var labelled = x.Scenarios.Where(sc => sc.Labels.ContainsKey(task)).ToList();
        if (labelled.Count == 0) throw new ArgumentException($"--feedback: no scenario has a '{task}' label");
        var categorical = x.Features.Where(f => f.Kind != "numeric").Select(f => f.Name).ToHashSet(StringComparer.Ordinal);
        // Connected groups: a scenario joins every group it shares a categorical item feature with (merging them).
        var groups = new List<(List<string> Features, List<ScenarioSpec> Members)>();
        foreach (var sc in labelled)
        {
            var own = sc.ItemFeatures.Where(categorical.Contains).ToList();
            var joined = groups.Where(g => g.Features.Intersect(own).Any()).ToList();
            var group = joined.Count > 0 ? joined[0] : ([], []);
            foreach (var g in joined.Skip(1)) { group.Features.AddRange(g.Features); group.Members.AddRange(g.Members); groups.Remove(g); }
            if (joined.Count == 0) groups.Add(group);
            group.Members.Add(sc);
            group.Features.AddRange(own.Where(f => !group.Features.Contains(f)));
        }
        string Fresh(string name)
        {
            while (x.Scenarios.Any(sc => sc.Name == name) || x.Sequences.Any(q => q.Name == name) ||
                   x.Scenarios.Any(sc => sc.Feedback?.Sequence == name) || x.Features.Any(f => f.Name == OutcomeFeature(name))) name += "_";
            return name;
        }
        foreach (var (features, members) in groups)
        {
            // Features in the order the scenarios list them (first scenario first), members in schema order.
            var ordered = labelled.Where(members.Contains).ToList();
            var order = ordered.SelectMany(sc => sc.ItemFeatures).Where(features.Contains).Distinct().ToList();
            string sequence = Fresh(groups.Count == 1 ? "feedback" : "feedback_" + ordered[0].Name);
            foreach (var sc in ordered)
                sc.Feedback = new FeedbackSpec
                {
                    Sequence = sequence, Features = [.. order],
                    Outcomes = [new FeedbackOutcome { Task = task }], HistoryCap = historyCap, StatisticsCap = statisticsCap,
                };
        }
        x.Validate();
        return x;
    }

    /// <summary>
    /// <paramref name="raw"/> (a schema without feedback blocks) with the feedback blocks of <paramref name="model"/>
    /// (the schema a model was trained with), scenario by scenario: how `mtfm eval` derives a model's feedback tokens
    /// as in its training, whichever rule added them then.
    /// </summary>
    public static DatasetSchema WithFeedbackOf(DatasetSchema raw, DatasetSchema model)
    {
        ArgumentNullException.ThrowIfNull(raw);
        ArgumentNullException.ThrowIfNull(model);
        if (Declared(raw)) throw new ArgumentException("the schema declares feedback blocks of its own", nameof(raw));
        var x = DatasetSchema.Parse(raw.ToJson());
        var copy = DatasetSchema.Parse(model.ToJson()); // blocks of their own, not shared with the model's schema
        foreach (var sc in x.Scenarios) sc.Feedback = copy.Scenarios.FirstOrDefault(m => m.Name == sc.Name)?.Feedback;
        x.Validate();
        return x;
    }

    /// <summary>
    /// One line per feedback sequence of <paramref name="schema"/>: its scenarios, the features its tokens take and its
    /// caps, e.g. <c>feedback ← feed, groupbuy, coupon: item_id, category, shop_id + click outcome; H 50, statistics 400</c>
    /// (what `mtfm train` prints, so a user sees which item features their feedback tokens kept).
    /// </summary>
    internal static IEnumerable<string> Describe(DatasetSchema schema)
    {
        foreach (var group in schema.Scenarios.Where(sc => sc.Feedback is not null).GroupBy(sc => sc.Feedback!.Sequence))
        {
            var fb = group.First().Feedback!;
            string features = fb.Features.Count == 0 ? "no item features" : string.Join(", ", fb.Features);
            string stats = fb.StatisticsCap is { } c ? $", statistics {c}" : "";
            yield return $"{group.Key} ← {string.Join(", ", group.Select(sc => sc.Name))}: {features} + {string.Join(", ", fb.Outcomes.Select(o => o.Task))} outcome; H {fb.HistoryCap}{stats}";
        }
    }

    /// <summary>Every outcome code for <paramref name="n"/> labels: per label '0', '1' or '?' (not yet observable), e.g. "1?".</summary>
    internal static List<string> OutcomeVocabulary(int n)
    {
        var v = new List<string> { "" };
        for (int k = 0; k < n; k++) v = [.. v.SelectMany(p => new[] { p + "0", p + "1", p + "?" })];
        return v;
    }

    /// <summary>One feedback token: its time and outcome code.</summary>
    internal readonly record struct Token(long Time, string Code);

    /// <summary>
    /// The feedback tokens of one exposure at <paramref name="time"/>: <paramref name="labels"/>[k] is outcome k's label
    /// (0, 1, or −1 absent: never observable), <paramref name="revealAt"/>[k] when it becomes observable (long.MaxValue:
    /// never). A token at the exposure's time, then one per later distinct reveal time.
    /// </summary>
    internal static void Tokens(long time, ReadOnlySpan<int> labels, ReadOnlySpan<long> revealAt, List<Token> into)
    {
        int n = labels.Length;
        Span<long> times = stackalloc long[n + 1];
        int nt = 0;
        times[nt++] = time;
        for (int k = 0; k < n; k++) if (labels[k] >= 0 && revealAt[k] != long.MaxValue && revealAt[k] > time) times[nt++] = revealAt[k];
        times[..nt].Sort();
        var sb = new StringBuilder(n);
        for (int i = 0; i < nt; i++)
        {
            if (i > 0 && times[i] == times[i - 1]) continue;
            sb.Clear();
            for (int k = 0; k < n; k++) sb.Append(labels[k] >= 0 && revealAt[k] <= times[i] ? (char)('0' + labels[k]) : '?');
            into.Add(new Token(times[i], sb.ToString()));
        }
    }

    /// <summary>Reveal time of <paramref name="o"/> for an exposure at <paramref name="time"/>; <paramref name="firstMatchAtOrAfter"/> finds the revealing behaviour (long.MaxValue: none).</summary>
    internal static long RevealTime(FeedbackOutcome o, long time, Func<long, long>? firstMatchAtOrAfter)
    {
        long r = long.MaxValue;
        if (o.DelaySeconds is { } d) r = d > long.MaxValue - time ? long.MaxValue : time + d;
        if (o.RevealedBy is not null && firstMatchAtOrAfter is not null) r = Math.Min(r, firstMatchAtOrAfter(time));
        if (o.DelaySeconds is null && o.RevealedBy is null) r = time;
        return r;
    }

    /// <summary>
    /// The store with feedback tokens: <paramref name="raw"/> (compiled from the raw schema) copied into a store of the
    /// expanded schema (<see cref="Expand"/>), then one behaviour event of the feedback sequence per token of every
    /// exposure of a scenario with feedback. Returns <paramref name="raw"/> when no scenario declares feedback.
    /// </summary>
    public static EventStore Derive(EventStore raw) => Derive(raw, raw?.Layout.Schema!);

    /// <summary>
    /// As <see cref="Derive(EventStore)"/> with the feedback blocks of <paramref name="schema"/>: the raw store's schema
    /// with feedback blocks added (for built-in datasets whose schema is not a file, see <see cref="WithClickFeedback"/>).
    /// </summary>
    public static EventStore Derive(EventStore raw, DatasetSchema schema)
    {
        ArgumentNullException.ThrowIfNull(raw);
        ArgumentNullException.ThrowIfNull(schema);
        schema.Validate();
        if (!ReferenceEquals(schema, raw.Layout.Schema) && WithoutFeedback(schema) != WithoutFeedback(raw.Layout.Schema))
            throw new ArgumentException("the schema differs from the store's in more than its feedback blocks", nameof(schema));
        if (!Declared(schema)) return raw;
        if (schema.Scenarios.Any(sc => sc.Feedback is { } fb && schema.Sequences.Any(q => q.Name == fb.Sequence)))
            throw new ArgumentException("the store already has feedback sequences (Derive it once, from the raw schema)", nameof(raw));
        var l = new DataLayout(Expand(schema));
        if (l.SequenceCount > short.MaxValue - l.ScenarioCount) throw new ArgumentException("too many sources", nameof(schema));
        var st = new EventStore(l, raw.Count * 2);
        for (int u = 0; u < raw.UserCount; u++) st.InternUser(raw.UserKey(u));
        int tasks = l.TaskCount;
        for (int ev = 0; ev < raw.Count; ev++)
        {
            st.BeginEvent(raw.User.Items[ev], raw.Time.Items[ev], raw.Source.Items[ev]);
            foreach (var c in raw.Categorical(ev)) st.CatValues.Add(c);
            foreach (var v in raw.Numeric(ev)) st.NumValues.Add(v);
            int e = raw.ExposureIndex.Items[ev];
            if (e < 0) continue;
            for (int k = 0; k < tasks; k++) { st.Labels.Add(raw.Labels.Items[e * tasks + k]); st.TrueProb.Add(raw.TrueProb.Items[e * tasks + k]); }
        }
        st.HasTrueProbabilities = raw.HasTrueProbabilities;
        st.ExposureColumns = raw.ExposureColumns; // the raw events come first in reading order: exposure indices unchanged
        var order = raw.SortedByUserTime();
        var tokens = new List<Token>();
        var plans = Plans(l);
        var reveal = new RevealIndex(raw, l);
        int n = order.Length;
        var labelBuf = new int[4];
        for (int i = 0; i < n;)
        {
            int u = raw.User.Items[order[i]], uEnd = i;
            while (uEnd < n && raw.User.Items[order[uEnd]] == u) uEnd++;
            reveal.Load(order.AsSpan(i, uEnd - i));
            for (int m = i; m < uEnd; m++)
            {
                int ev = order[m], s = raw.Source.Items[ev];
                if (s >= l.ScenarioCount || plans[s] is not { } p) continue;
                int e = raw.ExposureIndex.Items[ev];
                long t = raw.Time.Items[ev];
                var labels = labelBuf.AsSpan(0, p.Outcomes.Length);
                for (int k = 0; k < labels.Length; k++)
                {
                    byte b = raw.Labels.Items[e * tasks + p.Tasks[k]];
                    labels[k] = b == 255 ? -1 : b;
                }
                var cat = raw.Categorical(ev); var num = raw.Numeric(ev);
                int exposure = ev;
                tokens.Clear();
                ExposureTokens(p, t, labels, (k, from) => reveal.FirstAtOrAfter(raw, exposure, p.MatchCat[k], p.RevealSource[k], p.RevealCat[k], from), tokens);
                foreach (var tok in tokens)
                {
                    st.BeginEvent(u, tok.Time, p.Source);
                    for (int k = 0; k < p.CatFrom.Length; k++) st.CatValues.Add(p.TokenCategorical(k, cat));
                    st.CatValues.Add(l.EncodeCategorical(p.OutcomeFeature, tok.Code));
                    foreach (int c in p.NumFrom) st.NumValues.Add(num[c]);
                }
            }
            i = uEnd;
        }
        return st;
    }

    /// <summary>
    /// The feedback tokens of one exposure of plan <paramref name="p"/> at <paramref name="time"/>, for training
    /// (<see cref="Derive(EventStore, DatasetSchema)"/>) and serving (a request's past exposures) alike:
    /// <paramref name="labels"/>[k] is outcome k's label (0, 1, or −1 absent), <paramref name="firstMatch"/>(k, from) the
    /// time of the first behaviour of outcome k's <c>revealedBy</c> sequence at or after <c>from</c> matching the
    /// exposure (long.MaxValue: none).
    /// </summary>
    internal static void ExposureTokens(Plan p, long time, ReadOnlySpan<int> labels, Func<int, long, long> firstMatch, List<Token> into)
    {
        Span<long> at = stackalloc long[labels.Length];
        for (int k = 0; k < labels.Length; k++)
        {
            int kk = k;
            var o = p.Outcomes[k];
            at[k] = RevealTime(o, time, o.RevealedBy is null ? null : from => firstMatch(kk, from));
        }
        Tokens(time, labels, at, into);
    }

    /// <summary>
    /// The first of <paramref name="candidates"/> (behaviour events of the revealing sequence, time-ordered) at or after
    /// <paramref name="from"/> whose match features (<paramref name="revealCat"/> positions) equal the exposure's
    /// (<paramref name="matchCat"/> positions of <paramref name="exposureCat"/>); long.MaxValue when none.
    /// </summary>
    internal static long FirstMatch(ReadOnlySpan<int> exposureCat, int[] matchCat, int[] revealCat, ReadOnlySpan<int> candidates, Func<int, long> timeOf, CategoricalOf catOf, long from)
    {
        foreach (int ev in candidates)
        {
            long t = timeOf(ev);
            if (t < from) continue;
            var rc = catOf(ev);
            bool ok = true;
            for (int k = 0; k < matchCat.Length && ok; k++) ok = exposureCat[matchCat[k]] == rc[revealCat[k]];
            if (ok) return t;
        }
        return long.MaxValue;
    }

    /// <summary>The encoded categorical values of event <paramref name="ev"/>.</summary>
    internal delegate ReadOnlySpan<int> CategoricalOf(int ev);

    /// <summary>Per scenario with feedback: where the token's features come from in the exposure, and how outcomes are revealed.</summary>
    internal sealed class Plan
    {
        public required int Source;            // feedback sequence source index
        public required int OutcomeFeature;
        public required FeedbackOutcome[] Outcomes;
        public required int[] Tasks;
        public required int[] CatFrom, NumFrom; // positions in the exposure's categorical / numeric values (CatFrom −1: a feature the scenario lacks)
        public required int[] CatAbsent;        // per token categorical: the table's absent row where CatFrom is −1
        public required int[][] MatchCat;       // per outcome: positions of the match features in the exposure's categorical values
        public required int[] RevealSource;     // per outcome: source index of revealedBy (−1 none)
        public required int[][] RevealCat;      // per outcome: positions of the match features in the revealing event's categorical values

        /// <summary>Token categorical <paramref name="k"/> of an exposure with encoded categoricals <paramref name="exposureCat"/>.</summary>
        public int TokenCategorical(int k, ReadOnlySpan<int> exposureCat) => CatFrom[k] >= 0 ? exposureCat[CatFrom[k]] : CatAbsent[k];
    }

    internal static Plan?[] Plans(DataLayout l)
    {
        var s = l.Schema;
        var plans = new Plan?[l.ScenarioCount];
        int Feature(string name) => s.Features.FindIndex(f => f.Name == name);
        for (int sc = 0; sc < l.ScenarioCount; sc++)
        {
            if (s.Scenarios[sc].Feedback is not { } fb) continue;
            l.TryGetSource(fb.Sequence, out int src);
            var ec = l.SourceCat[sc]; var en = l.SourceNum[sc];
            var qc = l.SourceCat[src]; var qn = l.SourceNum[src];
            plans[sc] = new Plan
            {
                Source = src,
                OutcomeFeature = Feature(OutcomeFeature(fb.Sequence)),
                Outcomes = [.. fb.Outcomes],
                Tasks = fb.Outcomes.Select(o => s.Tasks.IndexOf(o.Task)).ToArray(),
                CatFrom = qc[..^1].Select(f => Array.IndexOf(ec, f)).ToArray(),
                CatAbsent = qc[..^1].Select(f => l.AbsentRow[f]).ToArray(),
                NumFrom = qn.Select(f => Array.IndexOf(en, f)).ToArray(),
                MatchCat = fb.Outcomes.Select(o => o.Match.Select(m => Array.IndexOf(ec, Feature(m))).ToArray()).ToArray(),
                RevealSource = fb.Outcomes.Select(o => o.RevealedBy is { } r && l.TryGetSource(r, out int rs) ? rs : -1).ToArray(),
                RevealCat = fb.Outcomes.Select(o => o.RevealedBy is { } r && l.TryGetSource(r, out int rs)
                    ? o.Match.Select(m => Array.IndexOf(l.SourceCat[rs], Feature(m))).ToArray() : []).ToArray(),
            };
        }
        return plans;
    }

    /// <summary>One user's behaviour events by source, time-ordered (for revealedBy).</summary>
    private sealed class RevealIndex(EventStore raw, DataLayout l)
    {
        private readonly List<int>[] _bySource = Enumerable.Range(0, l.ScenarioCount + l.SequenceCount).Select(_ => new List<int>()).ToArray();

        public void Load(ReadOnlySpan<int> userEvents)
        {
            foreach (var q in _bySource) q.Clear();
            foreach (int ev in userEvents) if (raw.ExposureIndex.Items[ev] < 0) _bySource[raw.Source.Items[ev]].Add(ev);
        }

        public long FirstAtOrAfter(EventStore st, int exposure, int[] matchCat, int source, int[] revealCat, long from) =>
            FirstMatch(st.Categorical(exposure), matchCat, revealCat, CollectionsMarshal.AsSpan(_bySource[source]), ev => st.Time.Items[ev], st.Categorical, from);
    }
}
