namespace Mtfm.Engine.Training;

/// <summary>Shape of the decay after warm-up.</summary>
internal enum DecayShape
{
    /// <summary>Half a cosine from the peak down to the floor.</summary>
    Cosine,

    /// <summary>A straight line from the peak down to the floor.</summary>
    Linear,
}

/// <summary>
/// Linear warm-up then decay to a floor. For 0-based step s:
/// <list type="bullet">
/// <item>s &lt; W (warm-up): lr = peak · (s + 1) / W (the first step already moves; step W−1 reaches the peak);</item>
/// <item>W ≤ s &lt; T: with x = (s − W) / (T − W): cosine lr = floor + (peak − floor)·(1 + cos πx)/2, linear lr = peak − (peak − floor)·x;</item>
/// <item>s ≥ T: lr = floor.</item>
/// </list>
/// </summary>
internal sealed class LearningRateSchedule
{
    /// <summary>Creates a schedule.</summary>
    /// <param name="peak">Learning rate at the end of warm-up (&gt; 0).</param>
    /// <param name="floor">Final learning rate, in [0, peak].</param>
    /// <param name="warmupSteps">W ≥ 0 (0: start at the peak).</param>
    /// <param name="totalSteps">T ≥ W: the step at which the floor is reached.</param>
    /// <param name="shape">Cosine or linear decay.</param>
    public LearningRateSchedule(float peak, float floor, long warmupSteps, long totalSteps, DecayShape shape = DecayShape.Cosine)
    {
        if (!(peak > 0f) || !float.IsFinite(peak)) throw new ArgumentOutOfRangeException(nameof(peak), peak, "peak must be finite and > 0.");
        if (!(floor >= 0f && floor <= peak)) throw new ArgumentOutOfRangeException(nameof(floor), floor, $"floor must be in [0, peak = {peak}].");
        if (warmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(warmupSteps), warmupSteps, "warmupSteps must be ≥ 0.");
        if (totalSteps < warmupSteps) throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, $"totalSteps must be ≥ warmupSteps = {warmupSteps}.");
        if (shape is not (DecayShape.Cosine or DecayShape.Linear)) throw new ArgumentOutOfRangeException(nameof(shape), shape, "unknown decay shape.");
        Peak = peak; Floor = floor; WarmupSteps = warmupSteps; TotalSteps = totalSteps; Shape = shape;
    }

    /// <summary>Peak learning rate.</summary>
    public float Peak { get; }

    /// <summary>Floor learning rate.</summary>
    public float Floor { get; }

    /// <summary>Warm-up steps W.</summary>
    public long WarmupSteps { get; }

    /// <summary>Total steps T.</summary>
    public long TotalSteps { get; }

    /// <summary>Decay shape.</summary>
    public DecayShape Shape { get; }

    /// <summary>Learning rate of 0-based step <paramref name="step"/>.</summary>
    public float At(long step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "step must be ≥ 0.");
        if (step < WarmupSteps) return (float)((double)Peak * (step + 1) / WarmupSteps);
        if (step >= TotalSteps) return Floor;
        double x = (double)(step - WarmupSteps) / (TotalSteps - WarmupSteps);
        double span = (double)Peak - Floor;
        double lr = Shape == DecayShape.Cosine ? Floor + span * 0.5 * (1 + Math.Cos(Math.PI * x)) : Peak - span * x;
        return (float)lr;
    }
}
