using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Tests.Gemm;

/// <summary>CpuGemm.Sgemm against a float64 reference: all kernels, transposes, padding, alpha/beta, thread counts.</summary>
public sealed unsafe class CpuGemmTests : IDisposable
{
    private readonly CpuWorkerPool _pool2 = new(2);
    private readonly CpuWorkerPool _pool1 = new(1);

    public void Dispose()
    {
        _pool1.Dispose();
        _pool2.Dispose();
    }

    public static TheoryData<int, int, int> Sizes => new()
    {
        { 1, 1, 1 }, { 3, 5, 7 }, { 17, 33, 65 }, { 129, 257, 31 }, { 0, 5, 7 }, { 5, 0, 7 }, { 5, 7, 0 },
        { 4, 100, 9 }, { 100, 8, 9 }, { 13, 17, 19 },
        { 37, 45, 600 },   // several KC blocks
        { 300, 40, 70 },   // several MC blocks, parallel split over rows
        { 25, 2100, 12 },  // several NC blocks, parallel split over columns
        { 77, 13, 40 },    // narrow C: the tall, narrow AVX-512 tile
        { 530, 16, 70 },   // narrow C, several MC blocks, parallel
        { 3000, 5, 40 },   // direct dot form (few columns), parallel over rows
        { 2, 5000, 60 },   // direct path with few rows, parallel over column strips
        { 64, 64, 1100 },  // Aᵀ·B read in place (weight gradient): full tiles, several KC blocks, parallel
        { 50, 16, 700 },   // in place with the narrow tile and a partial row panel
        { 40, 24, 1030 },  // in place, summed as two k halves (k ≥ 1024), k/2 rounded down to 16
    };

    [Theory]
    [MemberData(nameof(Sizes))]
    public void MatchesReferenceForEveryKernelTransposeAndThreadCount(int m, int n, int k)
    {
        foreach (var isa in GemmReference.SupportedIsas)
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    foreach (var pool in new[] { null, _pool1, _pool2 })
                        Check(pool, isa, ta, tb, m, n, k, 1.5f, -0.75f, padA: 3, padB: 5, padC: 2, seed: m * 31 + n * 7 + k);
    }

    [Theory]
    [InlineData(1f, 0f)]
    [InlineData(2.5f, 0f)]
    [InlineData(-1f, 1f)]
    [InlineData(0.5f, -2f)]
    [InlineData(0f, 0.5f)]
    [InlineData(0f, 0f)]
    [InlineData(1f, 1f)]
    public void AlphaBetaCombinations(float alpha, float beta)
    {
        foreach (var isa in GemmReference.SupportedIsas)
            foreach (var (m, n, k) in new[] { (3, 5, 7), (40, 70, 300), (2, 50, 5) })
                Check(_pool2, isa, false, true, m, n, k, alpha, beta, padA: 1, padB: 0, padC: 4, seed: 11);
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(3, 5, 7)]
    [InlineData(65, 129, 300)]
    [InlineData(300, 40, 70)]
    public void BetaZeroIgnoresNaNAndInfinityInC(int m, int n, int k)
    {
        foreach (var isa in GemmReference.SupportedIsas)
        {
            foreach (var pool in new[] { null, _pool2 })
            {
                var a = GemmReference.Random(m * k, 1);
                var b = GemmReference.Random(k * n, 2);
                var c = new float[m * n];
                for (int i = 0; i < c.Length; i++) c[i] = i % 3 == 0 ? float.NaN : i % 3 == 1 ? float.PositiveInfinity : float.NegativeInfinity;
                var (e, bound) = GemmReference.Compute(false, false, m, n, k, 1f, a, k, b, n, 0f, c, n);
                var before = (float[])c.Clone();
                GemmReference.Run(pool, isa, false, false, m, n, k, 1f, a, k, b, n, 0f, c, n);
                GemmReference.AssertClose(e, bound, c, before, m, n, n, $"{isa} beta=0 NaN C");
            }
        }
    }

    [Fact]
    public void NaNInInputsPropagates()
    {
        var a = GemmReference.Random(40 * 50, 3);
        var b = GemmReference.Random(50 * 60, 4);
        a[5 * 50 + 7] = float.NaN; // row 5 of A
        var c = new float[40 * 60];
        GemmReference.Run(_pool2, GemmIsaSupport.Best, false, false, 40, 60, 50, 1f, a, 50, b, 60, 0f, c, 60);
        for (int i = 0; i < 40; i++)
            for (int j = 0; j < 60; j++)
                Assert.Equal(i == 5, float.IsNaN(c[i * 60 + j]));
    }

    [Theory]
    [InlineData(129, 257, 31)]
    [InlineData(300, 40, 70)]
    [InlineData(25, 2100, 12)]
    [InlineData(1000, 300, 513)]
    [InlineData(3, 500, 700)]
    [InlineData(530, 16, 70)]
    [InlineData(200, 11, 1100)]
    [InlineData(4000, 3, 90)]
    [InlineData(2, 5000, 70)]
    public void ResultIsBitIdenticalForOneAndTwoThreads(int m, int n, int k)
    {
        using var pool3 = new CpuWorkerPool(3);
        foreach (var isa in GemmReference.SupportedIsas)
        {
            foreach (bool ta in new[] { false, true })
            {
                foreach (bool tb in new[] { false, true })
                {
                    int lda = ta ? m : k, ldb = tb ? k : n;
                    var a = GemmReference.Random(ta ? k * m : m * k, 5);
                    var b = GemmReference.Random(tb ? n * k : k * n, 6);
                    var c0 = GemmReference.Random(m * n, 7);
                    var c1 = (float[])c0.Clone();
                    var c2 = (float[])c0.Clone();
                    var c3 = (float[])c0.Clone();
                    fixed (float* pa = a, pb = b, p0 = c0)
                    {
                        if (isa == GemmIsaSupport.Best) CpuGemm.Sgemm(ta, tb, m, n, k, 0.7f, pa, lda, pb, ldb, 0.3f, p0, n);
                        else CpuGemm.Sgemm(null, isa, ta, tb, m, n, k, 0.7f, pa, lda, pb, ldb, 0.3f, p0, n);
                    }
                    GemmReference.Run(_pool1, isa, ta, tb, m, n, k, 0.7f, a, lda, b, ldb, 0.3f, c1, n);
                    GemmReference.Run(_pool2, isa, ta, tb, m, n, k, 0.7f, a, lda, b, ldb, 0.3f, c2, n);
                    GemmReference.Run(pool3, isa, ta, tb, m, n, k, 0.7f, a, lda, b, ldb, 0.3f, c3, n);
                    Assert.True(c0.AsSpan().SequenceEqual(c1), $"{isa} {ta}/{tb}: pool(1) differs from single-threaded");
                    Assert.True(c0.AsSpan().SequenceEqual(c2), $"{isa} {ta}/{tb}: pool(2) differs from single-threaded");
                    Assert.True(c0.AsSpan().SequenceEqual(c3), $"{isa} {ta}/{tb}: pool(3) differs from single-threaded");
                }
            }
        }
    }

    /// <summary>
    /// A long-k Aᵀ·B is the first ⌊k/2⌋ (rounded down to 16) rows into C with beta, the rest into a partial, then
    /// C += partial: bit for bit the same with no pool, one thread and two, whatever C held where beta is 0.
    /// </summary>
    [Theory]
    [InlineData(128, 64, 11264, 0, 0, 0)]
    [InlineData(37, 45, 1030, 3, 5, 2)]
    public void LongKAᵀBIsTwoHalvesAddedInOneOrderOnAnyPool(int m, int n, int k, int padA, int padB, int padC)
    {
        if (!GemmIsaSupport.IsSupported(GemmIsa.Avx512))
            Assert.Skip("AVX-512 is not supported on this CPU: the in-place path exists only for its micro-kernels.");
        var bl = GemmBlocking.For(GemmIsa.Avx512, n);
        Assert.True(CpuGemm.KSplit(in bl, transA: true, transB: false, m, n, k));
        Assert.False(CpuGemm.KSplit(in bl, transA: true, transB: false, m, n, CpuGemm.KSplitMinK - 1));
        Assert.False(CpuGemm.KSplit(in bl, transA: false, transB: false, m, n, k));
        int lda = m + padA, ldb = n + padB, ldc = n + padC, k0 = (k / 2) & ~15;
        var a = GemmReference.Random(k * lda, 21);
        var b = GemmReference.Random(k * ldb, 22);
        foreach (float beta in new[] { 0f, 0.5f })
        {
            var start = GemmReference.Random(m * ldc, 23);
            if (beta == 0) start[0] = float.NaN; // ignored where beta is 0
            var want = (float[])start.Clone();
            var part = new float[m * n];
            fixed (float* pa = a, pb = b, pw = want, pp = part)
            {
                CpuGemm.Packed(in bl, true, false, m, n, k0, -1.25f, pa, lda, pb, ldb, beta, pw, ldc);
                CpuGemm.Packed(in bl, true, false, m, n, k - k0, -1.25f, pa + (long)k0 * lda, lda, pb + (long)k0 * ldb, ldb, 0f, pp, n);
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) pw[i * ldc + j] += pp[i * n + j];
            }
            foreach (var pool in new[] { null, _pool1, _pool2 })
            {
                var got = (float[])start.Clone();
                fixed (float* pa = a, pb = b, pg = got)
                    CpuGemm.Sgemm(pool, GemmIsa.Avx512, true, false, m, n, k, -1.25f, pa, lda, pb, ldb, beta, pg, ldc);
                Assert.True(want.AsSpan().SequenceEqual(got), $"beta {beta}, pool {pool?.ThreadCount.ToString() ?? "none"}: differs from the two halves");
            }
        }
    }

    [Theory]
    [InlineData(64, 64, 4020, 0, 0, 0)]
    [InlineData(37, 45, 600, 3, 5, 2)]   // partial row and column panels, padded strides
    [InlineData(61, 200, 2050, 0, 7, 0)] // several KC blocks, partial last panels
    [InlineData(50, 16, 700, 1, 0, 3)]   // the narrow 24×16 tile
    public void AᵀBReadInPlaceEqualsThePackedAlgorithmBitForBit(int m, int n, int k, int padA, int padB, int padC)
    {
        var bl = GemmBlocking.For(GemmIsa.Avx512, n);
        if (!GemmIsaSupport.IsSupported(GemmIsa.Avx512))
        {
            Assert.Skip("AVX-512 is not supported on this CPU: the in-place path exists only for its micro-kernels.");
        }
        Assert.True(CpuGemm.InPlace(in bl, transA: true, transB: false, m, n, k), "the size must take the in-place path");
        Assert.False(CpuGemm.InPlace(in bl, transA: false, transB: false, m, n, k));
        Assert.False(CpuGemm.InPlace(in bl, transA: true, transB: true, m, n, k));
        int lda = m + padA, ldb = n + padB, ldc = n + padC;
        var a = GemmReference.Random(k * lda, 11);
        var b = GemmReference.Random(k * ldb, 12);
        foreach (float beta in new[] { 0f, 0.5f })
        {
            var packed = GemmReference.Random(m * ldc, 13);
            var inPlace = (float[])packed.Clone();
            fixed (float* pa = a, pb = b, pc = packed, pi = inPlace)
            {
                CpuGemm.Packed(in bl, true, false, m, n, k, -1.25f, pa, lda, pb, ldb, beta, pc, ldc, inPlace: false);
                CpuGemm.Packed(in bl, true, false, m, n, k, -1.25f, pa, lda, pb, ldb, beta, pi, ldc);
            }
            Assert.True(packed.AsSpan().SequenceEqual(inPlace), $"beta {beta}: the in-place Aᵀ·B differs from the packed one");
        }
    }

    [Theory]
    [InlineData(1, 1, 1, false, 1, (int)(CpuGemm.GemmPath.DirectDot))]
    [InlineData(13, 17, 19, false, 2, (int)(CpuGemm.GemmPath.DirectAxpy))]
    [InlineData(17, 33, 65, false, 2, (int)(CpuGemm.GemmPath.Packed))]
    [InlineData(3, 5, 7, true, 2, (int)(CpuGemm.GemmPath.DirectDot))]
    [InlineData(5, 7, 0, false, 2, (int)(CpuGemm.GemmPath.ScaleOnly))]
    [InlineData(0, 7, 3, false, 2, (int)(CpuGemm.GemmPath.None))]
    [InlineData(129, 257, 31, false, 1, (int)(CpuGemm.GemmPath.Packed))]
    [InlineData(129, 257, 31, false, 2, (int)(CpuGemm.GemmPath.PackedColumns))]
    [InlineData(300, 40, 70, false, 2, (int)(CpuGemm.GemmPath.PackedRows))]
    [InlineData(25, 2100, 12, false, 2, (int)(CpuGemm.GemmPath.PackedColumns))]
    [InlineData(530, 16, 70, false, 2, (int)(CpuGemm.GemmPath.PackedRows))]
    [InlineData(1000, 300, 513, false, 2, (int)(CpuGemm.GemmPath.PackedRows))]
    [InlineData(3000, 5, 40, false, 2, (int)(CpuGemm.GemmPath.DirectDot | CpuGemm.GemmPath.Rows))]
    [InlineData(4000, 3, 90, false, 2, (int)(CpuGemm.GemmPath.DirectDot | CpuGemm.GemmPath.Rows))]
    [InlineData(2, 5000, 60, false, 2, (int)(CpuGemm.GemmPath.DirectAxpy | CpuGemm.GemmPath.Columns))]
    [InlineData(2, 5000, 70, true, 2, (int)(CpuGemm.GemmPath.DirectDot | CpuGemm.GemmPath.Columns))]
    [InlineData(3, 500, 700, false, 2, (int)(CpuGemm.GemmPath.DirectAxpy | CpuGemm.GemmPath.Columns))]
    public void SizesUsedInTheseTestsTakeTheIntendedPath(int m, int n, int k, bool transB, int threads, int expected)
    {
        using var pool = new CpuWorkerPool(threads);
        var a = new float[Math.Max(1, m * k)];
        var b = new float[Math.Max(1, k * n)];
        var c = new float[Math.Max(1, m * n)];
        GemmReference.Run(pool, GemmIsaSupport.Best, false, transB, m, n, k, 1f, a, k, b, transB ? k : n, 0f, c, n);
        Assert.Equal((CpuGemm.GemmPath)expected, CpuGemm.PathFor(threads, GemmIsaSupport.Best, transB, m, n, k, 1f));
    }

    [Fact]
    public void PublicOverloadsMatchTheReference()
    {
        const int m = 70, n = 90, k = 110;
        var a = GemmReference.Random(m * k, 8);
        var b = GemmReference.Random(k * n, 9);
        var c = GemmReference.Random(m * n, 10);
        var (e, bound) = GemmReference.Compute(false, false, m, n, k, 1f, a, k, b, n, 0.5f, c, n);
        var c1 = (float[])c.Clone();
        var c2 = (float[])c.Clone();
        fixed (float* pa = a, pb = b, p1 = c1, p2 = c2)
        {
            CpuGemm.Sgemm(false, false, m, n, k, 1f, pa, k, pb, n, 0.5f, p1, n);
            CpuGemm.Sgemm(_pool2, false, false, m, n, k, 1f, pa, k, pb, n, 0.5f, p2, n);
        }
        GemmReference.AssertClose(e, bound, c1, c, m, n, n, "single-threaded overload");
        GemmReference.AssertClose(e, bound, c2, c, m, n, n, "pooled overload");
    }

    [Fact]
    public void BadArgumentsThrowNamingTheArgumentAndValue()
    {
        var a = new float[100];
        var b = new float[100];
        var c = new float[100];
        void Call(bool ta, bool tb, int m, int n, int k, int lda, int ldb, int ldc)
        {
            fixed (float* pa = a, pb = b, pc = c)
                CpuGemm.Sgemm(_pool2, ta, tb, m, n, k, 1f, pa, lda, pb, ldb, 0f, pc, ldc);
        }
        AssertArg("m", "-1", () => Call(false, false, -1, 2, 2, 2, 2, 2));
        AssertArg("n", "-3", () => Call(false, false, 2, -3, 2, 2, 2, 2));
        AssertArg("k", "-2", () => Call(false, false, 2, 2, -2, 2, 2, 2));
        AssertArg("lda", "4", () => Call(false, false, 3, 3, 5, 4, 3, 3));
        AssertArg("lda", "2", () => Call(true, false, 3, 3, 5, 2, 3, 3));
        AssertArg("ldb", "2", () => Call(false, false, 3, 3, 5, 5, 2, 3));
        AssertArg("ldb", "4", () => Call(false, true, 3, 3, 5, 5, 4, 3));
        AssertArg("ldc", "2", () => Call(false, false, 3, 3, 5, 5, 3, 2));
        var ex = Assert.Throws<ArgumentNullException>(() => CpuGemm.Sgemm(false, false, 2, 2, 2, 1f, null, 2, null, 2, 0f, null, 2));
        Assert.Equal("c", ex.ParamName);
    }

    internal static void AssertArg(string name, string value, Action call)
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(call);
        Assert.Equal(name, ex.ParamName);
        Assert.Contains(value, ex.Message);
    }

    private static void Check(CpuWorkerPool? pool, GemmIsa isa, bool ta, bool tb, int m, int n, int k, float alpha, float beta,
        int padA, int padB, int padC, int seed)
    {
        int lda = (ta ? m : k) + padA, ldb = (tb ? k : n) + padB, ldc = n + padC;
        var a = GemmReference.Random((ta ? k : m) * lda, seed);
        var b = GemmReference.Random((tb ? n : k) * ldb, seed + 1);
        var c = GemmReference.Random(m * ldc + 3, seed + 2);
        var (e, bound) = GemmReference.Compute(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        var before = (float[])c.Clone();
        GemmReference.Run(pool, isa, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        GemmReference.AssertClose(e, bound, c, before, m, n, ldc,
            $"{isa} threads={pool?.ThreadCount ?? 1} transA={ta} transB={tb} {m}x{n}x{k} alpha={alpha} beta={beta}");
    }
}
