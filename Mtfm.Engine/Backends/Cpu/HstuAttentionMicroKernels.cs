using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// Small register-blocked building blocks of <see cref="CpuHstuAttention"/>. Every output element is one fused
/// multiply-add chain over p in ascending order, whatever the path (Vector512, Vector256 or scalar) or the row block it
/// falls in, so results do not depend on blocking, tails or the thread partition.
/// </summary>
internal static unsafe class HstuAttentionMicroKernels
{
    /// <summary>
    /// C[i, 0..n) += Σ_{p &lt; kd} A(i, p) · B[p, 0..n) for i &lt; m, with A(i, p) = a[i·ars + p·acs] (any strides, so A
    /// may be read transposed), B rows at b + p·ldb and C rows at c + i·ldc. With <paramref name="overwrite"/> C's old
    /// contents are ignored (the chains start at +0, exactly as if C had been cleared).
    /// </summary>
    public static void AddMatMul(int m, int n, int kd, float* a, nint ars, nint acs, float* b, nint ldb, float* c, nint ldc, bool overwrite = false)
    {
        if (m <= 0 || n <= 0) return;
        if (kd <= 0)
        {
            if (overwrite) for (int i = 0; i < m; i++) Zero(c + i * ldc, n);
            return;
        }
        int col = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; col + 32 <= n; col += 32) Cols512x2(m, kd, a, ars, acs, b + col, ldb, c + col, ldc, overwrite);
            for (; col + 16 <= n; col += 16) Cols512x1(m, kd, a, ars, acs, b + col, ldb, c + col, ldc, overwrite);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            for (; col + 16 <= n; col += 16) Cols256x2(m, kd, a, ars, acs, b + col, ldb, c + col, ldc, overwrite);
            for (; col + 8 <= n; col += 8) Cols256x1(m, kd, a, ars, acs, b + col, ldb, c + col, ldc, overwrite);
        }
        for (; col < n; col++)
        {
            for (int i = 0; i < m; i++)
            {
                float* ap = a + i * ars;
                float acc = overwrite ? 0f : c[i * ldc + col];
                for (int p = 0; p < kd; p++) acc = MathF.FusedMultiplyAdd(ap[p * acs], b[p * ldb + col], acc);
                c[i * ldc + col] = acc;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Cols512x2(int m, int kd, float* a, nint ars, nint acs, float* b, nint ldb, float* c, nint ldc, bool overwrite)
    {
        int i = 0;
        for (; i + 8 <= m; i += 8)
        {
            float* c0 = c + i * ldc;
            Vector512<float> x00 = Ld512(c0 + 0 * ldc, overwrite), x01 = Ld512(c0 + 0 * ldc + 16, overwrite);
            Vector512<float> x10 = Ld512(c0 + 1 * ldc, overwrite), x11 = Ld512(c0 + 1 * ldc + 16, overwrite);
            Vector512<float> x20 = Ld512(c0 + 2 * ldc, overwrite), x21 = Ld512(c0 + 2 * ldc + 16, overwrite);
            Vector512<float> x30 = Ld512(c0 + 3 * ldc, overwrite), x31 = Ld512(c0 + 3 * ldc + 16, overwrite);
            Vector512<float> x40 = Ld512(c0 + 4 * ldc, overwrite), x41 = Ld512(c0 + 4 * ldc + 16, overwrite);
            Vector512<float> x50 = Ld512(c0 + 5 * ldc, overwrite), x51 = Ld512(c0 + 5 * ldc + 16, overwrite);
            Vector512<float> x60 = Ld512(c0 + 6 * ldc, overwrite), x61 = Ld512(c0 + 6 * ldc + 16, overwrite);
            Vector512<float> x70 = Ld512(c0 + 7 * ldc, overwrite), x71 = Ld512(c0 + 7 * ldc + 16, overwrite);
            float* ap = a + i * ars;
            for (int p = 0; p < kd; p++)
            {
                float* bp = b + p * ldb;
                Vector512<float> b0 = Vector512.Load(bp), b1 = Vector512.Load(bp + 16);
                float* aq = ap + p * acs;
                Vector512<float> a0 = Vector512.Create(aq[0 * ars]);
                x00 = Vector512.FusedMultiplyAdd(a0, b0, x00); x01 = Vector512.FusedMultiplyAdd(a0, b1, x01);
                Vector512<float> a1 = Vector512.Create(aq[1 * ars]);
                x10 = Vector512.FusedMultiplyAdd(a1, b0, x10); x11 = Vector512.FusedMultiplyAdd(a1, b1, x11);
                Vector512<float> a2 = Vector512.Create(aq[2 * ars]);
                x20 = Vector512.FusedMultiplyAdd(a2, b0, x20); x21 = Vector512.FusedMultiplyAdd(a2, b1, x21);
                Vector512<float> a3 = Vector512.Create(aq[3 * ars]);
                x30 = Vector512.FusedMultiplyAdd(a3, b0, x30); x31 = Vector512.FusedMultiplyAdd(a3, b1, x31);
                Vector512<float> a4 = Vector512.Create(aq[4 * ars]);
                x40 = Vector512.FusedMultiplyAdd(a4, b0, x40); x41 = Vector512.FusedMultiplyAdd(a4, b1, x41);
                Vector512<float> a5 = Vector512.Create(aq[5 * ars]);
                x50 = Vector512.FusedMultiplyAdd(a5, b0, x50); x51 = Vector512.FusedMultiplyAdd(a5, b1, x51);
                Vector512<float> a6 = Vector512.Create(aq[6 * ars]);
                x60 = Vector512.FusedMultiplyAdd(a6, b0, x60); x61 = Vector512.FusedMultiplyAdd(a6, b1, x61);
                Vector512<float> a7 = Vector512.Create(aq[7 * ars]);
                x70 = Vector512.FusedMultiplyAdd(a7, b0, x70); x71 = Vector512.FusedMultiplyAdd(a7, b1, x71);
            }
            x00.Store(c0 + 0 * ldc); x01.Store(c0 + 0 * ldc + 16);
            x10.Store(c0 + 1 * ldc); x11.Store(c0 + 1 * ldc + 16);
            x20.Store(c0 + 2 * ldc); x21.Store(c0 + 2 * ldc + 16);
            x30.Store(c0 + 3 * ldc); x31.Store(c0 + 3 * ldc + 16);
            x40.Store(c0 + 4 * ldc); x41.Store(c0 + 4 * ldc + 16);
            x50.Store(c0 + 5 * ldc); x51.Store(c0 + 5 * ldc + 16);
            x60.Store(c0 + 6 * ldc); x61.Store(c0 + 6 * ldc + 16);
            x70.Store(c0 + 7 * ldc); x71.Store(c0 + 7 * ldc + 16);
        }
        for (; i + 4 <= m; i += 4)
        {
            float* c0 = c + i * ldc;
            Vector512<float> x00 = Ld512(c0 + 0 * ldc, overwrite), x01 = Ld512(c0 + 0 * ldc + 16, overwrite);
            Vector512<float> x10 = Ld512(c0 + 1 * ldc, overwrite), x11 = Ld512(c0 + 1 * ldc + 16, overwrite);
            Vector512<float> x20 = Ld512(c0 + 2 * ldc, overwrite), x21 = Ld512(c0 + 2 * ldc + 16, overwrite);
            Vector512<float> x30 = Ld512(c0 + 3 * ldc, overwrite), x31 = Ld512(c0 + 3 * ldc + 16, overwrite);
            float* ap = a + i * ars;
            for (int p = 0; p < kd; p++)
            {
                float* bp = b + p * ldb;
                Vector512<float> b0 = Vector512.Load(bp), b1 = Vector512.Load(bp + 16);
                float* aq = ap + p * acs;
                Vector512<float> a0 = Vector512.Create(aq[0 * ars]);
                x00 = Vector512.FusedMultiplyAdd(a0, b0, x00); x01 = Vector512.FusedMultiplyAdd(a0, b1, x01);
                Vector512<float> a1 = Vector512.Create(aq[1 * ars]);
                x10 = Vector512.FusedMultiplyAdd(a1, b0, x10); x11 = Vector512.FusedMultiplyAdd(a1, b1, x11);
                Vector512<float> a2 = Vector512.Create(aq[2 * ars]);
                x20 = Vector512.FusedMultiplyAdd(a2, b0, x20); x21 = Vector512.FusedMultiplyAdd(a2, b1, x21);
                Vector512<float> a3 = Vector512.Create(aq[3 * ars]);
                x30 = Vector512.FusedMultiplyAdd(a3, b0, x30); x31 = Vector512.FusedMultiplyAdd(a3, b1, x31);
            }
            x00.Store(c0 + 0 * ldc); x01.Store(c0 + 0 * ldc + 16);
            x10.Store(c0 + 1 * ldc); x11.Store(c0 + 1 * ldc + 16);
            x20.Store(c0 + 2 * ldc); x21.Store(c0 + 2 * ldc + 16);
            x30.Store(c0 + 3 * ldc); x31.Store(c0 + 3 * ldc + 16);
        }
        for (; i + 1 <= m; i += 1)
        {
            float* c0 = c + i * ldc;
            Vector512<float> x00 = Ld512(c0 + 0 * ldc, overwrite), x01 = Ld512(c0 + 0 * ldc + 16, overwrite);
            float* ap = a + i * ars;
            for (int p = 0; p < kd; p++)
            {
                float* bp = b + p * ldb;
                Vector512<float> b0 = Vector512.Load(bp), b1 = Vector512.Load(bp + 16);
                float* aq = ap + p * acs;
                Vector512<float> a0 = Vector512.Create(aq[0 * ars]);
                x00 = Vector512.FusedMultiplyAdd(a0, b0, x00); x01 = Vector512.FusedMultiplyAdd(a0, b1, x01);
            }
            x00.Store(c0 + 0 * ldc); x01.Store(c0 + 0 * ldc + 16);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Cols512x1(int m, int kd, float* a, nint ars, nint acs, float* b, nint ldb, float* c, nint ldc, bool overwrite)
    {
        int i = 0;
        for (; i + 4 <= m; i += 4)
        {
            float* c0 = c + i * ldc, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
            Vector512<float> x0 = Ld512(c0, overwrite), x1 = Ld512(c1, overwrite), x2 = Ld512(c2, overwrite), x3 = Ld512(c3, overwrite);
            float* ap = a + i * ars;
            for (int p = 0; p < kd; p++)
            {
                Vector512<float> b0 = Vector512.Load(b + p * ldb);
                float* aq = ap + p * acs;
                x0 = Vector512.FusedMultiplyAdd(Vector512.Create(aq[0]), b0, x0);
                x1 = Vector512.FusedMultiplyAdd(Vector512.Create(aq[ars]), b0, x1);
                x2 = Vector512.FusedMultiplyAdd(Vector512.Create(aq[2 * ars]), b0, x2);
                x3 = Vector512.FusedMultiplyAdd(Vector512.Create(aq[3 * ars]), b0, x3);
            }
            x0.Store(c0); x1.Store(c1); x2.Store(c2); x3.Store(c3);
        }
        for (; i < m; i++)
        {
            float* c0 = c + i * ldc;
            Vector512<float> x0 = Ld512(c0, overwrite);
            float* ap = a + i * ars;
            for (int p = 0; p < kd; p++) x0 = Vector512.FusedMultiplyAdd(Vector512.Create(ap[p * acs]), Vector512.Load(b + p * ldb), x0);
            x0.Store(c0);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Cols256x2(int m, int kd, float* a, nint ars, nint acs, float* b, nint ldb, float* c, nint ldc, bool overwrite)
    {
        int i = 0;
        for (; i + 4 <= m; i += 4)
        {
            float* c0 = c + i * ldc, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
            Vector256<float> x00 = Ld256(c0, overwrite), x01 = Ld256(c0 + 8, overwrite);
            Vector256<float> x10 = Ld256(c1, overwrite), x11 = Ld256(c1 + 8, overwrite);
            Vector256<float> x20 = Ld256(c2, overwrite), x21 = Ld256(c2 + 8, overwrite);
            Vector256<float> x30 = Ld256(c3, overwrite), x31 = Ld256(c3 + 8, overwrite);
            float* ap = a + i * ars;
            for (int p = 0; p < kd; p++)
            {
                float* bp = b + p * ldb;
                Vector256<float> b0 = Vector256.Load(bp), b1 = Vector256.Load(bp + 8);
                float* aq = ap + p * acs;
                Vector256<float> a0 = Vector256.Create(aq[0]);
                x00 = Vector256.FusedMultiplyAdd(a0, b0, x00); x01 = Vector256.FusedMultiplyAdd(a0, b1, x01);
                Vector256<float> a1 = Vector256.Create(aq[ars]);
                x10 = Vector256.FusedMultiplyAdd(a1, b0, x10); x11 = Vector256.FusedMultiplyAdd(a1, b1, x11);
                Vector256<float> a2 = Vector256.Create(aq[2 * ars]);
                x20 = Vector256.FusedMultiplyAdd(a2, b0, x20); x21 = Vector256.FusedMultiplyAdd(a2, b1, x21);
                Vector256<float> a3 = Vector256.Create(aq[3 * ars]);
                x30 = Vector256.FusedMultiplyAdd(a3, b0, x30); x31 = Vector256.FusedMultiplyAdd(a3, b1, x31);
            }
            x00.Store(c0); x01.Store(c0 + 8); x10.Store(c1); x11.Store(c1 + 8);
            x20.Store(c2); x21.Store(c2 + 8); x30.Store(c3); x31.Store(c3 + 8);
        }
        for (; i < m; i++)
        {
            float* c0 = c + i * ldc;
            Vector256<float> x00 = Ld256(c0, overwrite), x01 = Ld256(c0 + 8, overwrite);
            float* ap = a + i * ars;
            for (int p = 0; p < kd; p++)
            {
                float* bp = b + p * ldb;
                Vector256<float> a0 = Vector256.Create(ap[p * acs]);
                x00 = Vector256.FusedMultiplyAdd(a0, Vector256.Load(bp), x00);
                x01 = Vector256.FusedMultiplyAdd(a0, Vector256.Load(bp + 8), x01);
            }
            x00.Store(c0); x01.Store(c0 + 8);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Cols256x1(int m, int kd, float* a, nint ars, nint acs, float* b, nint ldb, float* c, nint ldc, bool overwrite)
    {
        for (int i = 0; i < m; i++)
        {
            float* c0 = c + i * ldc;
            Vector256<float> x0 = Ld256(c0, overwrite);
            float* ap = a + i * ars;
            for (int p = 0; p < kd; p++) x0 = Vector256.FusedMultiplyAdd(Vector256.Create(ap[p * acs]), Vector256.Load(b + p * ldb), x0);
            x0.Store(c0);
        }
    }

    /// <summary>
    /// Σ_p x[p]·y[p]: with AVX-512, 16-lane partial sums (fused multiply-adds over whole vectors in ascending order), their
    /// sum, then the leftover elements by fused multiply-adds; otherwise one chain in ascending p. The operations depend only
    /// on n, so equal inputs give equal bits wherever the call sits.
    /// </summary>
    public static float Dot(float* x, float* y, int n)
    {
        int p = 0;
        float acc = 0f;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var v = Vector512<float>.Zero;
            for (; p + 16 <= n; p += 16) v = Vector512.FusedMultiplyAdd(Vector512.Load(x + p), Vector512.Load(y + p), v);
            acc = Vector512.Sum(v);
        }
        for (; p < n; p++) acc = MathF.FusedMultiplyAdd(x[p], y[p], acc);
        return acc;
    }

    /// <summary>dst[0..n) = src[0..n) (not overlapping): whole vectors, then the tail; rows of a few dozen floats without a call into the runtime's copy.</summary>
    public static void Copy(float* src, float* dst, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) for (; i + 16 <= n; i += 16) Vector512.Load(src + i).Store(dst + i);
        for (; i < n; i++) dst[i] = src[i];
    }

    /// <summary>dst[0..n) = +0.</summary>
    public static void Zero(float* dst, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) for (; i + 16 <= n; i += 16) Vector512<float>.Zero.Store(dst + i);
        for (; i < n; i++) dst[i] = 0f;
    }

    /// <summary>dst[0..n) = scale · src[0..n) (one multiply per element; src may be dst).</summary>
    public static void Scale(float* src, float scale, float* dst, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vs = Vector512.Create(scale);
            for (; i + 16 <= n; i += 16) (Vector512.Load(src + i) * vs).Store(dst + i);
        }
        for (; i < n; i++) dst[i] = src[i] * scale;
    }

    /// <summary>y[0..n) += alpha · x[0..n).</summary>
    public static void Axpy(int n, float alpha, float* x, float* y)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var va = Vector512.Create(alpha);
            for (; i + 16 <= n; i += 16) Vector512.FusedMultiplyAdd(va, Vector512.Load(x + i), Vector512.Load(y + i)).Store(y + i);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(alpha);
            for (; i + 8 <= n; i += 8) Vector256.FusedMultiplyAdd(va, Vector256.Load(x + i), Vector256.Load(y + i)).Store(y + i);
        }
        for (; i < n; i++) y[i] = MathF.FusedMultiplyAdd(alpha, x[i], y[i]);
    }

    /// <summary>
    /// For j &lt; n, with x = s[j], g = sig[j]: p[j] = x·g·invN (SiLU/n) and d[j] = da[j]·g·(1 + x·(1 − g))·invN
    /// (dA·SiLU'(x)/n). Plain multiplies and adds in the same order on every path, so vector and scalar lanes agree.
    /// </summary>
    public static void SiluForwardBackward(int n, float* s, float* sig, float* da, float invN, float* p, float* d)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vn = Vector512.Create(invN);
            var one = Vector512<float>.One;
            for (; j + 16 <= n; j += 16)
            {
                var x = Vector512.Load(s + j);
                var g = Vector512.Load(sig + j);
                (x * g * vn).Store(p + j);
                (Vector512.Load(da + j) * g * (one + x * (one - g)) * vn).Store(d + j);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var vn = Vector256.Create(invN);
            var one = Vector256<float>.One;
            for (; j + 8 <= n; j += 8)
            {
                var x = Vector256.Load(s + j);
                var g = Vector256.Load(sig + j);
                (x * g * vn).Store(p + j);
                (Vector256.Load(da + j) * g * (one + x * (one - g)) * vn).Store(d + j);
            }
        }
        for (; j < n; j++)
        {
            float x = s[j], g = sig[j];
            p[j] = x * g * invN;
            d[j] = da[j] * g * (1f + x * (1f - g)) * invN;
        }
    }

    /// <summary>
    /// s[j] = alpha·s[j] + bias[bucket[j]] for j &lt; n (a multiply, then an add: the same bits on every path). With
    /// AVX-512 and a table of at most 64 entries the lookup is two two-register permutes and a select per 16 lanes
    /// instead of a scalar load per element.
    /// </summary>
    public static void ScaleAddBias(float* s, int n, float alpha, float* bias, int tableSize, int* bucket)
    {
        int j = 0;
        if (Avx512F.IsSupported && tableSize <= 64 && n >= 16)
        {
            TableRegisters(bias, tableSize, out var t0, out var t1, out var t2, out var t3);
            var va = Vector512.Create(alpha);
            for (; j + 16 <= n; j += 16)
                (Vector512.Load(s + j) * va + Lookup(Vector512.Load(bucket + j), t0, t1, t2, t3)).Store(s + j);
        }
        for (; j < n; j++) s[j] = alpha * s[j] + bias[bucket[j]];
    }

    /// <summary>
    /// One pass of a score row, for j &lt; n: x = alpha·s[j] + bias[bucket[j]] (as <see cref="ScaleAddBias"/>),
    /// g = σ(x) (<see cref="CpuSilu.S(Vector512{float})"/>), p[j] = x·g·invN and, with <paramref name="da"/>,
    /// d[j] = da[j]·g·(1 + x·(1 − g))·invN: the same operations, so the same bits, as ScaleAddBias followed by
    /// <see cref="CpuSilu.SiluScaled"/> (forward) or by <see cref="CpuSilu.Sigmoid"/> and <see cref="SiluForwardBackward"/>
    /// (backward), without storing x and σ. Whole vectors up to n rounded up to 16 are computed, so s, da and bucket
    /// must be readable (s and da finite) there and p, d writable; lanes at or past n get values the caller overwrites.
    /// Returns false, computing nothing, where it does not apply (no AVX-512, or a table of more than 64 entries).
    /// </summary>
    public static bool BiasSilu(float* s, int n, float alpha, float* bias, int tableSize, int* bucket, float invN, float* p,
        float* da, float* d)
    {
        if (!Avx512F.IsSupported || !Vector512.IsHardwareAccelerated || tableSize > 64) return false;
        TableRegisters(bias, tableSize, out var t0, out var t1, out var t2, out var t3);
        var va = Vector512.Create(alpha);
        var vn = Vector512.Create(invN);
        var one = Vector512<float>.One;
        for (int j = 0; j < n; j += 16)
        {
            var x = Vector512.Load(s + j) * va + Lookup(Vector512.Load(bucket + j), t0, t1, t2, t3);
            var g = CpuSilu.S(x);
            (x * g * vn).Store(p + j);
            if (da != null) (Vector512.Load(da + j) * g * (one + x * (one - g)) * vn).Store(d + j);
        }
        return true;
    }

    /// <summary>The bias table of at most 64 entries in four registers (16 entries each), zero past <paramref name="tableSize"/>.</summary>
    private static void TableRegisters(float* bias, int tableSize, out Vector512<float> t0, out Vector512<float> t1,
        out Vector512<float> t2, out Vector512<float> t3)
    {
        float* t = stackalloc float[64];
        Zero(t, 64);
        Copy(bias, t, tableSize);
        t0 = Vector512.Load(t);
        t1 = Vector512.Load(t + 16);
        t2 = Vector512.Load(t + 32);
        t3 = Vector512.Load(t + 48);
    }

    /// <summary>table[idx] for 16 lanes (idx in [0, 64)), the table in 4 registers: two two-register permutes and a select.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Lookup(Vector512<int> idx, Vector512<float> t0, Vector512<float> t1, Vector512<float> t2, Vector512<float> t3)
    {
        var hi = Vector512.Create(32);
        var lo = Avx512F.PermuteVar16x32x2(t0, idx, t1);
        var up = Avx512F.PermuteVar16x32x2(t2, idx, t3);
        return Vector512.ConditionalSelect(Vector512.Equals(idx & hi, hi).AsSingle(), up, lo);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Ld512(float* p, bool overwrite) => overwrite ? Vector512<float>.Zero : Vector512.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Ld256(float* p, bool overwrite) => overwrite ? Vector256<float>.Zero : Vector256.Load(p);
}
