using System.Runtime.CompilerServices;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>Edge handling and the portable scalar micro-kernel that go with the generated SIMD kernels.</summary>
internal static unsafe partial class GemmMicroKernels
{
    /// <summary>Rows of the scalar micro-kernel.</summary>
    internal const int ScalarMr = 4;

    /// <summary>Columns of the scalar micro-kernel.</summary>
    internal const int ScalarNr = 4;

    /// <summary>
    /// Writes the valid <paramref name="mr"/> × <paramref name="nr"/> corner of an accumulator tile (row stride
    /// <paramref name="tileStride"/>) into C with the same arithmetic as the full-tile SIMD path: alpha·t + beta·c, unfused.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void UpdateEdge(float* t, int tileStride, float* c, int ldc, float alpha, float beta, int mr, int nr)
    {
        for (int i = 0; i < mr; i++)
        {
            float* ti = t + i * tileStride;
            float* ci = c + i * (long)ldc;
            if (beta == 0f)
            {
                for (int j = 0; j < nr; j++) ci[j] = alpha * ti[j];
            }
            else
            {
                for (int j = 0; j < nr; j++) ci[j] = alpha * ti[j] + beta * ci[j];
            }
        }
    }

    /// <summary>Portable 4×4 micro-kernel (no SIMD): plain multiply-add in k order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit] // the tile is fully written before it is read
    internal static void Scalar_4x4(int kc, float* pa, float* pb, float* c, int ldc, float alpha, float beta, int mr, int nr)
    {
        float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        for (int p = 0; p < kc; p++)
        {
            float b0 = pb[0], b1 = pb[1], b2 = pb[2], b3 = pb[3];
            float a0 = pa[0], a1 = pa[1], a2 = pa[2], a3 = pa[3];
            c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
            c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
            c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
            c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            pa += 4;
            pb += 4;
        }
        float* t = stackalloc float[16];
        t[0] = c00; t[1] = c01; t[2] = c02; t[3] = c03;
        t[4] = c10; t[5] = c11; t[6] = c12; t[7] = c13;
        t[8] = c20; t[9] = c21; t[10] = c22; t[11] = c23;
        t[12] = c30; t[13] = c31; t[14] = c32; t[15] = c33;
        UpdateEdge(t, 4, c, ldc, alpha, beta, mr, nr);
    }
}
