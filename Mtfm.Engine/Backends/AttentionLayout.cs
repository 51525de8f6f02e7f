using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends;

/// <summary>
/// The token metadata of one jagged batch that the fused HSTU attention derives its visibility rule from (spec §4):
/// instance offsets, per-token segment kind (0 H, 1 R, 2 T) and time, and the ascending list of T tokens (the queries
/// of a target-attention layer). Host arrays; a device backend uploads them once per batch and caches them here.
/// </summary>
internal sealed class AttentionLayout : IDisposable
{
    /// <summary>Wraps the metadata (arrays are not copied; they must stay unchanged while the layout is used).</summary>
    public AttentionLayout(int[] offsets, byte[] kind, long[] time, int numBuckets = 32, long unitSeconds = 1)
    {
        ArgumentNullException.ThrowIfNull(offsets);
        ArgumentNullException.ThrowIfNull(kind);
        ArgumentNullException.ThrowIfNull(time);
        if (offsets.Length < 1) throw new ArgumentException("offsets needs at least one entry (offsets[0] = 0).", nameof(offsets));
        int n = offsets[^1];
        if (kind.Length != n) throw new ArgumentException($"kind has {kind.Length} entries, offsets end at {n} tokens.", nameof(kind));
        if (time.Length != n) throw new ArgumentException($"time has {time.Length} entries, offsets end at {n} tokens.", nameof(time));
        Offsets = offsets;
        Kind = kind;
        Time = time;
        NumBuckets = numBuckets;
        UnitSeconds = unitSeconds;
        var targets = new List<int>();
        for (int t = 0; t < n; t++) if (kind[t] == 2) targets.Add(t);
        TargetTokens = targets.ToArray();
    }

    /// <summary>[instances + 1] token offsets.</summary>
    public int[] Offsets { get; }

    /// <summary>[tokens] segment kinds (0 H, 1 R, 2 T).</summary>
    public byte[] Kind { get; }

    /// <summary>[tokens] times in seconds.</summary>
    public long[] Time { get; }

    /// <summary>Ascending indices of the T tokens (the queries of a target-attention layer).</summary>
    public int[] TargetTokens { get; }

    /// <summary>Number of instances.</summary>
    public int Batch => Offsets.Length - 1;

    /// <summary>Number of tokens.</summary>
    public int TokenCount => Offsets[^1];

    /// <summary>Time buckets per direction (NB) of the relative time bias.</summary>
    public int NumBuckets { get; }

    /// <summary>Bucket unit in seconds.</summary>
    public long UnitSeconds { get; }

    /// <summary>Entries of the rab table per head (2·NB − 1).</summary>
    public int RabWidth => 2 * NumBuckets - 1;

    /// <summary>Backend-specific cached copies (e.g. device buffers), disposed with the layout.</summary>
    public IDisposable? DeviceCache { get; set; }

    /// <summary>
    /// Checks the tensors of an attention call on this layout (every backend's <c>HstuAttention</c> uses it) and returns
    /// the head widths: q [rows, h·dqk] with rows = T tokens (<paramref name="targetQueries"/>) or all tokens,
    /// k [N, g·dqk], v [N, g·dv], rab with h·(2·NB − 1) values. Throws naming the argument and its shape.
    /// </summary>
    public (int Dqk, int Dv) CheckShapes(bool targetQueries, int heads, int kvHeads, Tensor q, Tensor k, Tensor v, Tensor rab)
    {
        if (heads < 1) throw new ArgumentOutOfRangeException(nameof(heads), heads, "heads must be ≥ 1.");
        if (kvHeads < 1 || heads % kvHeads != 0) throw new ArgumentOutOfRangeException(nameof(kvHeads), kvHeads, $"kvHeads must divide heads = {heads}.");
        int rows = targetQueries ? TargetTokens.Length : TokenCount;
        int n = TokenCount;
        if (q.Rank != 2 || q.RowCount != rows || q.LastDim % heads != 0)
            throw new ArgumentException($"q must be [{rows}, heads·dqk] with heads = {heads}, its shape is {q.ShapeString}.", nameof(q));
        int dqk = q.LastDim / heads;
        CheckRows(k, n, kvHeads * dqk, nameof(k));
        if (v.Rank != 2 || v.RowCount != n || v.LastDim % kvHeads != 0)
            throw new ArgumentException($"v must be [{n}, kvHeads·dv] with kvHeads = {kvHeads}, its shape is {v.ShapeString}.", nameof(v));
        if (rab.Length != (long)heads * RabWidth)
            throw new ArgumentException($"rab must hold heads·(2·NB − 1) = {heads * RabWidth} values, its shape is {rab.ShapeString}.", nameof(rab));
        return (dqk, v.LastDim / kvHeads);
    }

    /// <summary>Throws unless <paramref name="t"/> is [<paramref name="rows"/>, <paramref name="cols"/>].</summary>
    public static void CheckRows(Tensor t, int rows, int cols, string name)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        if (t.Rank != 2 || t.RowCount != rows || t.LastDim != cols)
            throw new ArgumentException($"{name} must be [{rows}, {cols}], its shape is {t.ShapeString}.", name);
    }

    /// <summary>Frees <see cref="DeviceCache"/>.</summary>
    public void Dispose()
    {
        DeviceCache?.Dispose();
        DeviceCache = null;
    }
}
