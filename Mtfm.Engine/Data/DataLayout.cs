using System.Globalization;

namespace Mtfm.Engine.Data;

/// <summary>
/// The compiled form of a <see cref="DatasetSchema"/>: embedding tables, token groups and per-source feature layouts.
/// Groups are numbered H sequences first (0..S−1), then R sequences (S..2S−1), then one T group per scenario (2S..).
/// </summary>
internal sealed class DataLayout
{
    /// <summary>The schema this layout was compiled from.</summary>
    public DatasetSchema Schema { get; }
    /// <summary>Embedding tables (one per categorical/id/hashed feature).</summary>
    public IReadOnlyList<EmbeddingTableInfo> Tables { get; }
    /// <summary>Token groups.</summary>
    public IReadOnlyList<TokenGroupInfo> Groups { get; }
    /// <summary>Number of scenarios.</summary>
    public int ScenarioCount => Schema.Scenarios.Count;
    /// <summary>Number of behaviour sequences.</summary>
    public int SequenceCount => Schema.Sequences.Count;
    /// <summary>Number of tasks.</summary>
    public int TaskCount => Schema.Tasks.Count;

    internal readonly int[] FeatureTable;            // feature index -> table id, or -1 for numeric
    internal readonly int[] MissingRow;              // feature index -> table row of a missing value, or -1 (numeric, or missing: error)
    internal readonly bool[] AllowMissing;           // feature index -> missing: allow
    internal readonly int[] AbsentRow;               // feature index -> table row of "absent from this token's scenario" (a feedback token), or -1
    internal readonly int[][] SourceCat;             // source -> feature indices of categorical columns
    internal readonly int[][] SourceNum;             // source -> feature indices of numeric columns
    internal readonly int[][] ScenarioTaskLabel;     // scenario -> per task 1 if labelled
    private readonly Dictionary<string, int> _sourceByName = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int>[] _vocab;

    /// <summary>Compiles <paramref name="schema"/> (validating it first).</summary>
    public DataLayout(DatasetSchema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        schema.Validate();
        Schema = schema;
        int nf = schema.Features.Count;
        FeatureTable = new int[nf];
        MissingRow = new int[nf];
        AllowMissing = new bool[nf];
        AbsentRow = new int[nf];
        var absent = FeedbackTokens.AbsentFeatures(schema);
        _vocab = new Dictionary<string, int>[nf];
        var tables = new List<EmbeddingTableInfo>();
        var idx = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < nf; i++)
        {
            var f = schema.Features[i];
            idx[f.Name] = i;
            int rows = f.Kind switch
            {
                "categorical" => f.Vocabulary!.Count + 1,
                "id" => f.Cardinality + 1,
                "hashed" => f.Buckets,
                _ => -1,
            };
            AllowMissing[i] = schema.AllowsMissing(i);
            MissingRow[i] = AbsentRow[i] = -1;
            if (rows < 0) { FeatureTable[i] = -1; continue; }
            // missing: allow adds one row after the table's own rows for the missing value; a feature that a feedback
            // sequence carries and one of its scenarios lacks, one more for the tokens of that scenario.
            if (AllowMissing[i]) MissingRow[i] = rows++;
            if (absent.Contains(f.Name)) AbsentRow[i] = rows++;
            FeatureTable[i] = tables.Count;
            tables.Add(new EmbeddingTableInfo(tables.Count, f.Name, rows));
            if (f.Kind == "categorical")
            {
                var d = new Dictionary<string, int>(StringComparer.Ordinal);
                for (int v = 0; v < f.Vocabulary!.Count; v++) d[f.Vocabulary[v]] = v + 1;
                _vocab[i] = d;
            }
        }
        Tables = tables;
        int ns = schema.Scenarios.Count, nq = schema.Sequences.Count;
        SourceCat = new int[ns + nq][];
        SourceNum = new int[ns + nq][];
        ScenarioTaskLabel = new int[ns][];
        for (int s = 0; s < ns + nq; s++)
        {
            IEnumerable<string> feats = s < ns ? schema.Scenarios[s].AllFeatures() : schema.Sequences[s - ns].Features;
            var fi = feats.Select(n => idx[n]).ToArray();
            SourceCat[s] = fi.Where(i => FeatureTable[i] >= 0).ToArray();
            SourceNum[s] = fi.Where(i => FeatureTable[i] < 0).ToArray();
            _sourceByName[s < ns ? schema.Scenarios[s].Name : schema.Sequences[s - ns].Name] = s;
        }
        for (int s = 0; s < ns; s++)
            ScenarioTaskLabel[s] = schema.Tasks.Select(t => schema.Scenarios[s].Labels.ContainsKey(t) ? 1 : 0).ToArray();
        var groups = new List<TokenGroupInfo>();
        for (int j = 0; j < nq; j++) groups.Add(MakeGroup(groups.Count, "H:" + schema.Sequences[j].Name, SegmentKind.History, j, ns + j));
        for (int j = 0; j < nq; j++) groups.Add(MakeGroup(groups.Count, "R:" + schema.Sequences[j].Name, SegmentKind.Realtime, j, ns + j));
        for (int s = 0; s < ns; s++) groups.Add(MakeGroup(groups.Count, "T:" + schema.Scenarios[s].Name, SegmentKind.Target, s, s));
        Groups = groups;
    }

    private TokenGroupInfo MakeGroup(int id, string name, SegmentKind seg, int source, int src) =>
        new(id, name, seg, source, SourceCat[src].Select(i => FeatureTable[i]).ToArray(), SourceNum[src].ToArray())
        {
            NumericPresence = Enumerable.Range(0, SourceNum[src].Length).Where(k => AllowMissing[SourceNum[src][k]]).ToArray(),
        };

    /// <summary>Whether embedding table <paramref name="table"/> ends with an absent row (<see cref="AbsentRow"/>).</summary>
    internal bool TableHasAbsentRow(int table)
    {
        for (int f = 0; f < FeatureTable.Length; f++) if (FeatureTable[f] == table) return AbsentRow[f] >= 0;
        return false;
    }

    /// <summary>Group id of the H group of sequence <paramref name="sequence"/>.</summary>
    public int HistoryGroup(int sequence) => sequence;
    /// <summary>Group id of the R group of sequence <paramref name="sequence"/>.</summary>
    public int RealtimeGroup(int sequence) => SequenceCount + sequence;
    /// <summary>Group id of the T group of scenario <paramref name="scenario"/>.</summary>
    public int TargetGroup(int scenario) => 2 * SequenceCount + scenario;

    /// <summary>Source index of a scenario or sequence name (scenarios first, then sequences); false if unknown.</summary>
    public bool TryGetSource(ReadOnlySpan<char> name, out int source) =>
        _sourceByName.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(name, out source);

    /// <summary>Name of source <paramref name="source"/>.</summary>
    public string SourceName(int source) =>
        source < ScenarioCount ? Schema.Scenarios[source].Name : Schema.Sequences[source - ScenarioCount].Name;

    /// <summary>
    /// Encodes a raw categorical cell of feature <paramref name="feature"/> into its table row. Returns −1 when the
    /// value is out of vocabulary and the feature's policy is <c>error</c>.
    /// </summary>
    internal int EncodeCategorical(int feature, ReadOnlySpan<char> raw)
    {
        var f = Schema.Features[feature];
        switch (f.Kind)
        {
            case "hashed":
                return StableHash.Bucket(raw, f.Buckets);
            case "categorical":
                if (_vocab[feature].GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(raw, out int r)) return r;
                return f.Oov == "bucket" ? 0 : -1;
            default: // id
                if (long.TryParse(raw, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v)) return EncodeId(feature, v);
                return f.Oov == "bucket" ? 0 : -1;
        }
    }

    /// <summary>Encodes an integer id of an <c>id</c> feature: v + 1, or 0 (OOV bucket) / −1 (error policy) when outside [0, cardinality).</summary>
    internal int EncodeId(int feature, long v)
    {
        var f = Schema.Features[feature];
        if ((ulong)v < (ulong)f.Cardinality) return (int)v + 1;
        return f.Oov == "bucket" ? 0 : -1;
    }
}
