using System.Numerics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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

    /// <summary>
    /// dst[j] = Bucket(timeQuery, timeKeys[j]) for j &lt; n. Vectorised for unit = 2^k: 16 lanes in 32 bits (floor(log2) by
    /// a leading-zero count) while |dt| &lt; 2^31 − 1 and k &lt; 32; else 8 lanes where |dt| &gt;&gt; k + 1 is converted to
    /// double (exact below 2^53) and floor(log2) read from the exponent; lanes that overflow 64-bit dt or reach 2^52 fall
    /// back to the scalar <see cref="Bucket"/>, so the result always equals it.
    /// </summary>
    public static unsafe void BucketRow(long timeQuery, long* timeKeys, int n, int numBuckets, long unitSeconds, int* dst)
    {
        int j = 0;
        if (BitOperations.IsPow2(unitSeconds))
        {
            int shift = BitOperations.Log2((ulong)unitSeconds);
            if (Vector512.IsHardwareAccelerated && Avx512CD.IsSupported && shift < 32)
            {
                // 16 lanes at a time in 32 bits while every |dt| of the 16 fits (the usual case: keys within 68 years):
                // floor(log2 x) from the leading-zero count, exact.
                var tq = Vector512.Create(timeQuery);
                var off = Vector512.Create((long)int.MaxValue);
                var span = Vector512.Create(2UL * int.MaxValue);
                var nbm1 = Vector512.Create(numBuckets - 1);
                var thirtyTwo = Vector512.Create(32);
                for (; j + 16 <= n; j += 16)
                {
                    var tk0 = Vector512.Load(timeKeys + j);
                    var tk1 = Vector512.Load(timeKeys + j + 8);
                    var dt0 = tq - tk0;
                    var dt1 = tq - tk1;
                    var overflow = ((tq ^ tk0) & (tq ^ dt0)) | ((tq ^ tk1) & (tq ^ dt1));
                    var wide = Vector512.GreaterThan((dt0 + off).AsUInt64(), span) | Vector512.GreaterThan((dt1 + off).AsUInt64(), span);
                    if ((Vector512.LessThan(overflow, Vector512<long>.Zero).AsUInt64() | wide) != Vector512<ulong>.Zero) break;
                    var dt = Vector512.Narrow(dt0, dt1);
                    var x = Vector512.ShiftRightLogical(Vector512.Abs(dt).AsUInt32(), shift) + Vector512<uint>.One;
                    var lg1 = thirtyTwo - Avx512CD.LeadingZeroCount(x).AsInt32(); // 1 + floor(log2 x)
                    var m = Vector512.Min(lg1, nbm1);
                    var bkt = Vector512.ConditionalSelect(Vector512.LessThan(dt, Vector512<int>.Zero), m + nbm1, m);
                    Vector512.ConditionalSelect(Vector512.Equals(dt, Vector512<int>.Zero), Vector512<int>.Zero, bkt).Store(dst + j);
                }
            }
            if (Vector512.IsHardwareAccelerated)
            {
                var tq = Vector512.Create(timeQuery);
                var limit = Vector512.Create(1L << 52);
                var nbm1 = Vector512.Create((long)numBuckets - 1);
                var bias = Vector512.Create(1023L - 1);
                for (; j + 8 <= n; j += 8)
                {
                    var tk = Vector512.Load(timeKeys + j);
                    var dt = tq - tk;
                    var mag = Vector512.Abs(dt);
                    var bad = Vector512.GreaterThanOrEqual(mag.AsUInt64(), limit.AsUInt64()).AsInt64() | Vector512.LessThan((tq ^ tk) & (tq ^ dt), Vector512<long>.Zero);
                    if (bad != Vector512<long>.Zero)
                    {
                        for (int l = 0; l < 8; l++) dst[j + l] = Bucket(timeQuery, timeKeys[j + l], numBuckets, unitSeconds);
                        continue;
                    }
                    var x = Vector512.ShiftRightLogical(mag, shift) + Vector512<long>.One;
                    var lg1 = Vector512.ShiftRightLogical(Vector512.ConvertToDouble(x).AsInt64(), 52) - bias; // 1 + floor(log2 x)
                    var m = Vector512.Min(lg1, nbm1);
                    var bkt = Vector512.ConditionalSelect(Vector512.LessThan(dt, Vector512<long>.Zero), m + nbm1, m);
                    bkt = Vector512.ConditionalSelect(Vector512.Equals(dt, Vector512<long>.Zero), Vector512<long>.Zero, bkt);
                    Vector256<int> narrowed = Vector256.Narrow(bkt.GetLower(), bkt.GetUpper());
                    narrowed.Store(dst + j);
                }
            }
            if (Vector256.IsHardwareAccelerated)
            {
                var tq = Vector256.Create(timeQuery);
                var limit = Vector256.Create(1L << 52);
                var nbm1 = Vector256.Create((long)numBuckets - 1);
                var bias = Vector256.Create(1023L - 1);
                for (; j + 4 <= n; j += 4)
                {
                    var tk = Vector256.Load(timeKeys + j);
                    var dt = tq - tk;
                    var mag = Vector256.Abs(dt);
                    var bad = Vector256.GreaterThanOrEqual(mag.AsUInt64(), limit.AsUInt64()).AsInt64() | Vector256.LessThan((tq ^ tk) & (tq ^ dt), Vector256<long>.Zero);
                    if (bad != Vector256<long>.Zero)
                    {
                        for (int l = 0; l < 4; l++) dst[j + l] = Bucket(timeQuery, timeKeys[j + l], numBuckets, unitSeconds);
                        continue;
                    }
                    var x = Vector256.ShiftRightLogical(mag, shift) + Vector256<long>.One;
                    var lg1 = Vector256.ShiftRightLogical(Vector256.ConvertToDouble(x).AsInt64(), 52) - bias;
                    var m = Vector256.Min(lg1, nbm1);
                    var bkt = Vector256.ConditionalSelect(Vector256.LessThan(dt, Vector256<long>.Zero), m + nbm1, m);
                    bkt = Vector256.ConditionalSelect(Vector256.Equals(dt, Vector256<long>.Zero), Vector256<long>.Zero, bkt);
                    Vector128<int> narrowed = Vector128.Narrow(bkt.GetLower(), bkt.GetUpper());
                    narrowed.Store(dst + j);
                }
            }
        }
        for (; j < n; j++) dst[j] = Bucket(timeQuery, timeKeys[j], numBuckets, unitSeconds);
    }
}
