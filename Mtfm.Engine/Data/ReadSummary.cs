namespace Mtfm.Engine.Data;

/// <summary>What a reader did: rows read, used and rejected, with the first rejection messages.</summary>
public sealed class ReadSummary
{
    /// <summary>The file read.</summary>
    public string File { get; init; } = "";
    /// <summary>Data rows read (header excluded).</summary>
    public long RowsRead { get; internal set; }
    /// <summary>Rows stored as events.</summary>
    public long RowsUsed { get; internal set; }
    /// <summary>Rows rejected (only non-zero when <see cref="ReadOptions.MaxErrors"/> &gt; 0).</summary>
    public long RowsRejected { get; internal set; }
    /// <summary>Rows the schema's sourceMapping maps to no source, skipped under <c>unmapped: skip</c> (not stored, not rejected).</summary>
    public long RowsSkipped { get; internal set; }
    /// <summary>Exposure rows among the used rows.</summary>
    public long Exposures { get; internal set; }
    /// <summary>Error messages of rejected rows (at most 100 kept).</summary>
    public List<string> Errors { get; } = [];

    /// <summary>One-line summary.</summary>
    public override string ToString() =>
        $"{File}: {RowsRead} rows read, {RowsUsed} used ({Exposures} exposures, {RowsUsed - Exposures} behaviour events), {RowsRejected} rejected" +
        (RowsSkipped > 0 ? $", {RowsSkipped} skipped (no sourceMapping rule)" : "");
}

/// <summary>Reader options.</summary>
public sealed class ReadOptions
{
    /// <summary>Rows that may be rejected (and counted) before the read fails; 0 = the first malformed row throws.</summary>
    public long MaxErrors { get; init; }
    /// <summary>Where the summary is printed (null = nowhere).</summary>
    public TextWriter? Log { get; init; }
    /// <summary>Columns whose raw text is kept per exposure (<see cref="EventStore.ExposureColumns"/>), e.g. for prediction files; empty = none.</summary>
    public IReadOnlyList<string> KeepColumns { get; init; } = [];
    /// <summary>Progress callback: rows read so far.</summary>
    public IProgress<long>? Progress { get; init; }
}
