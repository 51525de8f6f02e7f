using System.Numerics;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// The relative-time bucket of HSTU attention (spec §5): with dt = time(q) − time(k) in seconds,
/// m(dt) = min(NB−1, 1 + floor(log2(1 + |dt|/unit))); bucket = 0 for dt = 0, m(dt) for dt &gt; 0 (key in the past),
/// NB − 1 + m(dt) for dt &lt; 0 (key in the future). The table therefore has 2·NB − 1 entries.
/// </summary>
/// <remarks>
/// Exact for every pair of <see cref="long"/> times: |dt| is formed in unsigned 64-bit arithmetic (no overflow even for
/// long.MinValue vs long.MaxValue) and floor(log2(1 + |dt|/unit)) = floor(log2(1 + floor(|dt|/unit))) is taken with an
/// integer leading-zero count, so no floating-point rounding can move a bucket boundary.
/// </remarks>
internal static class HstuAttentionTimeBucket
{
    /// <summary>Default number of buckets per direction (NB).</summary>
    public const int DefaultNumBuckets = 32;

    /// <summary>Default bucket unit in seconds.</summary>
    public const long DefaultUnitSeconds = 1;

    /// <summary>Largest accepted NB (bucket ids must fit a byte: 2·NB − 1 ≤ 255).</summary>
    public const int MaxNumBuckets = 128;

    /// <summary>Entries of the rab table per head: 2·NB − 1.</summary>
    public static int TableSize(int numBuckets) => 2 * numBuckets - 1;

    /// <summary>
    /// Bucket of the pair (query at <paramref name="timeQuery"/>, key at <paramref name="timeKey"/>), in
    /// [0, 2·<paramref name="numBuckets"/> − 1). Arguments are not validated here (hot path); see
    /// <see cref="HstuAttentionArgs.Validate"/>.
    /// </summary>
    public static int Bucket(long timeQuery, long timeKey, int numBuckets, long unitSeconds)
    {
        if (timeQuery == timeKey) return 0;
        bool past = timeQuery > timeKey;
        ulong mag = past ? (ulong)timeQuery - (ulong)timeKey : (ulong)timeKey - (ulong)timeQuery;
        ulong x = unitSeconds == 1 ? mag : mag / (ulong)unitSeconds; // floor(|dt| / unit)
        int lg = x == ulong.MaxValue ? 64 : 63 - BitOperations.LeadingZeroCount(x + 1); // floor(log2(1 + x))
        int m = Math.Min(numBuckets - 1, 1 + lg);
        return past ? m : numBuckets - 1 + m;
    }
}
