using Mtfm.Engine.Native;
using static Mtfm.Tests.Cuda.CudaTestDevice;

namespace Mtfm.Tests.Cuda;

/// <summary>cuBLAS through the bindings (real GPU only; skipped at run time with the reason when absent).</summary>
public sealed class CublasGemmTests
{
    private static float[] RowMajorReference(bool ta, bool tb, int m, int n, int k, float[] a, float[] b, float alpha,
        float beta, float[] c)
    {
        var r = (float[])c.Clone();
        for (var i = 0; i < m; i++)
            for (var j = 0; j < n; j++)
            {
                double acc = 0;
                for (var p = 0; p < k; p++)
                    acc += (ta ? a[p * m + i] : a[i * k + p]) * (double)(tb ? b[j * k + p] : b[p * n + j]);
                r[i * n + j] = (float)(alpha * acc + beta * c[i * n + j]);
            }
        return r;
    }

    private static nint CublasOrSkip(CudaTestDevice dev, string kind)
    {
        _ = kind;
        Assert.SkipWhen(dev.Driver.IsEmulated, "cuBLAS is not emulated");
        try
        {
            var h = Cublas.Create();
            Cublas.SetStream(h, dev.Stream);
            return h;
        }
        catch (CudaNotAvailableException e)
        {
            CudaTestDevice.SkipNoGpu(e.Message);
            throw;
        }
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void RowMajorSgemmMatchesTheReference(bool transA, bool transB)
    {
        using var dev = Open(Gpu);
        var h = CublasOrSkip(dev, Gpu);
        try
        {
            var rng = new Random(21);
            const int m = 37, n = 29, k = 53;
            var a = RandomFloats(rng, m * k, -1, 1);
            var b = RandomFloats(rng, k * n, -1, 1);
            var c = RandomFloats(rng, m * n, -1, 1);
            ulong pa = dev.Up(a), pb = dev.Up(b), pc = dev.Up(c);
            Cublas.SgemmRowMajor(h, transA, transB, m, n, k, 0.75f, pa, transA ? m : k, pb, transB ? k : n, 0.5f, pc, n);
            var want = RowMajorReference(transA, transB, m, n, k, a, b, 0.75f, 0.5f, c);
            AssertClose(want, dev.Down<float>(pc, m * n), 1e-4f, 1e-4f, $"sgemm transA={transA} transB={transB}");
        }
        finally
        {
            Cublas.Destroy(h);
        }
    }

    [Fact]
    public void StridedBatchedSgemmMatchesTheReference()
    {
        using var dev = Open(Gpu);
        var h = CublasOrSkip(dev, Gpu);
        try
        {
            var rng = new Random(22);
            const int m = 19, n = 23, k = 31, batch = 3;
            var a = RandomFloats(rng, batch * m * k, -1, 1);
            var b = RandomFloats(rng, batch * k * n, -1, 1);
            ulong pa = dev.Up(a), pb = dev.Up(b), pc = dev.Zeros<float>(batch * m * n);
            // row-major C_i = A_i B_i as column-major C_iᵀ = B_iᵀ A_iᵀ
            Cublas.SgemmStridedBatched(h, false, false, n, m, k, 1f, pb, n, (long)k * n, pa, k, (long)m * k, 0f, pc, n,
                (long)m * n, batch);
            var got = dev.Down<float>(pc, batch * m * n);
            for (var i = 0; i < batch; i++)
            {
                var want = RowMajorReference(false, false, m, n, k, a[(i * m * k)..((i + 1) * m * k)],
                    b[(i * k * n)..((i + 1) * k * n)], 1f, 0f, new float[m * n]);
                AssertClose(want, got[(i * m * n)..((i + 1) * m * n)], 1e-4f, 1e-4f, $"batched sgemm {i}");
            }
        }
        finally
        {
            Cublas.Destroy(h);
        }
    }
}
