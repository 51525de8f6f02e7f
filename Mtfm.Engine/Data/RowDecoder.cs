using System.Globalization;

namespace Mtfm.Engine.Data;

/// <summary>Cells of one input row, by column index.</summary>
internal interface IRowCells
{
    ReadOnlySpan<char> Text(int col);
    /// <summary>Numeric cell; false when unparsable or empty.</summary>
    bool TryNumber(int col, out double v);
    /// <summary>Whether the cell is a typed timestamp (a Parquet timestamp column), whose number is already unix seconds.</summary>
    bool IsTimestamp(int col);
}

/// <summary>Maps the schema onto a header and decodes rows into an <see cref="EventStore"/>; shared by the CSV and Parquet readers.</summary>
internal sealed class RowDecoder
{
    private readonly EventStore _store;
    private readonly DataLayout _l;
    private readonly string _file;
    private readonly string[] _header;
    private readonly int _userCol, _timeCol, _sourceCol;
    private readonly int[] _featCol;          // feature -> column (-1 when absent and unused)
    private readonly int[][] _labelCol;       // scenario -> per task column or -1
    private readonly int _tasks;
    private readonly string _timeFormat;
    private readonly bool[] _isId;
    private readonly int[]? _mapCol;          // sourceMapping: column of each mapping column
    private readonly (int Col, string Value)[][]? _rules; // sourceMapping: per rule its conditions
    private readonly int[]? _ruleSource;      // sourceMapping: per rule the source index
    private readonly bool _skipUnmapped;
    private readonly int[] _keepCol;          // ReadOptions.KeepColumns: their columns

    public RowDecoder(EventStore store, string file, string[] header, IReadOnlyList<string>? keepColumns = null)
    {
        _store = store; _l = store.Layout; _file = file; _header = header;
        var s = _l.Schema;
        int Col(string name, string what)
        {
            int i = Array.IndexOf(header, name);
            if (i < 0) throw new DataFormatException($"{file}: header has no column '{name}' ({what}); columns are: {string.Join(", ", header)}");
            return i;
        }
        _userCol = Col(s.UserColumn, "userColumn");
        _timeCol = Col(s.TimeColumn, "timeColumn");
        if (s.SourceMapping is { } map)
        {
            _sourceCol = -1;
            _mapCol = map.Columns.Select(c => Col(c, "sourceMapping.columns")).ToArray();
            _rules = map.Rules.Select(r => r.When.Select(kv => (_mapCol[map.Columns.IndexOf(kv.Key)], kv.Value.Trim())).ToArray()).ToArray();
            _ruleSource = map.Rules.Select(r => { _l.TryGetSource(r.Source, out int src); return src; }).ToArray();
            _skipUnmapped = map.Unmapped == "skip";
        }
        else _sourceCol = Col(s.SourceColumn, "sourceColumn");
        _keepCol = (keepColumns ?? []).Select(c => Col(c, "a requested key column")).ToArray();
        _featCol = new int[s.Features.Count];
        var used = new HashSet<int>();
        for (int src = 0; src < _l.ScenarioCount + _l.SequenceCount; src++)
        {
            foreach (var f in _l.SourceCat[src]) used.Add(f);
            foreach (var f in _l.SourceNum[src]) used.Add(f);
        }
        for (int f = 0; f < s.Features.Count; f++)
            _featCol[f] = used.Contains(f) ? Col(s.Features[f].ColumnName, $"feature '{s.Features[f].Name}'") : -1;
        _tasks = s.Tasks.Count;
        _labelCol = new int[s.Scenarios.Count][];
        for (int sc = 0; sc < s.Scenarios.Count; sc++)
        {
            _labelCol[sc] = new int[_tasks];
            for (int t = 0; t < _tasks; t++)
                _labelCol[sc][t] = s.Scenarios[sc].Labels.TryGetValue(s.Tasks[t], out var c) ? Col(c, $"label of task '{s.Tasks[t]}' in scenario '{s.Scenarios[sc].Name}'") : -1;
        }
        _timeFormat = s.TimeFormat;
        _isId = s.Features.Select(f => f.Kind == "id").ToArray();
    }

    public int ColumnCount => _header.Length;

    private DataFormatException Err(long row, int col, string what, ReadOnlySpan<char> value) =>
        new($"{_file}: row {row}, column '{_header[col]}': {what} '{value.ToString()}'");

    /// <summary>
    /// Decodes one row (1-based data row number <paramref name="row"/>); throws <see cref="DataFormatException"/> on
    /// malformed input, leaving the store unchanged. Returns false (nothing stored) for a row that the schema's
    /// <see cref="SourceMappingSpec"/> maps to no source under <c>unmapped: skip</c>.
    /// </summary>
    public bool Decode<TRow>(ref TRow r, long row) where TRow : IRowCells, allows ref struct
    {
        int src;
        if (_rules is not null)
        {
            src = MapSource(ref r, row);
            if (src < 0) return false;
        }
        else
        {
            var srcText = r.Text(_sourceCol);
            if (!_l.TryGetSource(srcText, out src)) throw Err(row, _sourceCol, "unknown scenario or sequence", srcText);
        }
        var userText = r.Text(_userCol);
        if (userText.IsEmpty) throw Err(row, _userCol, "missing user id", userText);
        long time = ParseTime(ref r, row);
        // Validate everything before touching the store.
        var cat = _l.SourceCat[src]; var num = _l.SourceNum[src];
        Span<int> catVals = cat.Length <= 64 ? stackalloc int[cat.Length] : new int[cat.Length];
        Span<float> numVals = num.Length <= 64 ? stackalloc float[num.Length] : new float[num.Length];
        for (int k = 0; k < cat.Length; k++)
        {
            int c = _featCol[cat[k]];
            int v;
            if (_l.AllowMissing[cat[k]] && r.Text(c).IsWhiteSpace()) { catVals[k] = _l.MissingRow[cat[k]]; continue; }
            if (_isId[cat[k]])
                v = r.TryNumber(c, out double d) && d == Math.Floor(d) && Math.Abs(d) < 9e15 ? _l.EncodeId(cat[k], (long)d) : _l.EncodeCategorical(cat[k], r.Text(c));
            else v = _l.EncodeCategorical(cat[k], r.Text(c));
            if (v < 0) throw Err(row, c, $"value outside the vocabulary of feature '{_l.Schema.Features[cat[k]].Name}' (oov policy: error)", r.Text(c));
            catVals[k] = v;
        }
        for (int k = 0; k < num.Length; k++)
        {
            int c = _featCol[num[k]];
            if (_l.AllowMissing[num[k]] && r.Text(c).IsWhiteSpace()) { numVals[k] = float.NaN; continue; }
            if (!r.TryNumber(c, out double d)) throw Err(row, c, "unparsable number", r.Text(c));
            if (!double.IsFinite(d) || !float.IsFinite((float)d)) throw Err(row, c, "non-finite numeric value", r.Text(c));
            numVals[k] = (float)d;
        }
        Span<byte> labels = stackalloc byte[_tasks];
        if (src < _l.ScenarioCount)
        {
            for (int t = 0; t < _tasks; t++)
            {
                int c = _labelCol[src][t];
                if (c < 0) { labels[t] = 255; continue; }
                var txt = r.Text(c).Trim();
                if (txt.IsEmpty) throw Err(row, c, $"missing label for task '{_l.Schema.Tasks[t]}'", txt);
                if (txt is "1" || txt.Equals("true", StringComparison.OrdinalIgnoreCase) || txt is "1.0") labels[t] = 1;
                else if (txt is "0" || txt.Equals("false", StringComparison.OrdinalIgnoreCase) || txt is "0.0") labels[t] = 0;
                else throw Err(row, c, $"label for task '{_l.Schema.Tasks[t]}' is not 0/1/true/false", txt);
            }
        }
        int u = _store.InternUser(userText);
        _store.BeginEvent(u, time, src);
        foreach (var v in catVals) _store.CatValues.Add(v);
        foreach (var v in numVals) _store.NumValues.Add(v);
        if (src < _l.ScenarioCount)
        {
            for (int t = 0; t < _tasks; t++) { _store.Labels.Add(labels[t]); _store.TrueProb.Add(float.NaN); }
            if (_keepCol.Length > 0)
            {
                var kept = _store.ExposureColumns!;
                foreach (int c in _keepCol) kept.Add(r.Text(c).ToString());
            }
        }
        return true;
    }

    /// <summary>The source of a row under the schema's sourceMapping: the first matching rule's; −1 when none matches and unmapped rows are skipped.</summary>
    private int MapSource<TRow>(ref TRow r, long row) where TRow : IRowCells, allows ref struct
    {
        for (int i = 0; i < _rules!.Length; i++)
        {
            bool match = true;
            foreach (var (col, value) in _rules[i])
                if (!r.Text(col).Trim().SequenceEqual(value)) { match = false; break; }
            if (match) return _ruleSource![i];
        }
        if (_skipUnmapped) return -1;
        var sb = new System.Text.StringBuilder("no sourceMapping rule matches (");
        for (int j = 0; j < _mapCol!.Length; j++)
        {
            if (j > 0) sb.Append(", ");
            sb.Append(_header[_mapCol[j]]).Append("='").Append(r.Text(_mapCol[j])).Append('\'');
        }
        sb.Append("; unmapped: error)");
        throw Err(row, _mapCol[0], sb.ToString(), r.Text(_mapCol[0]));
    }

    /// <summary>Unix seconds at or beyond which a unix_seconds time is rejected as milliseconds (1e11 s, the year 5138).</summary>
    internal const long MaxUnixSeconds = 100_000_000_000L;

    private long ParseTime<TRow>(ref TRow r, long row) where TRow : IRowCells, allows ref struct
    {
        if (_timeFormat == "iso8601")
        {
            var txt = r.Text(_timeCol);
            if (DateTimeOffset.TryParse(txt, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var dto)) return dto.ToUnixTimeSeconds();
            throw Err(row, _timeCol, "unparsable timestamp (iso8601 expected)", txt);
        }
        if (!r.TryNumber(_timeCol, out double d) || !double.IsFinite(d) || d != Math.Floor(d) || Math.Abs(d) > 9e15)
            throw Err(row, _timeCol, $"unparsable timestamp ({_timeFormat} integer expected)", r.Text(_timeCol));
        long t = (long)d;
        if (r.IsTimestamp(_timeCol)) return t; // a typed timestamp: seconds whatever the time format, and any year
        // 1e11 unix seconds is the year 5138: such a column holds milliseconds (or finer), and reading it as seconds would
        // stretch every decay, window and same-second page a thousandfold without any other error.
        if (_timeFormat == "unix_seconds" && Math.Abs(t) >= MaxUnixSeconds)
            throw Err(row, _timeCol, "timestamp beyond the year 5000 as unix seconds: the column looks like milliseconds (set \"timeFormat\": \"unix_millis\" in the schema)", r.Text(_timeCol));
        return _timeFormat == "unix_millis" ? Math.DivRem(t, 1000L).Quotient - (t % 1000 < 0 ? 1 : 0) : t;
    }
}
