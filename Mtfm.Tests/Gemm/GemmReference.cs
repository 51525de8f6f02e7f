using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Tests.Gemm;

/// <summary>A float64 reference GEMM and helpers for building and checking row-major operands with padding.</summary>
internal static unsafe class GemmReference
{
    /// <summary>Instruction sets this machine can run (every one gets tested).</summary>
    public static IEnumerable<GemmIsa> SupportedIsas =>
        Enum.GetValues<GemmIsa>().Where(GemmIsaSupport.IsSupported);

    /// <summary>Random values in [-1, 1) with a fixed seed; padding beyond the logical matrix is filled too.</summary>
    public static float[] Random(int count, int seed)
    {
        var rng = new Random(seed);
        var x = new float[Math.Max(count, 1)];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    /// <summary>Expected C (as double) and an error bound per element: Σ|terms| scaled by k·eps.</summary>
    public static (double[] Expected, double[] Bound) Compute(bool transA, bool transB, int m, int n, int k, float alpha,
        float[] a, int lda, float[] b, int ldb, float beta, float[] c, int ldc)
    {
        var expected = new double[m * n];
        var bound = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double acc = 0, abs = 0;
                if (alpha != 0)
                {
                    for (int p = 0; p < k; p++)
                    {
                        double av = transA ? a[p * lda + i] : a[i * lda + p];
                        double bv = transB ? b[j * ldb + p] : b[p * ldb + j];
                        acc += av * bv;
                        abs += Math.Abs(av * bv);
                    }
                }
                double c0 = beta == 0 ? 0 : c[i * ldc + j];
                expected[i * n + j] = alpha * acc + beta * c0;
                bound[i * n + j] = (k + 4) * 1.2e-7 * (Math.Abs(alpha) * abs + Math.Abs(beta * c0)) + 1e-30;
            }
        }
        return (expected, bound);
    }

    /// <summary>Checks C against the reference within the bound and that C's padding (columns ≥ n) is untouched.</summary>
    public static void AssertClose(double[] expected, double[] bound, float[] actual, float[] before, int m, int n, int ldc, string what)
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < ldc; j++)
            {
                int idx = i * ldc + j;
                if (j >= n)
                {
                    Assert.True(actual[idx].Equals(before[idx]), $"{what}: padding C[{i},{j}] was written ({before[idx]} -> {actual[idx]})");
                    continue;
                }
                double e = expected[i * n + j], got = actual[idx];
                Assert.False(double.IsNaN(got), $"{what}: C[{i},{j}] is NaN, expected {e}");
                Assert.True(Math.Abs(got - e) <= bound[i * n + j], $"{what}: C[{i},{j}] = {got}, expected {e} ± {bound[i * n + j]:G3}");
            }
        }
        for (int idx = m * ldc; idx < actual.Length; idx++)
            Assert.True(actual[idx].Equals(before[idx]), $"{what}: C beyond the last row was written at {idx}");
    }

    /// <summary>Runs the pooled SGEMM on managed arrays.</summary>
    public static void Run(CpuWorkerPool? pool, GemmIsa isa, bool transA, bool transB, int m, int n, int k, float alpha,
        float[] a, int lda, float[] b, int ldb, float beta, float[] c, int ldc)
    {
        fixed (float* pa = a, pb = b, pc = c)
            CpuGemm.Sgemm(pool, isa, transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
    }
}
