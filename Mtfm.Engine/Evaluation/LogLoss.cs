namespace Mtfm.Engine.Evaluation;

/// <summary>
/// Mean binary cross-entropy of predicted probabilities: −mean(y·ln p + (1−y)·ln(1−p)), with p clipped to
/// [<see cref="DefaultEpsilon"/>, 1 − <see cref="DefaultEpsilon"/>] (in double) so a confident wrong prediction costs
/// at most −ln(1e-7) ≈ 16.1 instead of infinity. Probabilities outside [0, 1] or NaN are rejected, not clipped.
/// </summary>
internal static class LogLoss
{
    /// <summary>The clipping epsilon, 1e-7 (as in scikit-learn's historical default for float32 inputs).</summary>
    public const double DefaultEpsilon = 1e-7;

    /// <summary>Mean log-loss; NaN for an empty set.</summary>
    /// <param name="probabilities">Predicted P(label = 1), each in [0, 1].</param>
    /// <param name="labels">0 or 1 per exposure.</param>
    /// <param name="epsilon">Clipping bound, in (0, 0.5).</param>
    /// <exception cref="ArgumentException">Lengths differ, a label is not 0/1, or a probability is outside [0, 1].</exception>
    public static double Compute(ReadOnlySpan<float> probabilities, ReadOnlySpan<float> labels, double epsilon = DefaultEpsilon)
    {
        BinaryLabels.Validate(probabilities, labels, nameof(probabilities), nameof(labels));
        if (!(epsilon > 0 && epsilon < 0.5))
            throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "epsilon must be in (0, 0.5).");
        if (probabilities.Length == 0) return double.NaN;
        double sum = 0;
        for (int i = 0; i < probabilities.Length; i++)
            sum += Term(probabilities[i], labels[i], epsilon, i);
        return sum / probabilities.Length;
    }

    /// <summary>One exposure's clipped loss; validates the probability range.</summary>
    internal static double Term(float p, float y, double epsilon, int index)
    {
        if (!(p >= 0f && p <= 1f))
            throw new ArgumentException($"probabilities[{index}] = {p}: must be in [0, 1].", "probabilities");
        double q = Math.Clamp((double)p, epsilon, 1 - epsilon);
        return y == 1f ? -Math.Log(q) : -Math.Log(1 - q);
    }
}
