using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Tests.Attention;

public class CpuHstuAttentionTests
{
    // Very different lengths: a 200-token instance, a 1-token instance (single T), empty R, an empty instance,
    // no T, H only, R and T without H. Times have R = R and R = T ties (see HstuTestBatch.Make).
    private static readonly (int, int, int)[] MixedSpecs =
        [(120, 50, 30), (0, 0, 1), (10, 0, 4), (3, 6, 5), (0, 0, 0), (7, 4, 0), (1, 0, 0), (5, 3, 1), (0, 5, 3)];

    public static TheoryData<int, int, bool, int, int, int, long> Configs => new()
    {
        { 4, 4, false, 20, 12, 32, 1 },
        { 4, 1, false, 20, 12, 32, 1 },
        { 4, 2, false, 32, 32, 32, 1 },
        { 4, 2, true, 20, 12, 32, 1 },
        { 4, 1, true, 32, 32, 32, 1 },
        { 4, 4, true, 7, 5, 8, 60 },
        { 2, 1, false, 7, 5, 6, 3600 },
        { 3, 3, false, 33, 17, 1, 1 },
    };

    private static HstuTestBatch Mixed(int h, int g, bool target, int dqk, int dv, int nb, long unit, int seed = 7)
        => HstuTestBatch.Make(seed, MixedSpecs, h, g, dqk, dv, target, nb, unit);

    [Theory]
    [MemberData(nameof(Configs))]
    public void ForwardMatchesDenseFloat64Reference(int h, int g, bool target, int dqk, int dv, int nb, long unit)
    {
        var b = Mixed(h, g, target, dqk, dv, nb, unit);
        var o = b.Forward(null);
        var want = HstuDenseReference.Forward(b, HstuDenseReference.Mask(b), HstuDenseReference.Inputs.From(b));
        AssertClose(o, b.Ldo, want, b.H * b.Dv, b.NumQueries, "O");
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void BackwardMatchesDenseFloat64Reference(int h, int g, bool target, int dqk, int dv, int nb, long unit)
    {
        var b = Mixed(h, g, target, dqk, dv, nb, unit);
        var (dq, dk, dvv, dr) = b.Backward(null);
        var (wq, wk, wv, wr) = HstuDenseReference.Backward(b, HstuDenseReference.Mask(b), HstuDenseReference.Inputs.From(b));
        AssertClose(dq, b.Ldq, wq, h * dqk, b.NumQueries, "dQ");
        AssertClose(dk, b.Ldk, wk, g * dqk, b.N, "dK");
        AssertClose(dvv, b.Ldv, wv, g * dv, b.N, "dV");
        AssertClose(dr, dr.Length, wr, dr.Length, 1, "dRab");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void HTokensInsideTheWindowFollowTheGeneralRule(bool target)
    {
        // H events later than some R events: H queries then see those R keys (and R/T keys with later times see H
        // keys with negative dt, i.e. future buckets).
        var b = HstuTestBatch.Make(21, MixedSpecs, 4, 2, 20, 12, target, hInsideWindow: true);
        var mask = HstuDenseReference.Mask(b);
        Assert.Contains(Enumerable.Range(0, b.N), q => b.Kind[q] == 0 && Enumerable.Range(0, b.N).Any(k => b.Kind[k] == 1 && mask[q, k]));
        var x = HstuDenseReference.Inputs.From(b);
        AssertClose(b.Forward(null), b.Ldo, HstuDenseReference.Forward(b, mask, x), b.H * b.Dv, b.NumQueries, "O");
        var (dq, dk, dv, dr) = b.Backward(null);
        var (wq, wk, wv, wr) = HstuDenseReference.Backward(b, mask, x);
        AssertClose(dq, b.Ldq, wq, b.H * b.Dqk, b.NumQueries, "dQ");
        AssertClose(dk, b.Ldk, wk, b.G * b.Dqk, b.N, "dK");
        AssertClose(dv, b.Ldv, wv, b.G * b.Dv, b.N, "dV");
        AssertClose(dr, dr.Length, wr, dr.Length, 1, "dRab");
    }

    [Theory]
    [InlineData(false, 4, 2)]
    [InlineData(true, 4, 2)]
    [InlineData(false, 2, 1)]
    [InlineData(true, 3, 3)]
    public void BackwardMatchesFiniteDifferences(bool target, int h, int g)
    {
        var b = HstuTestBatch.Make(11, [(2, 3, 2), (0, 0, 1), (3, 0, 2), (1, 4, 3)], h, g, 3, 2, target, numBuckets: 8, unit: 30);
        var (dq, dk, dv, dr) = b.Backward(null);
        var mask = HstuDenseReference.Mask(b);
        var x = HstuDenseReference.Inputs.From(b);
        CheckFd(b, mask, x, x.Q, dq, b.Ldq, h * b.Dqk, "dQ");
        CheckFd(b, mask, x, x.K, dk, b.Ldk, g * b.Dqk, "dK");
        CheckFd(b, mask, x, x.V, dv, b.Ldv, g * b.Dv, "dV");
        CheckFd(b, mask, x, x.Rab, dr, dr.Length, dr.Length, "dRab");
    }

    private static void CheckFd(HstuTestBatch b, bool[,] mask, HstuDenseReference.Inputs x, double[] p, float[] got, int ld, int width, string name)
    {
        const double eps = 1e-4;
        for (int i = 0; i < p.Length; i++)
        {
            double keep = p[i];
            p[i] = keep + eps;
            double lp = HstuDenseReference.Loss(b, mask, x);
            p[i] = keep - eps;
            double lm = HstuDenseReference.Loss(b, mask, x);
            p[i] = keep;
            double fd = (lp - lm) / (2 * eps);
            float g = got[i / width * ld + i % width];
            Assert.True(Math.Abs(g - fd) <= 2e-4 + 2e-3 * Math.Abs(fd), $"{name}[{i}]: kernel {g}, central difference {fd}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ResultsAreBitIdenticalForOneAndTwoThreads(bool target)
    {
        var b = Mixed(4, 2, target, 20, 12, 32, 1, seed: 3);
        using var p1 = new CpuWorkerPool(1);
        using var p2 = new CpuWorkerPool(2);
        using var p3 = new CpuWorkerPool(3);
        var o0 = b.Forward(null);
        var o1 = b.Forward(p1);
        var o2 = b.Forward(p2);
        Assert.Equal(o0, o1);
        Assert.Equal(o1, o2);
        Assert.Equal(o2, b.Forward(p3));
        var g1 = b.Backward(p1);
        var g2 = b.Backward(p2);
        var g0 = b.Backward(null);
        Assert.Equal(g1.dQ, g2.dQ); Assert.Equal(g1.dK, g2.dK); Assert.Equal(g1.dV, g2.dV); Assert.Equal(g1.dRab, g2.dRab);
        Assert.Equal(g0.dQ, g2.dQ); Assert.Equal(g0.dK, g2.dK); Assert.Equal(g0.dV, g2.dV); Assert.Equal(g0.dRab, g2.dRab);
        var g3 = b.Backward(p3);
        Assert.Equal(g3.dQ, g2.dQ); Assert.Equal(g3.dK, g2.dK); Assert.Equal(g3.dV, g2.dV); Assert.Equal(g3.dRab, g2.dRab);
        // Same call twice: same bits.
        Assert.Equal(o2, b.Forward(p2));
    }

    /// <summary>
    /// Hand-made instance: H@50, H@10 (unsorted H is allowed), R@100, R@200, R@200, R@300, T@200, T@300, T@300.
    /// Which outputs change when one key's V row changes must be exactly the spec's visibility.
    /// </summary>
    [Fact]
    public void InfluenceFollowsTheSpecVisibilityRule()
    {
        var b = HstuTestBatch.Make(5, [(2, 4, 3)], 2, 1, 4, 3, false);
        b.Time = [50, 10, 100, 200, 200, 300, 200, 300, 300];
        // visible[q][k] written by hand from §4.
        int[][] visible =
        [
            [0, 1], [0, 1],             // H sees H only (R is later)
            [0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 4], [0, 1, 2, 3, 4, 5], // R: strictly earlier R, itself
            [0, 1, 2, 6], [0, 1, 2, 3, 4, 7], [0, 1, 2, 3, 4, 8],       // T@200 must not see R@200; T sees only itself
        ];
        var baseO = b.Forward(null);
        for (int k = 0; k < b.N; k++)
        {
            float keep = b.V[k * b.Ldv];
            b.V[k * b.Ldv] = keep + 1f;
            var o = b.Forward(null);
            b.V[k * b.Ldv] = keep;
            for (int q = 0; q < b.N; q++)
            {
                bool changed = false;
                for (int c = 0; c < b.H * b.Dv; c++) changed |= o[q * b.Ldo + c] != baseO[q * b.Ldo + c];
                Assert.True(changed == visible[q].Contains(k), $"query {q}, key {k}: changed = {changed}");
            }
        }
    }

    [Fact]
    public void TargetRowsAreNeverReadByOtherQueries()
    {
        var b = Mixed(4, 2, false, 20, 12, 32, 1, seed: 9);
        // Poison the K and V rows of one T token of the long instance: only that token's own output may turn NaN.
        int poisoned = Enumerable.Range(0, b.N).First(t => b.Kind[t] == 2);
        for (int c = 0; c < b.G * b.Dqk; c++) b.K[poisoned * b.Ldk + c] = float.NaN;
        for (int c = 0; c < b.G * b.Dv; c++) b.V[poisoned * b.Ldv + c] = float.NaN;
        var o = b.Forward(null);
        var (dq, dk, dv, _) = b.Backward(null);
        for (int q = 0; q < b.N; q++)
        {
            for (int c = 0; c < b.H * b.Dv; c++)
                Assert.True(float.IsNaN(o[q * b.Ldo + c]) == (q == poisoned), $"O[{q},{c}] = {o[q * b.Ldo + c]}");
            for (int c = 0; c < b.H * b.Dqk; c++)
                Assert.True(float.IsNaN(dq[q * b.Ldq + c]) == (q == poisoned), $"dQ[{q},{c}] = {dq[q * b.Ldq + c]}");
            if (q == poisoned) continue;
            for (int c = 0; c < b.G * b.Dqk; c++) Assert.False(float.IsNaN(dk[q * b.Ldk + c]), $"dK[{q},{c}]");
            for (int c = 0; c < b.G * b.Dv; c++) Assert.False(float.IsNaN(dv[q * b.Ldv + c]), $"dV[{q},{c}]");
        }
    }

    [Fact]
    public void KeysNobodySeesGetZeroGradientInTheTargetLayer()
    {
        var b = Mixed(4, 1, true, 8, 8, 32, 1, seed: 13);
        var (_, dk, dv, _) = b.Backward(null);
        var mask = HstuDenseReference.Mask(b);
        for (int t = 0; t < b.N; t++)
        {
            bool seen = b.Queries!.Any(q => mask[q, t]);
            if (seen) continue;
            for (int c = 0; c < b.G * b.Dqk; c++) Assert.Equal(0f, dk[t * b.Ldk + c]);
            for (int c = 0; c < b.G * b.Dv; c++) Assert.Equal(0f, dv[t * b.Ldv + c]);
        }
    }

    [Fact]
    public void TargetLayerWithoutTargetsWritesZeroGradients()
    {
        var b = HstuTestBatch.Make(4, [(5, 3, 0), (2, 0, 0)], 4, 2, 8, 8, true);
        Assert.Empty(b.Queries!);
        var o = b.Forward(null);
        Assert.Empty(o);
        var (dq, dk, dv, dr) = b.Backward(null);
        Assert.Empty(dq);
        for (int t = 0; t < b.N; t++)
        {
            for (int c = 0; c < b.G * b.Dqk; c++) Assert.Equal(0f, dk[t * b.Ldk + c]);
            for (int c = 0; c < b.G * b.Dv; c++) Assert.Equal(0f, dv[t * b.Ldv + c]);
        }
        Assert.All(dr, x => Assert.Equal(0f, x));
    }

    [Fact]
    public void EmptyBatchIsANoOp()
    {
        var b = HstuTestBatch.Make(4, [], 2, 1, 4, 4, false);
        Assert.Equal(0, b.N);
        Assert.Empty(b.Forward(null));
        var (_, _, _, dr) = b.Backward(null);
        Assert.All(dr, x => Assert.Equal(0f, x));
    }

    [Fact]
    public void VisiblePairCountMatchesTheDenseMask()
    {
        foreach (bool target in new[] { false, true })
        {
            var b = Mixed(4, 2, target, 8, 8, 32, 1);
            var mask = HstuDenseReference.Mask(b);
            long want = 0;
            for (int i = 0; i < b.NumQueries; i++)
                for (int k = 0; k < b.N; k++) if (mask[b.QueryToken(i), k]) want++;
            long got;
            unsafe
            {
                fixed (int* off = b.Offsets) fixed (byte* kd = b.Kind) fixed (long* tm = b.Time) fixed (int* qt = b.Queries)
                    got = CpuHstuAttention.CountVisiblePairs(b.Args(off, kd, tm, qt));
            }
            Assert.Equal(want, got);
        }
    }

    /// <summary>Compares a strided float result with a dense double reference; pad columns must be untouched.</summary>
    private static void AssertClose(float[] got, int ld, double[] want, int width, int rows, string name)
    {
        double scale = 1;
        foreach (double w in want) scale = Math.Max(scale, Math.Abs(w));
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < ld; c++)
            {
                float g = got[r * ld + c];
                if (c >= width)
                {
                    Assert.True(g == HstuTestBatch.Sentinel, $"{name}[{r},{c}] is a pad column but was written ({g})");
                    continue;
                }
                double w = want[r * width + c];
                Assert.True(Math.Abs(g - w) <= 2e-5 * scale + 1e-4 * Math.Abs(w), $"{name}[{r},{c}]: kernel {g}, reference {w}");
            }
        }
    }
}
