using Mtfm.Engine.Data;
using Mtfm.Engine.Model;

namespace Mtfm.Engine.Training;

/// <summary>
/// An upper estimate of the memory one training run needs, computed before training allocates anything beyond the
/// parameters: the parameters, their gradients, the optimizer state (AdamW m and v; row-sparse Adam m, v and per-row
/// steps), the best-weights snapshot and a checkpoint's serialisation buffer, the weight average of the dense parameters
/// (<see cref="WeightAverage"/>), and the activations of one batch of
/// <c>batchTokens</c> tokens that the tape keeps for the backward pass (with their gradients).
/// </summary>
internal readonly record struct MemoryEstimate(long ParameterBytes, long GradientBytes, long OptimizerBytes, long SnapshotBytes, long ActivationBytes)
{
    /// <summary>Everything together.</summary>
    public long TotalBytes => ParameterBytes + GradientBytes + OptimizerBytes + SnapshotBytes + ActivationBytes;

    /// <summary>
    /// The estimate for a model of <paramref name="parameterCount"/> fp32 parameters, of which
    /// <paramref name="averagedCount"/> have a weight average (the dense ones when it is on; 0 when off), and batches
    /// of <paramref name="batchTokens"/> tokens.
    /// </summary>
    public static MemoryEstimate For(MtfmConfig config, DataLayout layout, long parameterCount, int batchTokens, bool checkpoints, long averagedCount = 0)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentOutOfRangeException.ThrowIfNegative(averagedCount);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(averagedCount, parameterCount);
        long p = parameterCount * sizeof(float);
        long d = config.DModel;
        int features = layout.Schema.Features.Count;
        // Per token, floats kept by the tape (values and, during backward, their gradients: ×2):
        //  tokenizer: embedding gathers, concatenation, hidden pre/post SiLU, output;
        //  per HSTU layer: norm, U/V/Q/K projections and their SiLU, attention output, its norm, the gate, the output
        //  projection and the residual (≈ 16 d), plus a margin of 2× (the backward's temporaries) for the layer-norm statistics and the time bias.
        long tokenizer = 4L * features * config.EmbeddingDim + 4L * config.TokenizerHidden + 4 * d;
        long perLayer = 32 * d;
        long heads = (long)config.Experts * config.ExpertWidth + 2L * config.TowerWidth + config.Experts;
        long perToken = 2 * (tokenizer + config.Layers * perLayer + heads);
        long activations = perToken * batchTokens * sizeof(float);
        long averages = averagedCount * sizeof(float);
        return new MemoryEstimate(p, p, 2 * p + p / 4, (checkpoints ? 2 * p : p) + averages, activations);
    }

    /// <summary>
    /// Throws <see cref="InsufficientMemoryException"/> with the estimate and the limit when the estimate exceeds
    /// <paramref name="maxBytes"/> (the user's <c>--max-memory</c>; 0 = none) or the memory this process may use.
    /// </summary>
    public void EnsureFits(long maxBytes, long availableBytes)
    {
        if (maxBytes > 0 && TotalBytes > maxBytes)
            throw new InsufficientMemoryException($"training needs an estimated {Describe()}, over --max-memory {Format(maxBytes)}; lower --batch-tokens or choose a smaller preset.");
        if (availableBytes > 0 && TotalBytes > availableBytes)
            throw new InsufficientMemoryException($"training needs an estimated {Describe()}, more than the {Format(availableBytes)} this process may use; lower --batch-tokens or choose a smaller preset.");
    }

    /// <summary>The total and its parts, human-readable.</summary>
    public string Describe() =>
        $"{Format(TotalBytes)} (parameters {Format(ParameterBytes)}, gradients {Format(GradientBytes)}, optimizer state {Format(OptimizerBytes)}, " +
        $"snapshots and weight averages {Format(SnapshotBytes)}, activations {Format(ActivationBytes)})";

    /// <summary>Bytes as KiB/MiB/GiB.</summary>
    public static string Format(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:F1} KiB",
        _ => $"{bytes} B",
    };

    /// <summary>Parses <c>--max-memory</c>: a byte count with an optional K, M, G or T suffix (binary, optional trailing B/iB).</summary>
    public static long ParseSize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string t = text.Trim().ToUpperInvariant();
        if (t.EndsWith("IB", StringComparison.Ordinal)) t = t[..^2];
        else if (t.EndsWith('B')) t = t[..^1];
        long mult = 1;
        if (t.Length > 0 && "KMGT".Contains(t[^1], StringComparison.Ordinal))
        {
            mult = t[^1] switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1L << 40 };
            t = t[..^1];
        }
        if (!double.TryParse(t, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v) || !(v > 0) || v * mult > long.MaxValue)
            throw new ArgumentException($"--max-memory {text}: expected a positive size such as 512M, 8G or 1073741824.");
        return (long)(v * mult);
    }
}
