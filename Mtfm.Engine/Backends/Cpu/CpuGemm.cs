namespace Mtfm.Engine.Backends.Cpu;

/// <summary>Single-precision GEMM on the CPU: C = alpha·op(A)·op(B) + beta·C, row-major.</summary>
internal static unsafe class CpuGemm
{
    /// <summary>
    /// Row-major SGEMM, parallel over <paramref name="pool"/> when given. op(A) is [m,k], op(B) is [k,n], C is [m,n]. With <paramref name="transA"/>, A is stored [k,m]
    /// (lda ≥ m); otherwise [m,k] (lda ≥ k). Likewise B: [n,k] when transposed, else [k,n]. beta = 0 ignores C's contents.
    /// </summary>
    public static void Sgemm(CpuWorkerPool? pool, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
        => Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    /// <summary>Single-threaded row-major SGEMM; see the pooled overload for the layout.</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float acc = 0f;
                for (int p = 0; p < k; p++)
                {
                    float av = transA ? a[(long)p * lda + i] : a[(long)i * lda + p];
                    float bv = transB ? b[(long)j * ldb + p] : b[(long)p * ldb + j];
                    acc += av * bv;
                }
                float* cp = c + (long)i * ldc + j;
                *cp = beta == 0f ? alpha * acc : alpha * acc + beta * *cp;
            }
        }
    }
}
