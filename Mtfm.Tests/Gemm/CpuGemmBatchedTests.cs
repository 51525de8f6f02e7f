using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Tests.Gemm;

/// <summary>CpuGemm.SgemmStridedBatched against per-item reference results and per-item Sgemm calls.</summary>
public sealed unsafe class CpuGemmBatchedTests : IDisposable
{
    private readonly CpuWorkerPool _pool2 = new(2);

    public void Dispose() => _pool2.Dispose();

    [Theory]
    [InlineData(3, 5, 7, 4, false, false)]
    [InlineData(17, 33, 65, 3, true, false)]
    [InlineData(40, 50, 60, 5, false, true)]
    [InlineData(129, 70, 31, 2, true, true)]
    [InlineData(1, 1, 1, 9, false, false)]
    [InlineData(64, 64, 64, 1, false, false)]
    [InlineData(4, 64, 1, 706, true, false)] // many tiny items (the MMoE mix)
    public void MatchesReferencePerItemAndIsThreadCountIndependent(int m, int n, int k, int batch, bool ta, bool tb)
    {
        int lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
        long strideA = (long)(ta ? k : m) * lda + 5, strideB = (long)(tb ? n : k) * ldb + 1, strideC = (long)m * ldc + 7;
        var a = GemmReference.Random((int)(strideA * batch), 21);
        var b = GemmReference.Random((int)(strideB * batch), 22);
        var c = GemmReference.Random((int)(strideC * batch), 23);
        foreach (var isa in GemmReference.SupportedIsas)
        {
            var c1 = (float[])c.Clone();
            var c2 = (float[])c.Clone();
            fixed (float* pa = a, pb = b, p1 = c1, p2 = c2)
            {
                CpuGemm.SgemmStridedBatched(null, isa, ta, tb, m, n, k, 1.25f, pa, lda, strideA, pb, ldb, strideB, 0.5f, p1, ldc, strideC, batch);
                CpuGemm.SgemmStridedBatched(_pool2, isa, ta, tb, m, n, k, 1.25f, pa, lda, strideA, pb, ldb, strideB, 0.5f, p2, ldc, strideC, batch);
            }
            Assert.True(c1.AsSpan().SequenceEqual(c2), $"{isa}: 2 threads differ from 1");
            for (int i = 0; i < batch; i++)
            {
                var ai = a.AsSpan((int)(i * strideA), (int)strideA).ToArray();
                var bi = b.AsSpan((int)(i * strideB), (int)strideB).ToArray();
                var ci0 = c.AsSpan((int)(i * strideC), (int)strideC).ToArray();
                var ci = c1.AsSpan((int)(i * strideC), (int)strideC).ToArray();
                var (e, bound) = GemmReference.Compute(ta, tb, m, n, k, 1.25f, ai, lda, bi, ldb, 0.5f, ci0, ldc);
                GemmReference.AssertClose(e, bound, ci, ci0, m, n, ldc, $"{isa} item {i}");
                // The batched form gives exactly the single-call result.
                var cs = (float[])ci0.Clone();
                GemmReference.Run(null, isa, ta, tb, m, n, k, 1.25f, ai, lda, bi, ldb, 0.5f, cs, ldc);
                Assert.True(cs.AsSpan().SequenceEqual(ci), $"{isa} item {i}: batched differs from a single Sgemm");
            }
        }
    }

    [Fact]
    public void ZeroStrideBroadcastsAnOperand()
    {
        const int m = 20, n = 30, k = 40, batch = 3;
        var a = GemmReference.Random(m * k, 31);            // one A for every item
        var b = GemmReference.Random(batch * k * n, 32);
        var c = new float[batch * m * n];
        Array.Fill(c, float.NaN);
        fixed (float* pa = a, pb = b, pc = c)
            CpuGemm.SgemmStridedBatched(_pool2, false, false, m, n, k, 1f, pa, k, 0, pb, n, k * n, 0f, pc, n, m * n, batch);
        for (int i = 0; i < batch; i++)
        {
            var bi = b.AsSpan(i * k * n, k * n).ToArray();
            var ci = c.AsSpan(i * m * n, m * n).ToArray();
            var (e, bound) = GemmReference.Compute(false, false, m, n, k, 1f, a, k, bi, n, 0f, new float[m * n], n);
            GemmReference.AssertClose(e, bound, ci, ci, m, n, n, $"item {i}");
        }
    }

    [Fact]
    public void EmptyBatchOrEmptyMatricesDoNothing()
    {
        var c = new float[] { 1, 2, 3 };
        fixed (float* pc = c)
        {
            CpuGemm.SgemmStridedBatched(_pool2, false, false, 1, 1, 1, 1f, null, 1, 1, null, 1, 1, 0f, pc, 1, 1, 0);
            CpuGemm.SgemmStridedBatched(_pool2, false, false, 0, 3, 2, 1f, null, 2, 0, null, 3, 0, 0f, pc, 3, 0, 5);
        }
        Assert.Equal(new float[] { 1, 2, 3 }, c);
    }

    [Fact]
    public void BadArgumentsThrowNamingTheArgumentAndValue()
    {
        var x = new float[1000];
        void Call(int m, int n, int k, long sA, long sB, long sC, int batch, int ldc = 4)
        {
            fixed (float* p = x)
                CpuGemm.SgemmStridedBatched(_pool2, false, false, m, n, k, 1f, p, k, sA, p, n, sB, 0f, p, ldc, sC, batch);
        }
        CpuGemmTests.AssertArg("batch", "-1", () => Call(2, 2, 2, 4, 4, 8, -1));
        CpuGemmTests.AssertArg("strideA", "-4", () => Call(2, 2, 2, -4, 4, 8, 2));
        CpuGemmTests.AssertArg("strideB", "-7", () => Call(2, 2, 2, 4, -7, 8, 2));
        CpuGemmTests.AssertArg("strideC", "5", () => Call(2, 2, 2, 4, 4, 5, 2));
        CpuGemmTests.AssertArg("m", "-2", () => Call(-2, 2, 2, 4, 4, 8, 2));
        CpuGemmTests.AssertArg("ldc", "1", () => Call(2, 2, 2, 4, 4, 8, 2, ldc: 1));
    }
}
