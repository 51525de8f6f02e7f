namespace Mtfm.Engine.Training;

/// <summary>The fp32 optimizer state of one dense parameter tensor under <see cref="AdamW"/>: m, v and the step count.</summary>
internal sealed class AdamWState
{
    /// <summary>Zero state for a tensor of <paramref name="length"/> elements.</summary>
    public AdamWState(int length)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length), length, "length must be ≥ 0.");
        FirstMoment = new float[length];
        SecondMoment = new float[length];
    }

    /// <summary>m (checkpointed with the model when optimizer state is saved).</summary>
    public float[] FirstMoment { get; }

    /// <summary>v.</summary>
    public float[] SecondMoment { get; }

    /// <summary>Updates applied so far (the next update uses t = Step + 1). Settable to restore a checkpoint.</summary>
    public long Step { get; set; }

    /// <summary>Applies one AdamW update to <paramref name="parameters"/> and advances <see cref="Step"/>.</summary>
    public void Update(Span<float> parameters, ReadOnlySpan<float> gradients, float learningRate, AdamOptions options)
    {
        if (parameters.Length != FirstMoment.Length)
            throw new ArgumentException($"parameters has {parameters.Length} entries but this state was made for {FirstMoment.Length}.", nameof(parameters));
        AdamW.Step(parameters, gradients, FirstMoment, SecondMoment, Step + 1, learningRate, options);
        Step++;
    }
}
