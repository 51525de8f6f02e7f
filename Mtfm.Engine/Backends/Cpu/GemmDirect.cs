using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// Unpacked SGEMM for small or thin problems, in two forms: the axpy form accumulates each row of C as
/// Σ_p op(A)(i,p)·B[p,:] (k order, FMA where the ISA has it) into a row buffer, then C = alpha·acc + beta·C; the dot form
/// (few columns, or few rows with Bᵀ given) takes one vectorised dot product per element. Operands the chosen form needs
/// contiguous the other way round are transposed into scratch first by the caller.
/// </summary>
internal static unsafe class GemmDirect
{
    /// <summary>
    /// Axpy form: computes C[i0..i1, j0..j1) as Σ_p op(A)(i,p)·B[p, j0..j1) in k order. <paramref name="bk"/> is B as a
    /// row-major k × n matrix with row stride <paramref name="ldbk"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AxpyRows(GemmIsa isa, bool transA, int i0, int i1, int j0, int j1, int k, float alpha, float* a, int lda,
        float* bk, int ldbk, float beta, float* c, int ldc)
    {
        int w = j1 - j0;
        if (w <= 0) return;
        float* acc = GemmScratch.Current.Row(w);
        for (int i = i0; i < i1; i++)
        {
            new Span<float>(acc, w).Clear();
            for (int p = 0; p < k; p++)
            {
                float s = transA ? a[(long)p * lda + i] : a[(long)i * lda + p];
                Axpy(isa, s, bk + (long)p * ldbk + j0, acc, w);
            }
            WriteRow(isa, acc, c + (long)i * ldc + j0, w, alpha, beta);
        }
    }

    /// <summary>
    /// Dot form: C[i,j] = alpha·dot(A[i,:], Bt[j,:]) + beta·C[i,j] for i in [i0, i1), j in [j0, j1), with A rows and Bᵀ
    /// rows contiguous (row strides <paramref name="lda"/>, <paramref name="ldbt"/>). Each dot is one
    /// <see cref="System.Numerics.Tensors.TensorPrimitives.Dot(ReadOnlySpan{float}, ReadOnlySpan{float})"/>, so its summation
    /// order depends only on k, not on the split.
    /// </summary>
    public static void DotRows(int i0, int i1, int j0, int j1, int k, float alpha, float* a, int lda, float* bt, int ldbt,
        float beta, float* c, int ldc)
    {
        for (int i = i0; i < i1; i++)
        {
            var ai = new ReadOnlySpan<float>(a + (long)i * lda, k);
            float* ci = c + (long)i * ldc;
            for (int j = j0; j < j1; j++)
            {
                float d = System.Numerics.Tensors.TensorPrimitives.Dot(ai, new ReadOnlySpan<float>(bt + (long)j * ldbt, k));
                ci[j] = beta == 0f ? alpha * d : alpha * d + beta * ci[j];
            }
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

    /// <summary>Copies the transpose of a rows × cols matrix (row stride <paramref name="ld"/>) into a dense cols × rows buffer.</summary>
    public static void Transpose(float* src, int ld, int rows, int cols, float* dst)
    {
        for (int r = 0; r < rows; r++)
        {
            float* s = src + (long)r * ld;
            for (int q = 0; q < cols; q++) dst[(long)q * rows + r] = s[q];
        }
    }
}
