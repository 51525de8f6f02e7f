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

    /// <summary>Frees <see cref="DeviceCache"/>.</summary>
    public void Dispose()
    {
        DeviceCache?.Dispose();
        DeviceCache = null;
    }
}
