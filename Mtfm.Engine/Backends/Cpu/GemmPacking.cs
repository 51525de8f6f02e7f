using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// Packs blocks of op(A) and op(B) into the contiguous micro-panel layout the micro-kernels stream through, zero-padding
/// partial panels. All four transpose combinations are resolved here, so the kernels see one layout.
/// </summary>
internal static unsafe class GemmPacking
{
    /// <summary>
    /// Packs op(A)[0..mc, 0..kc) (op(A)(i,p) = a[i·lda + p], or a[p·lda + i] when <paramref name="transA"/>) into panels
    /// of <paramref name="mr"/> rows: panel q holds kc steps of mr values at dst + q·mr·kc.
    /// </summary>
    public static void PackA(bool transA, float* a, int lda, int mc, int kc, int mr, float* dst)
    {
        for (int i0 = 0; i0 < mc; i0 += mr)
        {
            int rows = Math.Min(mr, mc - i0);
            float* panel = dst + (long)i0 * kc;
            if (transA)
            {
                for (int p = 0; p < kc; p++)
                {
                    float* src = a + (long)p * lda + i0;
                    float* d = panel + p * mr;
                    int r = 0;
                    for (; r < rows; r++) d[r] = src[r];
                    for (; r < mr; r++) d[r] = 0f;
                }
            }
            else
            {
                for (int r = 0; r < rows; r++)
                {
                    float* src = a + (long)(i0 + r) * lda;
                    float* d = panel + r;
                    for (int p = 0; p < kc; p++) d[p * mr] = src[p];
                }
                for (int r = rows; r < mr; r++)
                {
                    float* d = panel + r;
                    for (int p = 0; p < kc; p++) d[p * mr] = 0f;
                }
            }
        }
    }

    /// <summary>
    /// Packs op(B)[0..kc, 0..nc) (op(B)(p,j) = b[p·ldb + j], or b[j·ldb + p] when <paramref name="transB"/>) into panels
    /// of <paramref name="nr"/> columns: panel q holds kc rows of nr values at dst + q·nr·kc.
    /// </summary>
    public static void PackB(bool transB, float* b, int ldb, int kc, int nc, int nr, float* dst)
    {
        for (int j0 = 0; j0 < nc; j0 += nr)
        {
            int cols = Math.Min(nr, nc - j0);
            float* panel = dst + (long)j0 * kc;
            if (!transB)
            {
                if (cols == nr && (nr & 7) == 0)
                {
                    for (int p = 0; p < kc; p++)
                    {
                        float* src = b + (long)p * ldb + j0;
                        float* d = panel + p * nr;
                        for (int j = 0; j < nr; j += 8) Vector256.Store(Vector256.Load(src + j), d + j);
                    }
                }
                else
                {
                    for (int p = 0; p < kc; p++)
                    {
                        float* src = b + (long)p * ldb + j0;
                        float* d = panel + p * nr;
                        int j = 0;
                        for (; j < cols; j++) d[j] = src[j];
                        for (; j < nr; j++) d[j] = 0f;
                    }
                }
            }
            else
            {
                for (int j = 0; j < cols; j++)
                {
                    float* src = b + (long)(j0 + j) * ldb;
                    float* d = panel + j;
                    for (int p = 0; p < kc; p++) d[p * nr] = src[p];
                }
                for (int j = cols; j < nr; j++)
                {
                    float* d = panel + j;
                    for (int p = 0; p < kc; p++) d[p * nr] = 0f;
                }
            }
        }
    }

    /// <summary>Rounds <paramref name="x"/> up to a multiple of <paramref name="unit"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int RoundUp(int x, int unit) => (x + unit - 1) / unit * unit;
}
