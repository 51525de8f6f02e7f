using System.Numerics.Tensors;

namespace Mtfm.Engine.Training;

/// <summary>
/// Global-norm gradient clipping over every gradient of a step together: dense tensors and the row blocks of
/// row-sparse embedding gradients alike (coalesced, so each touched row counts once). If the global L2 norm
/// exceeds maxNorm, every gradient is multiplied by maxNorm / (norm + 1e-6); otherwise nothing changes.
/// Squares are summed in double over 4096-element chunks in a fixed order (reproducible).
/// </summary>
internal static class GradientClipping
{
    private const int Chunk = 4096;

    /// <summary>Σ x² of one gradient, accumulated in double.</summary>
    public static double SumOfSquares(ReadOnlySpan<float> gradient)
    {
        double s = 0;
        for (int i = 0; i < gradient.Length; i += Chunk)
            s += TensorPrimitives.SumOfSquares(gradient.Slice(i, Math.Min(Chunk, gradient.Length - i)));
        return s;
    }

    /// <summary>The global L2 norm of several gradients.</summary>
    public static double GlobalNorm(IReadOnlyList<ReadOnlyMemory<float>> gradients)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        double s = 0;
        for (int i = 0; i < gradients.Count; i++) s += SumOfSquares(gradients[i].Span);
        return Math.Sqrt(s);
    }

    /// <summary>The factor to multiply gradients by: min(1, maxNorm / (norm + 1e-6)).</summary>
    /// <exception cref="ArgumentOutOfRangeException">maxNorm not finite and &gt; 0, or norm negative.</exception>
    /// <exception cref="ArithmeticException">The norm is NaN or infinite (a gradient holds NaN/Inf): the step must not be taken.</exception>
    public static float ScaleFactor(double globalNorm, float maxNorm)
    {
        if (!(maxNorm > 0f) || !float.IsFinite(maxNorm)) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "maxNorm must be finite and > 0.");
        if (!double.IsFinite(globalNorm)) throw new ArithmeticException($"gradient global norm is {globalNorm}: a gradient holds NaN or infinity.");
        if (globalNorm < 0) throw new ArgumentOutOfRangeException(nameof(globalNorm), globalNorm, "a norm is ≥ 0.");
        double f = maxNorm / (globalNorm + 1e-6);
        return f >= 1 ? 1f : (float)f;
    }

    /// <summary>Computes the global norm of <paramref name="gradients"/>, scales them in place if it exceeds <paramref name="maxNorm"/>, returns the norm before clipping.</summary>
    /// <exception cref="ArithmeticException">The norm is not finite (nothing is scaled).</exception>
    public static double ClipByGlobalNorm(IReadOnlyList<Memory<float>> gradients, float maxNorm)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        double s = 0;
        for (int i = 0; i < gradients.Count; i++) s += SumOfSquares(gradients[i].Span);
        double norm = Math.Sqrt(s);
        float f = ScaleFactor(norm, maxNorm);
        if (f < 1f)
            for (int i = 0; i < gradients.Count; i++) TensorPrimitives.Multiply(gradients[i].Span, f, gradients[i].Span);
        return norm;
    }
}
