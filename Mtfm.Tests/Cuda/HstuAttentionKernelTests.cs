using Mtfm.Engine.Backends.Cuda;
using static Mtfm.Tests.Cuda.CudaTestDevice;

namespace Mtfm.Tests.Cuda;

/// <summary>The fused jagged HSTU attention forward against a direct O(N²) reference of spec §4–5.</summary>
public sealed class HstuAttentionKernelTests
{
    private static float[] Reference(AttentionTestBatch b, int[] queryTokens, float[] q, float[] k, float[] v, float[]? rab, int h,
        int g, int dqk, int dv, int nb, long unit, float alpha)
    {
        var outp = new float[queryTokens.Length * h * dv];
        for (var r = 0; r < queryTokens.Length; r++)
        {
            var qt = queryTokens[r];
            var inst = Array.FindLastIndex(b.Offsets, o => o <= qt);
            while (b.Offsets[inst + 1] <= qt)
                inst++;
            for (var hd = 0; hd < h; hd++)
            {
                var kv = hd / (h / g);
                var n = 0;
                var acc = new double[dv];
                for (var kt = b.Offsets[inst]; kt < b.Offsets[inst + 1]; kt++)
                {
                    if (!b.Visible(qt, kt))
                        continue;
                    n++;
                    var dot = 0f;
                    for (var c = 0; c < dqk; c++)
                        dot += q[(r * h + hd) * dqk + c] * k[(kt * g + kv) * dqk + c];
                    var s = alpha * dot + (rab is null ? 0f : rab[hd * (2 * nb - 1) + AttentionTestBatch.Bucket(b.Times[qt] - b.Times[kt], nb, unit)]);
                    var a = s / (1f + MathF.Exp(-s));
                    for (var c = 0; c < dv; c++)
                        acc[c] += a * v[(kt * g + kv) * dv + c];
                }
                for (var c = 0; c < dv; c++)
                    outp[(r * h + hd) * dv + c] = (float)(acc[c] / Math.Max(n, 1));
            }
        }
        return outp;
    }

    [Theory]
    [InlineData(Emulated, false, 3, 1, 16, 16, true)]
    [InlineData(Emulated, true, 3, 1, 16, 16, true)]
    [InlineData(Emulated, false, 4, 2, 9, 7, true)]
    [InlineData(Emulated, true, 4, 4, 200, 130, false)]
    [InlineData(Gpu, false, 3, 1, 16, 16, true)]
    [InlineData(Gpu, true, 3, 1, 16, 16, true)]
    [InlineData(Gpu, false, 4, 2, 9, 7, true)]
    [InlineData(Gpu, true, 4, 4, 200, 130, false)]
    public void MatchesTheDirectReference(string kind, bool targetOnly, int h, int g, int dqk, int dv, bool withRab)
    {
        using var dev = Open(kind);
        var rng = new Random(11 + h * 7 + dqk);
        var batch = AttentionTestBatch.Make(rng, [(5, 7, 9), (0, 0, 0), (40, 3, 37), (1, 0, 1), (0, 6, 2), (3, 2, 0)]);
        const int nb = 8;
        const long unit = 2;
        var alpha = 1f / MathF.Sqrt(dqk);
        var tokens = batch.Kinds.Length;
        var queryTokens = targetOnly
            ? Enumerable.Range(0, tokens).Where(t => batch.Kinds[t] == 2).ToArray()
            : Enumerable.Range(0, tokens).ToArray();
        var tile = CudaOps.HstuAttentionTileSize(dqk, dv);
        var plan = HstuAttentionPlan.Build(batch.Offsets, targetOnly ? queryTokens : null, tile);
        var q = RandomFloats(rng, queryTokens.Length * h * dqk, -1, 1);
        var k = RandomFloats(rng, tokens * g * dqk, -1, 1);
        var v = RandomFloats(rng, tokens * g * dv, -1, 1);
        var rab = RandomFloats(rng, h * (2 * nb - 1), -0.5f, 0.5f);
        var want = Reference(batch, queryTokens, q, k, v, withRab ? rab : null, h, g, dqk, dv, nb, unit, alpha);
        ulong pq = dev.Up(q), pk = dev.Up(k), pv = dev.Up(v), prab = dev.Up(rab), pkinds = dev.Up(batch.Kinds),
            ptimes = dev.Up(batch.Times), pqt = dev.Up(queryTokens), ptiles = dev.Up(plan.Tiles),
            pout = dev.Up(Enumerable.Repeat(-7f, want.Length).ToArray());
        dev.Ops.HstuAttentionForward(pq, pk, pv, withRab ? prab : 0, pkinds, ptimes, targetOnly ? pqt : 0, ptiles, plan,
            pout, h, g, dqk, dv, nb, unit, alpha, dev.Stream);
        AssertClose(want, dev.Down<float>(pout, want.Length), 2e-4f, 2e-5f, $"hstu attention target={targetOnly}");
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void InvisibleTilesAreNeverRead(string kind)
    {
        // Target layer, tile size 1 (dqk = dv = 2000 forces it): an R key later than every T token is invisible to all
        // queries, so its tile must be skipped. Its K and V are NaN: reading them would turn outputs into NaN (0·NaN).
        using var dev = Open(kind);
        const int dqk = 2000, dv = 2000, h = 1, g = 1, nb = 4;
        Assert.Equal(1, CudaOps.HstuAttentionTileSize(dqk, dv));
        int[] kinds = [0, 0, 1, 1, 2, 2];
        long[] times = [10, 20, 100, 500, 200, 300]; // R at 500 is after both T tokens
        var rng = new Random(12);
        var k = RandomFloats(rng, 6 * dqk, -1, 1);
        var v = RandomFloats(rng, 6 * dv, -1, 1);
        for (var c = 0; c < dqk; c++)
            k[3 * dqk + c] = float.NaN;
        for (var c = 0; c < dv; c++)
            v[3 * dv + c] = float.NaN;
        int[] queryTokens = [4, 5];
        var q = RandomFloats(rng, 2 * dqk, -0.05f, 0.05f);
        var plan = HstuAttentionPlan.Build([0, 6], queryTokens, 1);
        Assert.Equal(2, plan.NumTiles);
        ulong pq = dev.Up(q), pk = dev.Up(k), pv = dev.Up(v), pkinds = dev.Up(kinds), ptimes = dev.Up(times),
            pqt = dev.Up(queryTokens), ptiles = dev.Up(plan.Tiles), pout = dev.Zeros<float>(2 * dv);
        dev.Ops.HstuAttentionForward(pq, pk, pv, 0, pkinds, ptimes, pqt, ptiles, plan, pout, h, g, dqk, dv, nb, 1,
            1f / MathF.Sqrt(dqk), dev.Stream);
        var got = dev.Down<float>(pout, 2 * dv);
        Assert.All(got, x => Assert.True(float.IsFinite(x)));
        var batch = new AttentionTestBatch([0, 6], kinds, times);
        var want = Reference(batch, queryTokens, q, k, v, null, h, g, dqk, dv, nb, 1, 1f / MathF.Sqrt(dqk));
        AssertClose(want, got, 2e-4f, 2e-5f, "attention with an invisible NaN key");
    }

    [Fact]
    public void PlanGroupsQueriesPerInstanceAndRejectsBadInput()
    {
        var plan = HstuAttentionPlan.Build([0, 3, 3, 10], null, 4);
        Assert.Equal(new[] { 0, 3, 0, 3, 3, 7, 3, 10, 7, 10, 3, 10 }, plan.Tiles);
        var target = HstuAttentionPlan.Build([0, 3, 3, 10], [2, 8, 9], 4);
        Assert.Equal(new[] { 0, 1, 0, 3, 1, 3, 3, 10 }, target.Tiles);
        Assert.Throws<ArgumentException>(() => HstuAttentionPlan.Build([1, 3], null, 4));
        Assert.Throws<ArgumentException>(() => HstuAttentionPlan.Build([0, 3, 2], null, 4));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => HstuAttentionPlan.Build([0, 3], [5], 4));
        Assert.Equal("queryTokens", e.ParamName);
        Assert.Throws<ArgumentException>(() => HstuAttentionPlan.Build([0, 3], [2, 1], 4));
    }

    [Theory]
    [InlineData(0L, 0)]
    [InlineData(1L, 1)]   // |dt|/unit = 0.5 -> 1 + floor(log2 1.5) = 1
    [InlineData(2L, 2)]   // 1 -> 1 + floor(log2 2) = 2
    [InlineData(5L, 2)]   // 2.5 -> 1 + floor(log2 3.5) = 2
    [InlineData(6L, 3)]   // 3 -> 1 + floor(log2 4) = 3
    [InlineData(-2L, 9)]  // NB - 1 + 2
    [InlineData(1_000_000_000L, 7)] // capped at NB - 1
    public void TimeBucketsOfTheReferenceAndTheEngineAgree(long dt, int expected)
    {
        // the kernel tests' reference bucket and the engine's (which the CPU backend and the kernels' tests compare against)
        Assert.Equal(expected, AttentionTestBatch.Bucket(dt, 8, 2));
        Assert.Equal(expected, Mtfm.Engine.Backends.Cpu.HstuAttentionTimeBucket.Bucket(5_000_000_000 + dt, 5_000_000_000, 8, 2));
    }
}
