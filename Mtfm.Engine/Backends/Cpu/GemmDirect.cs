using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// Unpacked SGEMM for small or thin problems: each row of C is accumulated as Σ_p op(A)(i,p)·B[p,:] (k order, FMA where
/// the ISA has it) into a row buffer, then C = alpha·acc + beta·C. B must already be row-major k × n (transposed B is
/// copied first by the caller).
/// </summary>
internal static unsafe class GemmDirect
{
    /// <summary>Computes rows [<paramref name="i0"/>, <paramref name="i1"/>) of C.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(GemmIsa isa, bool transA, int i0, int i1, int n, int k, float alpha, float* a, int lda,
        float* bk, int ldbk, float beta, float* c, int ldc)
    {
        float* acc = GemmScratch.Current.Row(n);
        for (int i = i0; i < i1; i++)
        {
            new Span<float>(acc, n).Clear();
            for (int p = 0; p < k; p++)
            {
                float s = transA ? a[(long)p * lda + i] : a[(long)i * lda + p];
                Axpy(isa, s, bk + (long)p * ldbk, acc, n);
            }
            WriteRow(isa, acc, c + (long)i * ldc, n, alpha, beta);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy(GemmIsa isa, float s, float* x, float* y, int n)
    {
        int j = 0;
        if (isa == GemmIsa.Avx512)
        {
            var vs = Vector512.Create(s);
            for (; j <= n - 16; j += 16)
                Vector512.Store(Avx512F.FusedMultiplyAdd(vs, Vector512.Load(x + j), Vector512.Load(y + j)), y + j);
            for (; j < n; j++) y[j] = MathF.FusedMultiplyAdd(s, x[j], y[j]);
        }
        else if (isa == GemmIsa.Avx2)
        {
            var vs = Vector256.Create(s);
            for (; j <= n - 8; j += 8)
                Vector256.Store(Fma.MultiplyAdd(vs, Vector256.Load(x + j), Vector256.Load(y + j)), y + j);
            for (; j < n; j++) y[j] = MathF.FusedMultiplyAdd(s, x[j], y[j]);
        }
        else
        {
            for (; j < n; j++) y[j] += s * x[j];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WriteRow(GemmIsa isa, float* acc, float* c, int n, float alpha, float beta)
    {
        int j = 0;
        if (isa != GemmIsa.Scalar)
        {
            var va = Vector256.Create(alpha);
            if (beta == 0f)
            {
                for (; j <= n - 8; j += 8) Vector256.Store(va * Vector256.Load(acc + j), c + j);
            }
            else
            {
                var vb = Vector256.Create(beta);
                for (; j <= n - 8; j += 8) Vector256.Store(va * Vector256.Load(acc + j) + vb * Vector256.Load(c + j), c + j);
            }
        }
        if (beta == 0f)
        {
            for (; j < n; j++) c[j] = alpha * acc[j];
        }
        else
        {
            for (; j < n; j++) c[j] = alpha * acc[j] + beta * c[j];
        }
    }

    /// <summary>Copies op(B) = Bᵀ (B stored n × k, row stride <paramref name="ldb"/>) into a dense k × n buffer.</summary>
    public static void TransposeB(float* b, int ldb, int k, int n, float* dst)
    {
        for (int j = 0; j < n; j++)
        {
            float* src = b + (long)j * ldb;
            for (int p = 0; p < k; p++) dst[(long)p * n + j] = src[p];
        }
    }
}
