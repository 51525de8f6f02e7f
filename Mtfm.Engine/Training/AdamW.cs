using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Mtfm.Engine.Training;

/// <summary>
/// AdamW (Loshchilov &amp; Hutter) for dense fp32 parameters, the PyTorch formulation:
/// <code>
/// m ← β1·m + (1−β1)·g            v ← β2·v + (1−β2)·g²
/// p ← p·(1 − lr·λ) − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)
/// </code>
/// with t the 1-based step count. Weight decay is decoupled (never enters m or v). State m, v is fp32.
/// The kernel is SIMD (Vector512 or Vector256 with FMA, scalar fallback); every path performs the same fused
/// operations in the same order, so results are identical bit for bit whatever the vector width.
/// </summary>
internal static class AdamW
{
    /// <summary>One AdamW step over a dense parameter tensor.</summary>
    /// <param name="parameters">Updated in place.</param>
    /// <param name="gradients">Gradient of the loss, same length.</param>
    /// <param name="firstMoment">m, same length, zero before the first step; updated in place.</param>
    /// <param name="secondMoment">v, same length, zero before the first step; updated in place.</param>
    /// <param name="step">1-based step number t of this update (bias correction).</param>
    /// <param name="learningRate">lr of this step (≥ 0, finite).</param>
    /// <param name="options">β1, β2, ε, λ.</param>
    public static void Step(Span<float> parameters, ReadOnlySpan<float> gradients, Span<float> firstMoment, Span<float> secondMoment,
        long step, float learningRate, AdamOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        int n = parameters.Length;
        if (gradients.Length != n) throw new ArgumentException($"gradients has {gradients.Length} entries but parameters has {n}.", nameof(gradients));
        if (firstMoment.Length != n) throw new ArgumentException($"firstMoment has {firstMoment.Length} entries but parameters has {n}.", nameof(firstMoment));
        if (secondMoment.Length != n) throw new ArgumentException($"secondMoment has {secondMoment.Length} entries but parameters has {n}.", nameof(secondMoment));
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), step, "step is 1-based and must be ≥ 1.");
        if (!(learningRate >= 0f) || !float.IsFinite(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "learningRate must be finite and ≥ 0.");
        var c = Coefficients.For(step, learningRate, options);
        Kernel(parameters, gradients, firstMoment, secondMoment, c);
    }

    /// <summary>Per-step scalars shared by the dense and the row-sparse kernels.</summary>
    internal readonly struct Coefficients
    {
        public readonly float Beta1, OneMinusBeta1, Beta2, OneMinusBeta2, StepSize, InvSqrtBc2, Epsilon, Decay;

        private Coefficients(float beta1, float beta2, float stepSize, float invSqrtBc2, float epsilon, float decay)
        {
            Beta1 = beta1; OneMinusBeta1 = 1f - beta1; Beta2 = beta2; OneMinusBeta2 = 1f - beta2;
            StepSize = stepSize; InvSqrtBc2 = invSqrtBc2; Epsilon = epsilon; Decay = decay;
        }

        public static Coefficients For(long step, float lr, AdamOptions o)
        {
            // Bias corrections in double, then rounded once to float.
            double bc1 = 1.0 - Math.Pow(o.Beta1, step);
            double bc2 = 1.0 - Math.Pow(o.Beta2, step);
            return new Coefficients(o.Beta1, o.Beta2, (float)(lr / bc1), (float)(1.0 / Math.Sqrt(bc2)), o.Epsilon, (float)(1.0 - (double)lr * o.WeightDecay));
        }
    }

    /// <summary>The fused update; lengths already checked. Widest accelerated vectors, then the scalar tail.</summary>
    internal static void Kernel(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, in Coefficients c)
    {
        int i = Vector512.IsHardwareAccelerated ? Body512(p, g, m, v, c) : Vector256.IsHardwareAccelerated ? Body256(p, g, m, v, c) : 0;
        for (; i < p.Length; i++) ScalarElement(ref p[i], g[i], ref m[i], ref v[i], c);
    }

    /// <summary>Vector512 body over whole vectors; returns the number of elements done (the caller finishes the tail).</summary>
    internal static int Body512(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, in Coefficients c)
    {
        int n = p.Length, i = 0;
        ref float rp = ref MemoryMarshal.GetReference(p);
        ref float rg = ref MemoryMarshal.GetReference(g);
        ref float rm = ref MemoryMarshal.GetReference(m);
        ref float rv = ref MemoryMarshal.GetReference(v);
        var b1 = Vector512.Create(c.Beta1); var omb1 = Vector512.Create(c.OneMinusBeta1);
        var b2 = Vector512.Create(c.Beta2); var omb2 = Vector512.Create(c.OneMinusBeta2);
        var nss = Vector512.Create(-c.StepSize); var isb = Vector512.Create(c.InvSqrtBc2);
        var eps = Vector512.Create(c.Epsilon); var dec = Vector512.Create(c.Decay);
        for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var gv = Vector512.LoadUnsafe(ref rg, (nuint)i);
            var mv = Vector512.FusedMultiplyAdd(b1, Vector512.LoadUnsafe(ref rm, (nuint)i), omb1 * gv);
            var vv = Vector512.FusedMultiplyAdd(b2, Vector512.LoadUnsafe(ref rv, (nuint)i), (omb2 * gv) * gv);
            var den = Vector512.FusedMultiplyAdd(Vector512.Sqrt(vv), isb, eps);
            var pv = Vector512.FusedMultiplyAdd(nss, mv / den, Vector512.LoadUnsafe(ref rp, (nuint)i) * dec);
            mv.StoreUnsafe(ref rm, (nuint)i);
            vv.StoreUnsafe(ref rv, (nuint)i);
            pv.StoreUnsafe(ref rp, (nuint)i);
        }
        return i;
    }

    /// <summary>Vector256 body over whole vectors; returns the number of elements done.</summary>
    internal static int Body256(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, in Coefficients c)
    {
        int n = p.Length, i = 0;
        ref float rp = ref MemoryMarshal.GetReference(p);
        ref float rg = ref MemoryMarshal.GetReference(g);
        ref float rm = ref MemoryMarshal.GetReference(m);
        ref float rv = ref MemoryMarshal.GetReference(v);
        var b1 = Vector256.Create(c.Beta1); var omb1 = Vector256.Create(c.OneMinusBeta1);
        var b2 = Vector256.Create(c.Beta2); var omb2 = Vector256.Create(c.OneMinusBeta2);
        var nss = Vector256.Create(-c.StepSize); var isb = Vector256.Create(c.InvSqrtBc2);
        var eps = Vector256.Create(c.Epsilon); var dec = Vector256.Create(c.Decay);
        for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
        {
            var gv = Vector256.LoadUnsafe(ref rg, (nuint)i);
            var mv = Vector256.FusedMultiplyAdd(b1, Vector256.LoadUnsafe(ref rm, (nuint)i), omb1 * gv);
            var vv = Vector256.FusedMultiplyAdd(b2, Vector256.LoadUnsafe(ref rv, (nuint)i), (omb2 * gv) * gv);
            var den = Vector256.FusedMultiplyAdd(Vector256.Sqrt(vv), isb, eps);
            var pv = Vector256.FusedMultiplyAdd(nss, mv / den, Vector256.LoadUnsafe(ref rp, (nuint)i) * dec);
            mv.StoreUnsafe(ref rm, (nuint)i);
            vv.StoreUnsafe(ref rv, (nuint)i);
            pv.StoreUnsafe(ref rp, (nuint)i);
        }
        return i;
    }

    /// <summary>The same fused sequence for one element (used for tails and as the reference of the vector paths).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void ScalarElement(ref float p, float g, ref float m, ref float v, in Coefficients c)
    {
        float mv = MathF.FusedMultiplyAdd(c.Beta1, m, c.OneMinusBeta1 * g);
        float vv = MathF.FusedMultiplyAdd(c.Beta2, v, (c.OneMinusBeta2 * g) * g);
        float den = MathF.FusedMultiplyAdd(MathF.Sqrt(vv), c.InvSqrtBc2, c.Epsilon);
        p = MathF.FusedMultiplyAdd(-c.StepSize, mv / den, p * c.Decay);
        m = mv;
        v = vv;
    }

    /// <summary>Scalar-only kernel (tests compare the vector paths against it bit for bit).</summary>
    internal static void ScalarKernel(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, in Coefficients c)
    {
        for (int i = 0; i < p.Length; i++) ScalarElement(ref p[i], g[i], ref m[i], ref v[i], c);
    }
}
