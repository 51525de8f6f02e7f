using System.Text.Json;

namespace Mtfm.Engine.Data;

/// <summary>
/// The JSON dataset schema: which columns of an event log hold the user, the time and the event source, the features
/// (shared by name: two scenarios naming the same feature share its embedding table), the scenarios with their
/// exposure features and label columns, the behaviour sequences (each feeding one H and one R token group), the
/// window length and the temporal split. See <c>docs/data.md</c> for a full example.
/// </summary>
public sealed class DatasetSchema
{
    /// <summary>Dataset name (informational).</summary>
    public string Name { get; set; } = "dataset";
    /// <summary>Column holding the user key (any string).</summary>
    public string UserColumn { get; set; } = "user_id";
    /// <summary>Column holding the event time.</summary>
    public string TimeColumn { get; set; } = "ts";
    /// <summary>Time format: <c>unix_seconds</c>, <c>unix_millis</c> or <c>iso8601</c>.</summary>
    public string TimeFormat { get; set; } = "unix_seconds";
    /// <summary>Column naming the event source: a scenario name (an exposure) or a sequence name (a behaviour event).</summary>
    public string SourceColumn { get; set; } = "source";
    /// <summary>Window length in seconds (one instance = one user over one window).</summary>
    public long WindowSeconds { get; set; } = 86400;
    /// <summary>Window origin in unix seconds: window k covers [origin + k·len, origin + (k+1)·len).</summary>
    public long WindowOrigin { get; set; }
    /// <summary>Task names; every scenario maps a subset of them to label columns. At least <c>click</c> and <c>conversion</c>.</summary>
    public List<string> Tasks { get; set; } = ["click", "conversion"];
    /// <summary>All features, by unique name.</summary>
    public List<FeatureSpec> Features { get; set; } = [];
    /// <summary>The scenarios (exposure sources).</summary>
    public List<ScenarioSpec> Scenarios { get; set; } = [];
    /// <summary>The behaviour sequences (H before the window, R inside it).</summary>
    public List<SequenceSpec> Sequences { get; set; } = [];
    /// <summary>Optional temporal split by window start; null = everything is training data.</summary>
    public SplitSpec? Split { get; set; }
    /// <summary>Default missing-value policy of features that do not set <see cref="FeatureSpec.Missing"/>: <c>error</c> (null = error) or <c>allow</c>.</summary>
    public string? Missing { get; set; }
    /// <summary>Optional: derive each row's source from several columns instead of <see cref="SourceColumn"/> (see <see cref="SourceMappingSpec"/>).</summary>
    public SourceMappingSpec? SourceMapping { get; set; }

    /// <summary>Whether feature <paramref name="feature"/> (index in <see cref="Features"/>) accepts missing values (its policy, or the schema's default).</summary>
    public bool AllowsMissing(int feature) => (Features[feature].Missing ?? Missing ?? "error") == "allow";

    /// <summary>Parses a schema from JSON text and validates it.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="origin">A name for error messages (for instance the file path).</param>
    public static DatasetSchema Parse(string json, string origin = "<schema>")
    {
        DatasetSchema? s;
        try { s = JsonSerializer.Deserialize(json, DataJsonContext.Default.DatasetSchema); }
        catch (JsonException e) { throw new DataFormatException($"{origin}: invalid schema JSON: {e.Message}", e); }
        if (s is null) throw new DataFormatException($"{origin}: schema JSON is null");
        s.Validate(origin);
        return s;
    }

    /// <summary>Loads and validates a schema file.</summary>
    /// <param name="path">Path of the JSON file.</param>
    public static DatasetSchema Load(string path) => Parse(File.ReadAllText(path), path);

    /// <summary>Serialises the schema as indented JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, DataJsonContext.Default.DatasetSchema);

    /// <summary>Checks the schema for consistency; throws <see cref="DataFormatException"/> naming the offending entry.</summary>
    /// <param name="origin">A name for error messages.</param>
    public void Validate(string origin = "<schema>")
    {
        void Fail(string msg) => throw new DataFormatException($"{origin}: {msg}");
        if (WindowSeconds <= 0) Fail($"windowSeconds must be > 0, got {WindowSeconds}");
        if (TimeFormat is not ("unix_seconds" or "unix_millis" or "iso8601")) Fail($"timeFormat '{TimeFormat}' is not unix_seconds, unix_millis or iso8601");
        if (Tasks.Count == 0) Fail("tasks is empty");
        if (Tasks.Distinct().Count() != Tasks.Count) Fail("tasks contains duplicates");
        var names = new HashSet<string>();
        foreach (var f in Features)
        {
            if (string.IsNullOrEmpty(f.Name)) Fail("a feature has no name");
            if (!names.Add(f.Name)) Fail($"feature '{f.Name}' is declared twice");
            switch (f.Kind)
            {
                case "categorical":
                    if (f.Vocabulary is null || f.Vocabulary.Count == 0) Fail($"categorical feature '{f.Name}' needs a non-empty vocabulary");
                    if (f.Vocabulary!.Distinct().Count() != f.Vocabulary!.Count) Fail($"vocabulary of feature '{f.Name}' has duplicates");
                    break;
                case "id":
                    if (f.Cardinality <= 0) Fail($"id feature '{f.Name}' needs cardinality > 0, got {f.Cardinality}");
                    break;
                case "hashed":
                    if (f.Buckets <= 0) Fail($"hashed feature '{f.Name}' needs buckets > 0, got {f.Buckets}");
                    break;
                case "numeric":
                    if (f.Transform is not ("none" or "log1p" or "standardize" or "log1p_standardize"))
                        Fail($"numeric feature '{f.Name}' has transform '{f.Transform}' (expected none, log1p, standardize, log1p_standardize)");
                    break;
                default: Fail($"feature '{f.Name}' has kind '{f.Kind}' (expected categorical, id, hashed or numeric)"); break;
            }
            if (f.Oov is not ("bucket" or "error")) Fail($"feature '{f.Name}' has oov '{f.Oov}' (expected bucket or error)");
            if (f.Missing is not (null or "allow" or "error")) Fail($"feature '{f.Name}' has missing '{f.Missing}' (expected allow or error)");
        }
        if (Missing is not (null or "allow" or "error")) Fail($"missing '{Missing}' (expected allow or error)");
        var sources = new HashSet<string>();
        if (Scenarios.Count == 0) Fail("no scenarios");
        foreach (var sc in Scenarios)
        {
            if (!sources.Add(sc.Name)) Fail($"source name '{sc.Name}' is used twice");
            foreach (var f in sc.AllFeatures()) if (!names.Contains(f)) Fail($"scenario '{sc.Name}' uses unknown feature '{f}'");
            if (sc.AllFeatures().Distinct().Count() != sc.AllFeatures().Count()) Fail($"scenario '{sc.Name}' lists a feature twice");
            foreach (var t in sc.Labels.Keys) if (!Tasks.Contains(t)) Fail($"scenario '{sc.Name}' has a label for unknown task '{t}'");
            if (sc.Labels.Count == 0) Fail($"scenario '{sc.Name}' has no label columns");
        }
        foreach (var sq in Sequences)
        {
            if (!sources.Add(sq.Name)) Fail($"source name '{sq.Name}' is used twice");
            foreach (var f in sq.Features) if (!names.Contains(f)) Fail($"sequence '{sq.Name}' uses unknown feature '{f}'");
            if (sq.HistoryCap < 0) Fail($"sequence '{sq.Name}' has historyCap {sq.HistoryCap} < 0");
            if (sq.StatisticsCap < sq.HistoryCap) Fail($"sequence '{sq.Name}' has statisticsCap {sq.StatisticsCap} < its historyCap {sq.HistoryCap}");
        }
        SourceMapping?.Validate(sources, Fail);
        FeedbackTokens.Validate(this, Fail);
        if (Split is { } sp && sp.ValidStart > sp.TestStart) Fail($"split.validStart {sp.ValidStart} is after split.testStart {sp.TestStart}");
    }
}

/// <summary>One feature. Categorical ids map to embedding rows (row 0 = OOV bucket); numeric values are transformed with training statistics.</summary>
public sealed class FeatureSpec
{
    /// <summary>Unique feature name (also its embedding table's name).</summary>
    public string Name { get; set; } = "";
    /// <summary>Column in the event log; defaults to <see cref="Name"/>.</summary>
    public string? Column { get; set; }
    /// <summary><c>categorical</c> (fixed vocabulary of strings), <c>id</c> (integers in [0, cardinality)), <c>hashed</c> (any string, stable FNV-1a hash into buckets) or <c>numeric</c>.</summary>
    public string Kind { get; set; } = "categorical";
    /// <summary>Vocabulary for <c>categorical</c>: value i maps to table row i + 1.</summary>
    public List<string>? Vocabulary { get; set; }
    /// <summary>Cardinality for <c>id</c>: value v maps to table row v + 1.</summary>
    public int Cardinality { get; set; }
    /// <summary>Bucket count for <c>hashed</c>.</summary>
    public int Buckets { get; set; }
    /// <summary>Out-of-vocabulary policy for <c>categorical</c> and <c>id</c>: <c>bucket</c> (row 0) or <c>error</c>.</summary>
    public string Oov { get; set; } = "bucket";
    /// <summary>Numeric transform: <c>none</c>, <c>log1p</c>, <c>standardize</c> or <c>log1p_standardize</c> (statistics from the training split).</summary>
    public string Transform { get; set; } = "standardize";
    /// <summary>
    /// Missing-value policy: <c>error</c> (an empty cell is rejected, or read as the OOV value for categorical features
    /// as before) or <c>allow</c>: an empty cell (CSV) or null (Parquet) is a missing value. A missing numeric value
    /// becomes 0 plus a presence indicator (1 = present) as an extra token input; a missing categorical/id/hashed
    /// value maps to its own embedding row (the table's last row). Null = the schema's default (<see cref="DatasetSchema.Missing"/>).
    /// </summary>
    public string? Missing { get; set; }
    /// <summary>The column name actually read.</summary>
    public string ColumnName => Column ?? Name;
}

/// <summary>A scenario: its exposure features (user, context, item) and its label columns per task.</summary>
public sealed class ScenarioSpec
{
    /// <summary>Scenario name, as it appears in the source column.</summary>
    public string Name { get; set; } = "";
    /// <summary>User-side features of this scenario's exposures.</summary>
    public List<string> UserFeatures { get; set; } = [];
    /// <summary>Context/cross features.</summary>
    public List<string> ContextFeatures { get; set; } = [];
    /// <summary>Item-side features.</summary>
    public List<string> ItemFeatures { get; set; } = [];
    /// <summary>Task name → label column (values 0/1, or true/false). Tasks not listed have no label here (presence mask 0).</summary>
    public Dictionary<string, string> Labels { get; set; } = [];
    /// <summary>Optional feedback tokens: this scenario's exposures also enter a sequence as tokens carrying their outcome (docs/data.md, "Feedback tokens").</summary>
    public FeedbackSpec? Feedback { get; set; }
    /// <summary>User, context and item features in token order.</summary>
    public IEnumerable<string> AllFeatures() => UserFeatures.Concat(ContextFeatures).Concat(ItemFeatures);
}

/// <summary>A behaviour sequence: its events before a window form H tokens (last <see cref="HistoryCap"/>), inside it R tokens.</summary>
public sealed class SequenceSpec
{
    /// <summary>Sequence name, as it appears in the source column.</summary>
    public string Name { get; set; } = "";
    /// <summary>Features of this sequence's events.</summary>
    public List<string> Features { get; set; } = [];
    /// <summary>How many of the most recent events before the window enter H (0 = none).</summary>
    public int HistoryCap { get; set; } = 50;
    /// <summary>
    /// How many of the most recent events before the window the T tokens' history statistics count (null = <see cref="HistoryCap"/>;
    /// at least <see cref="HistoryCap"/>): the older ones beyond the H cap are counted but never tokenized, so a long
    /// past costs no attention.
    /// </summary>
    public int? StatisticsCap { get; set; }

    /// <summary>The statistics cap in effect: <see cref="StatisticsCap"/>, or <see cref="HistoryCap"/> when unset.</summary>
    internal int EffectiveStatisticsCap => StatisticsCap ?? HistoryCap;
}

/// <summary>
/// Feedback tokens of a scenario: each exposure becomes a behaviour token of sequence <see cref="Sequence"/> (created
/// by this block, not listed in <c>sequences</c>; scenarios may share it when their blocks agree) with the exposure's
/// <see cref="Features"/> and one outcome embedding (a categorical feature <c>&lt;sequence&gt;.outcome</c> whose value
/// says per outcome label 0, 1 or not yet observable). A label becomes observable at the exposure's time unless its
/// <see cref="FeedbackOutcome"/> declares a delay or a revealing behaviour; a later reveal adds a second token.
/// </summary>
public sealed class FeedbackSpec
{
    /// <summary>Name of the feedback sequence.</summary>
    public string Sequence { get; set; } = "";
    /// <summary>
    /// Features the token takes: the scenario's own, or a categorical feature that another scenario sharing the sequence
    /// has (this scenario's tokens then hold that table's absent row).
    /// </summary>
    public List<string> Features { get; set; } = [];
    /// <summary>The labels that become outcome embeddings, with when each becomes observable.</summary>
    public List<FeedbackOutcome> Outcomes { get; set; } = [];
    /// <summary>H cap of the feedback sequence.</summary>
    public int HistoryCap { get; set; } = 50;
    /// <summary>Statistics cap of the feedback sequence (<see cref="SequenceSpec.StatisticsCap"/>; null = <see cref="HistoryCap"/>).</summary>
    public int? StatisticsCap { get; set; }
}

/// <summary>One outcome label of a feedback token and when it becomes observable.</summary>
public sealed class FeedbackOutcome
{
    /// <summary>Task name (a label of the scenario).</summary>
    public string Task { get; set; } = "";
    /// <summary>Seconds after the exposure at which the label is observable (null: at the exposure, or per <see cref="RevealedBy"/>).</summary>
    public long? DelaySeconds { get; set; }
    /// <summary>A behaviour sequence whose event reveals the label (e.g. an order): the first event of this sequence at or after the exposure with equal <see cref="Match"/> features.</summary>
    public string? RevealedBy { get; set; }
    /// <summary>Features (of both the scenario and <see cref="RevealedBy"/>) that must be equal for a behaviour to reveal the label.</summary>
    public List<string> Match { get; set; } = [];
}

/// <summary>Temporal split by window start (unix seconds): train before <see cref="ValidStart"/>, valid before <see cref="TestStart"/>, then test.</summary>
public sealed class SplitSpec
{
    /// <summary>First window start of the validation part.</summary>
    public long ValidStart { get; set; }
    /// <summary>First window start of the test part.</summary>
    public long TestStart { get; set; }
}
