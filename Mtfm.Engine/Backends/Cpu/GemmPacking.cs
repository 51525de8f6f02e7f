using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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
                    for (; r <= rows - 4; r += 4) Vector128.Store(Vector128.Load(src + r), d + r);
                    for (; r < rows; r++) d[r] = src[r];
                    for (; r < mr; r++) d[r] = 0f;
                }
            }
            else
            {
                InterleaveRows(a + (long)i0 * lda, lda, rows, kc, panel, mr);
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
                InterleaveRows(b + (long)j0 * ldb, ldb, cols, kc, panel, nr);
                for (int j = cols; j < nr; j++)
                {
                    float* d = panel + j;
                    for (int p = 0; p < kc; p++) d[p * nr] = 0f;
                }
            }
        }
    }

    /// <summary>
    /// Writes rows [0, <paramref name="rows"/>) of a row-major matrix (row stride <paramref name="ld"/>), columns [0, kc),
    /// interleaved: element (r, p) goes to dst[p·<paramref name="stride"/> + r]. Groups of 4 rows × 4 columns are transposed in
    /// SSE registers.
    /// </summary>
    private static void InterleaveRows(float* src, int ld, int rows, int kc, float* dst, int stride)
    {
        int r0 = 0;
        if (Sse.IsSupported)
        {
            for (; r0 <= rows - 4; r0 += 4)
            {
                float* s0 = src + (long)r0 * ld;
                float* s1 = s0 + ld, s2 = s1 + ld, s3 = s2 + ld;
                float* d = dst + r0;
                int p = 0;
                for (; p <= kc - 4; p += 4)
                {
                    var x0 = Sse.LoadVector128(s0 + p);
                    var x1 = Sse.LoadVector128(s1 + p);
                    var x2 = Sse.LoadVector128(s2 + p);
                    var x3 = Sse.LoadVector128(s3 + p);
                    var t0 = Sse.UnpackLow(x0, x1);
                    var t1 = Sse.UnpackHigh(x0, x1);
                    var t2 = Sse.UnpackLow(x2, x3);
                    var t3 = Sse.UnpackHigh(x2, x3);
                    Sse.Store(d + p * stride, Sse.MoveLowToHigh(t0, t2));
                    Sse.Store(d + (p + 1) * stride, Sse.MoveHighToLow(t2, t0));
                    Sse.Store(d + (p + 2) * stride, Sse.MoveLowToHigh(t1, t3));
                    Sse.Store(d + (p + 3) * stride, Sse.MoveHighToLow(t3, t1));
                }
                for (; p < kc; p++)
                {
                    d[p * stride] = s0[p];
                    d[p * stride + 1] = s1[p];
                    d[p * stride + 2] = s2[p];
                    d[p * stride + 3] = s3[p];
                }
            }
        }
        for (int r = r0; r < rows; r++)
        {
            float* s = src + (long)r * ld;
            float* d = dst + r;
            for (int p = 0; p < kc; p++) d[p * stride] = s[p];
        }
    }

    /// <summary>Rounds <paramref name="x"/> up to a multiple of <paramref name="unit"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int RoundUp(int x, int unit) => (x + unit - 1) / unit * unit;
}
