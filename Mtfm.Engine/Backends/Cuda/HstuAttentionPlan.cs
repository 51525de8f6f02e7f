namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// Host-side tiling of a jagged batch for <c>mtfm_hstu_attention_fwd</c>: query rows grouped per instance in runs of
/// at most <see cref="TileSize"/>, each tile paired with its instance's token range (the keys). Built from data the
/// host already has (instance offsets, query tokens), so no device round trip is needed.
/// </summary>
internal sealed class HstuAttentionPlan
{
    private HstuAttentionPlan(int[] tiles, int[] keyTiles, int numQueries, int tileSize)
    {
        Tiles = tiles;
        KeyTiles = keyTiles;
        NumQueries = numQueries;
        TileSize = tileSize;
    }

    /// <summary>
    /// For the backward dK/dV kernel: [NumKeyTiles, 4] = (first key token, end key token, first query row, end query
    /// row of the key's instance). Every token is in exactly one key tile (instances without queries included).
    /// </summary>
    public int[] KeyTiles { get; }

    public int NumKeyTiles => KeyTiles.Length / 4;

    /// <summary>[NumTiles, 4] = (first query row, end query row, first key token, end key token).</summary>
    public int[] Tiles { get; }

    public int NumTiles => Tiles.Length / 4;

    /// <summary>Query rows: all tokens (full layer) or the given query tokens (target layer).</summary>
    public int NumQueries { get; }

    public int TileSize { get; }

    /// <summary>
    /// Full layer (<paramref name="queryTokens"/> null: every token is a query) or target layer (the ascending token
    /// indices that are queries, e.g. the T tokens). <paramref name="offsets"/>: [instances + 1], starting at 0,
    /// non-decreasing (empty instances allowed).
    /// </summary>
    public static HstuAttentionPlan Build(ReadOnlySpan<int> offsets, int[]? queryTokens, int tileSize)
    {
        if (tileSize is < 1 or > 64)
            throw new ArgumentOutOfRangeException(nameof(tileSize), tileSize, "must be in [1, 64]");
        if (offsets.Length < 1 || offsets[0] != 0)
            throw new ArgumentException("offsets must start with 0", nameof(offsets));
        for (var i = 1; i < offsets.Length; i++)
            if (offsets[i] < offsets[i - 1])
                throw new ArgumentException($"offsets[{i}] = {offsets[i]} is below offsets[{i - 1}] = {offsets[i - 1]}", nameof(offsets));
        var tokens = offsets[^1];
        var numQueries = queryTokens?.Length ?? tokens;
        if (queryTokens is not null)
            for (var i = 0; i < queryTokens.Length; i++)
            {
                if ((uint)queryTokens[i] >= (uint)tokens)
                    throw new ArgumentOutOfRangeException(nameof(queryTokens), queryTokens[i],
                        $"queryTokens[{i}] is outside [0, {tokens})");
                if (i > 0 && queryTokens[i] <= queryTokens[i - 1])
                    throw new ArgumentException($"queryTokens must be strictly ascending (index {i})", nameof(queryTokens));
            }
        var tiles = new List<int>();
        var instance = 0;
        for (var r = 0; r < numQueries;)
        {
            var tok = queryTokens?[r] ?? r;
            while (offsets[instance + 1] <= tok)
                instance++;
            var end = r;
            while (end < numQueries && end - r < tileSize && (queryTokens?[end] ?? end) < offsets[instance + 1])
                end++;
            tiles.Add(r);
            tiles.Add(end);
            tiles.Add(offsets[instance]);
            tiles.Add(offsets[instance + 1]);
            r = end;
        }
        var keyTiles = new List<int>();
        var row = 0;
        for (var b = 0; b + 1 < offsets.Length; b++)
        {
            var qb = row;
            while (row < numQueries && (queryTokens?[row] ?? row) < offsets[b + 1])
                row++;
            for (var k0 = offsets[b]; k0 < offsets[b + 1]; k0 += tileSize)
            {
                keyTiles.Add(k0);
                keyTiles.Add(Math.Min(k0 + tileSize, offsets[b + 1]));
                keyTiles.Add(qb);
                keyTiles.Add(row);
            }
        }
        return new HstuAttentionPlan([.. tiles], [.. keyTiles], numQueries, tileSize);
    }
}
