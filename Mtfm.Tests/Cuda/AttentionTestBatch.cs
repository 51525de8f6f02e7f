namespace Mtfm.Tests.Cuda;

/// <summary>
/// A jagged batch of token metadata for the attention kernel tests (instance offsets, kinds 0 = H, 1 = R, 2 = T, and
/// times), with the spec's visibility rule and time bucket written directly (§4–5), independent of the kernels.
/// </summary>
internal sealed record AttentionTestBatch(int[] Offsets, int[] Kinds, long[] Times)
{
    /// <summary>counts per instance: (H, R, T); H before the window, R/T inside it with deliberate timestamp ties.</summary>
    public static AttentionTestBatch Make(Random rng, (int H, int R, int T)[] counts)
    {
        var offsets = new List<int> { 0 };
        var kinds = new List<int>();
        var times = new List<long>();
        foreach (var (h, r, t) in counts)
        {
            foreach (var (kind, n, lo, hi) in new[] { (0, h, 100_000L, 1_000_000L), (1, r, 1_000_000L, 1_000_040L), (2, t, 1_000_000L, 1_000_040L) })
                foreach (var x in Enumerable.Range(0, n).Select(_ => rng.NextInt64(lo, hi)).Order())
                {
                    kinds.Add(kind);
                    times.Add(x);
                }
            offsets.Add(kinds.Count);
        }
        return new AttentionTestBatch([.. offsets], [.. kinds], [.. times]);
    }

    /// <summary>visible(q, k): H keys always; R keys if k is q or strictly earlier; T keys only k == q.</summary>
    public bool Visible(int q, int k) => Kinds[k] switch
    {
        0 => true,
        1 => k == q || Times[k] < Times[q],
        _ => k == q,
    };

    public static int Bucket(long dt, int nb, long unit)
    {
        if (dt == 0)
            return 0;
        // spec: m(dt) = min(NB - 1, 1 + floor(log2(1 + |dt| / unit))); 1 + floor(|dt| / unit) crosses a power of two
        // exactly where 1 + |dt| / unit does, so the integer form used by the kernel is the same function.
        var a = Math.Abs(dt) / unit;
        var lg = 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)(a + 1));
        var m = Math.Min(nb - 1, 1 + lg);
        return dt > 0 ? m : nb - 1 + m;
    }
}
