using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// SiLU, the sigmoid and SiLU's gradient (added or written) on contiguous runs: one pass, one vector function per
/// width. A run's tail goes through the same vector code (the last full vector recomputed, or a padded one), so every
/// element gets the same bits wherever it sits and however long its run is; a whole-tensor SiLU, a column-range SiLU
/// and the attention's SiLU of the same values agree exactly.
/// y = x / (1 + e^−x); dx += dy·s·(1 + x·(1 − s)) with s = 1 / (1 + e^−x). e^t is <see cref="Exp(Vector512{float})"/>:
/// a float polynomial within 2 ulp of e^t, several times cheaper than the runtime's double-precision vector exp.
/// </summary>
internal static unsafe class CpuSilu
{
    /// <summary>y = SiLU(x) over n values (y must not overlap x).</summary>
    public static void Forward(float* x, float* y, int n) => Scaled(x, y, n, 1f, silu: true);

    /// <summary>y = SiLU(x)·scale over n values (y must not overlap x): the attention's P = SiLU(S)/n(q) in one pass.</summary>
    public static void SiluScaled(float* x, float* y, int n, float scale) => Scaled(x, y, n, scale, silu: true);

    /// <summary>σ(x) = 1 / (1 + e^−x) over n values (y must not overlap x; the sigmoid inside <see cref="Forward"/>, same bits).</summary>
    public static void Sigmoid(float* x, float* y, int n) => Scaled(x, y, n, 1f, silu: false);

    // Out of place, so a tail of a run of at least one vector is the run's last full vector again (the same code on the
    // same values); only a run shorter than a vector is padded. scale = 1 multiplies exactly.
    private static void Scaled(float* x, float* y, int n, float scale, bool silu)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            var vs = Vector512.Create(scale);
            if (n < 16)
            {
                if (n == 0) return;
                float* t = stackalloc float[16];
                Pad(x, n, t, 16);
                Vector512.Store(G(Vector512.Load(t), vs, silu), t);
                Copy(t, y, n);
                return;
            }
            int i = 0;
            for (; i <= n - 16; i += 16) Vector512.Store(G(Vector512.Load(x + i), vs, silu), y + i);
            if (i < n) Vector512.Store(G(Vector512.Load(x + n - 16), vs, silu), y + n - 16);
            return;
        }
        var ws = Vector256.Create(scale);
        if (n < 8)
        {
            if (n == 0) return;
            float* t = stackalloc float[8];
            Pad(x, n, t, 8);
            Vector256.Store(G(Vector256.Load(t), ws, silu), t);
            Copy(t, y, n);
            return;
        }
        int k = 0;
        for (; k <= n - 8; k += 8) Vector256.Store(G(Vector256.Load(x + k), ws, silu), y + k);
        if (k < n) Vector256.Store(G(Vector256.Load(x + n - 8), ws, silu), y + n - 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> G(Vector512<float> x, Vector512<float> scale, bool silu) => silu ? x * S(x) * scale : S(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> G(Vector256<float> x, Vector256<float> scale, bool silu) => silu ? x * S(x) * scale : S(x);

    /// <summary>dx (+)= dy·SiLU'(x) over n values (<paramref name="accumulate"/> false: overwritten, the same bits as adding into zeros).</summary>
    public static void Backward(float* x, float* dy, float* dx, int n, bool accumulate)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - 16; i += 16) Vector512.Store(B(Vector512.Load(x + i), Vector512.Load(dy + i), accumulate ? Vector512.Load(dx + i) : Vector512<float>.Zero), dx + i);
            if (i < n)
            {
                float* t = stackalloc float[48];
                Pad(x + i, n - i, t, 16);
                Pad(dy + i, n - i, t + 16, 16);
                if (accumulate) Pad(dx + i, n - i, t + 32, 16); // else t[32..48) stays 0 (stackalloc is zeroed)
                Vector512.Store(B(Vector512.Load(t), Vector512.Load(t + 16), Vector512.Load(t + 32)), t);
                Copy(t, dx + i, n - i);
            }
            return;
        }
        for (; i <= n - 8; i += 8) Vector256.Store(B(Vector256.Load(x + i), Vector256.Load(dy + i), accumulate ? Vector256.Load(dx + i) : Vector256<float>.Zero), dx + i);
        if (i < n)
        {
            float* t = stackalloc float[24];
            Pad(x + i, n - i, t, 8);
            Pad(dy + i, n - i, t + 8, 8);
            if (accumulate) Pad(dx + i, n - i, t + 16, 8); // else t[16..24) stays 0
            Vector256.Store(B(Vector256.Load(t), Vector256.Load(t + 8), Vector256.Load(t + 16)), t);
            Copy(t, dx + i, n - i);
        }
    }

    // e^t for float lanes: t clamped to [−87, 88] (e^t stays a normal float; a NaN lane gives a finite value here, and
    // every caller multiplies by x again, so NaN still propagates); t = n·ln2 + r, |r| ≤ ln2/2 (ln2 in two parts);
    // e^r by a degree-6 minimax polynomial (the Cephes expf coefficients); then times 2^n (vscalefps with AVX-512, else 2^n built in the exponent field).
    private const float ExpLo = -87f, ExpHi = 88f, Log2E = 1.44269504088896341f, Ln2Hi = 0.693359375f, Ln2Lo = -2.12194440e-4f;
    private const float P0 = 1.9875691500e-4f, P1 = 1.3981999507e-3f, P2 = 8.3334519073e-3f, P3 = 4.1665795894e-2f, P4 = 1.6666665459e-1f, P5 = 5.0000001201e-1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Exp(Vector512<float> t)
    {
        t = Vector512.MinNative(Vector512.MaxNative(t, Vector512.Create(ExpLo)), Vector512.Create(ExpHi));
        var n = Vector512.Round(t * Vector512.Create(Log2E));
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Hi), t);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Lo), r);
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(P0), r, Vector512.Create(P1));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P2));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P3));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P4));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P5));
        p = Vector512.FusedMultiplyAdd(p, r * r, r + Vector512<float>.One);
        // p·2^n: n is integral and 2^n a normal float in the clamped range, so the one-instruction scale (vscalefps) gives
        // the same bits as multiplying by 2^n built in the exponent field (checked exhaustively over every float input).
        if (Avx512F.IsSupported) return Avx512F.Scale(p, n);
        var scale = (Vector512.ConvertToInt32(n) + Vector512.Create(127)) << 23;
        return p * scale.AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Exp(Vector256<float> t)
    {
        t = Vector256.MinNative(Vector256.MaxNative(t, Vector256.Create(ExpLo)), Vector256.Create(ExpHi));
        var n = Vector256.Round(t * Vector256.Create(Log2E));
        var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2Hi), t);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2Lo), r);
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(P0), r, Vector256.Create(P1));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P2));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P3));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P4));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P5));
        p = Vector256.FusedMultiplyAdd(p, r * r, r + Vector256<float>.One);
        var scale = (Vector256.ConvertToInt32(n) + Vector256.Create(127)) << 23;
        return p * scale.AsSingle();
    }

    /// <summary>σ(x) of 16 lanes: the sigmoid every SiLU path here uses (same bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> S(Vector512<float> x) => Vector512<float>.One / (Vector512<float>.One + Exp(-x));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> S(Vector256<float> x) => Vector256<float>.One / (Vector256<float>.One + Exp(-x));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> B(Vector512<float> x, Vector512<float> dy, Vector512<float> dx)
    {
        var s = S(x);
        return Vector512.FusedMultiplyAdd(dy, s * Vector512.FusedMultiplyAdd(x, Vector512<float>.One - s, Vector512<float>.One), dx);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> B(Vector256<float> x, Vector256<float> dy, Vector256<float> dx)
    {
        var s = S(x);
        return Vector256.FusedMultiplyAdd(dy, s * Vector256.FusedMultiplyAdd(x, Vector256<float>.One - s, Vector256<float>.One), dx);
    }

    private static void Pad(float* src, int count, float* dst, int width)
    {
        for (int j = 0; j < width; j++) dst[j] = j < count ? src[j] : 0f;
    }

    private static void Copy(float* src, float* dst, int count)
    {
        for (int j = 0; j < count; j++) dst[j] = src[j];
    }
}
