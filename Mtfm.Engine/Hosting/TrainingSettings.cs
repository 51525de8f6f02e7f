using Mtfm.Engine.Model;

namespace Mtfm.Engine.Hosting;

/// <summary>
/// What to train: the network (a preset name or a full <see cref="MtfmConfig"/>) and the optimisation settings. The
/// defaults are those of <c>mtfm train</c>. The optimiser (AdamW for dense weights, row-sparse Adam for embeddings,
/// warm-up then cosine decay, gradient clipping, early stopping on the validation CTR GAUC) is described in
/// docs/training.md.
/// </summary>
public sealed record TrainingSettings
{
    /// <summary>The network preset: <c>tiny</c>, <c>small</c>, <c>base</c> or <c>mmoe</c> (ignored when <see cref="Model"/> is set).</summary>
    public string Preset { get; init; } = "tiny";

    /// <summary>A full network configuration that replaces <see cref="Preset"/>; null = the preset.</summary>
    public MtfmConfig? Model { get; init; }

    /// <summary>
    /// Passes over the training part (early stopping may end sooner); 0 (the default) = automatic: enough passes for
    /// about 3,000 optimizer steps, at least 1 and at most 7 (a large log gets fewer passes, a small one 7).
    /// </summary>
    public int Epochs { get; init; }

    /// <summary>A batch closes before it would exceed this many tokens; at least 1.</summary>
    public int BatchTokens { get; init; } = 4096;

    /// <summary>Peak learning rate of the dense weights (finite, &gt; 0).</summary>
    public float LearningRate { get; init; } = 2e-3f;

    /// <summary>
    /// Peak learning rate of the embedding tables (finite, &gt; 0; default 1e-4). Kept well below the dense rate:
    /// Adam moves a looked-up row by about this much per update however rarely the row is seen, so rare ids would
    /// otherwise learn mostly noise (docs/training.md).
    /// </summary>
    public float EmbeddingLearningRate { get; init; } = Training.TrainOptions.DefaultEmbeddingLearningRate;

    /// <summary>
    /// Weight of the within-user ranking term of the training objective (finite, ≥ 0; 0 = off): a pairwise logistic
    /// loss on each user's (clicked, not clicked) exposure pairs within a batch, beside the per-exposure BCE
    /// (docs/training.md). Default 0: measured on five logs it raised GAUC on two and lowered MovieLens (docs/quality.md).
    /// </summary>
    public float RankingLossWeight { get; init; }

    /// <summary>Seed of the weight initialisation and the batch order: a CPU run is bit-for-bit reproducible for a fixed seed and thread count.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>
    /// The network configuration these settings name (validated). A preset with behaviour sequences gets
    /// <see cref="MtfmConfig.PopulationStatistics"/> and <see cref="MtfmConfig.ScenarioPooling"/> turned on, as <c>mtfm train</c> does; a full <see cref="Model"/> is taken as it is.
    /// </summary>
    /// <exception cref="ArgumentException">An unknown preset or an inconsistent configuration.</exception>
    public MtfmConfig ResolveModel()
    {
        var c = Model ?? MtfmConfig.Preset(Preset ?? throw new ArgumentException("Preset is null.", nameof(Preset))).WithDefaultPopulationStatistics().WithDefaultScenarioPooling();
        c.Validate();
        return c;
    }
}
