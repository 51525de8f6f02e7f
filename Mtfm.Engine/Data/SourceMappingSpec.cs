namespace Mtfm.Engine.Data;

/// <summary>
/// Derives a row's source (scenario or sequence) from several columns, for logs that have no single source column:
/// the rules are tried in order and the first whose every condition holds names the source. A condition compares
/// a column's cell text (trimmed; Parquet numbers and booleans as their text, booleans as 1/0) with a value;
/// <c>""</c> matches an empty cell (CSV) or null (Parquet); a column a rule does not name may hold anything.
/// </summary>
public sealed class SourceMappingSpec
{
    /// <summary>The columns the rules read (each must exist in the log's header).</summary>
    public List<string> Columns { get; set; } = [];
    /// <summary>The rules, tried in order.</summary>
    public List<SourceRule> Rules { get; set; } = [];
    /// <summary>A row no rule matches: <c>error</c> (rejected, naming file, row and column) or <c>skip</c> (counted as skipped in the read summary).</summary>
    public string Unmapped { get; set; } = "error";

    internal void Validate(HashSet<string> sources, Action<string> fail)
    {
        if (Columns.Count == 0) fail("sourceMapping.columns is empty");
        if (Columns.Distinct().Count() != Columns.Count) fail("sourceMapping.columns contains duplicates");
        if (Rules.Count == 0) fail("sourceMapping.rules is empty");
        if (Unmapped is not ("error" or "skip")) fail($"sourceMapping.unmapped '{Unmapped}' (expected error or skip)");
        for (int i = 0; i < Rules.Count; i++)
        {
            var r = Rules[i];
            if (r is null) { fail($"sourceMapping.rules[{i}] is null"); return; }
            if (string.IsNullOrEmpty(r.Source) || !sources.Contains(r.Source))
                fail($"sourceMapping.rules[{i}].source '{r.Source}' is not a scenario or sequence name");
            foreach (var c in r.When.Keys)
                if (!Columns.Contains(c)) fail($"sourceMapping.rules[{i}].when names column '{c}', which is not in sourceMapping.columns");
        }
    }
}

/// <summary>One rule of a <see cref="SourceMappingSpec"/>: when every column in <see cref="When"/> holds its value, the row's source is <see cref="Source"/>.</summary>
public sealed class SourceRule
{
    /// <summary>Column → required cell text (<c>""</c> = empty/null). An empty object matches every row (a catch-all last rule).</summary>
    public Dictionary<string, string> When { get; set; } = [];
    /// <summary>The scenario or sequence name the row becomes.</summary>
    public string Source { get; set; } = "";
}
