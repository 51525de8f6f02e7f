namespace Mtfm.Engine.Training;

/// <summary>Hyper-parameters of <see cref="MtfmTrainer"/>.</summary>
internal sealed record TrainOptions
{
    /// <summary>
    /// Passes over the training instances (early stopping may end sooner); 0 (the default) = automatic
    /// (<see cref="ResolveEpochs"/>): as many passes as give <see cref="AutoStepBudget"/> optimizer steps, at least 1
    /// and at most <see cref="MaxAutoEpochs"/>.
    /// </summary>
    public int Epochs { get; init; }

    /// <summary>Optimizer steps automatic epochs aim for (docs/training.md: more passes over a large log stopped paying).</summary>
    public const long AutoStepBudget = 3000;

    /// <summary>Most passes automatic epochs make (a small log).</summary>
    public const int MaxAutoEpochs = 7;

    /// <summary>
    /// The epochs of a run with <paramref name="batchesPerEpoch"/> batches per pass: <see cref="Epochs"/> when set,
    /// else ⌈<see cref="AutoStepBudget"/> / batches⌉ clamped to [1, <see cref="MaxAutoEpochs"/>].
    /// </summary>
    public int ResolveEpochs(long batchesPerEpoch)
    {
        if (Epochs > 0) return Epochs;
        long b = Math.Max(1, batchesPerEpoch);
        return (int)Math.Clamp((AutoStepBudget + b - 1) / b, 1, MaxAutoEpochs);
    }

    /// <summary>A batch closes before it would exceed this many tokens.</summary>
    public int BatchTokens { get; init; } = 4096;

    /// <summary>Peak learning rate of dense parameters.</summary>
    public float LearningRate { get; init; } = 2e-3f;

    /// <summary>
    /// Peak learning rate of embedding tables (row-sparse Adam). Adam moves every looked-up row by about this much per
    /// coordinate and update whatever its gradient's size, so a row seen a few times is moved as far by noise as a
    /// frequent one is by signal; 1e-4 (1/20 of the dense rate; 1e-3 before 2026-12-07) keeps rare rows near their
    /// initialisation. docs/quality.md has the measurements.
    /// </summary>
    public float EmbeddingLearningRate { get; init; } = DefaultEmbeddingLearningRate;

    /// <summary>The default of <see cref="EmbeddingLearningRate"/>.</summary>
    public const float DefaultEmbeddingLearningRate = 1e-4f;

    /// <summary>Share of the steps spent warming up linearly.</summary>
    public float WarmupFraction { get; init; } = 0.05f;

    /// <summary>Decoupled weight decay of dense weights.</summary>
    public float WeightDecay { get; init; } = 1e-4f;

    /// <summary>Global gradient-norm clip (0 = off).</summary>
    public float ClipNorm { get; init; } = 1f;

    /// <summary>
    /// Largest decay of the exponential moving average of the dense weights that is validated, kept as the best weights
    /// and returned (<see cref="WeightAverage"/>: d = min(this, s/(s+9)) after step s; embedding tables are not
    /// averaged); 0 = off (the training weights themselves are validated). Measured effect: docs/training.md.
    /// </summary>
    public float WeightAverageDecay { get; init; } = 0.995f;

    /// <summary>
    /// Weight of the within-user ranking term added to the objective the step differentiates (0 = off): per task, the
    /// mean over a batch's (clicked, not clicked) exposure pairs of one user (<see cref="Model.RankingPairs"/>) of
    /// softplus(−(z⁺ − z⁻)), i.e. a pairwise logistic loss on the logit difference. The BCE alone weighs a user's
    /// ranking among their own exposures only as far as it lowers the log-loss across users; this term trains it
    /// directly (what GAUC measures). The reported training loss stays the BCE sum (the validation loss's scale).
    /// Off by default: at 0.1 it raised GAUC on the synthetic logs but lowered MovieLens (docs/quality.md).
    /// </summary>
    public float RankingLossWeight { get; init; }

    /// <summary>Evaluations without a validation-GAUC improvement before stopping.</summary>
    public int Patience { get; init; } = 2;

    /// <summary>Evaluate on the validation part this often (in steps; 0 = once per epoch).</summary>
    public int EvaluateEvery { get; init; }

    /// <summary>Train on this scenario's exposures only (the labels of the others are masked out); null = all.</summary>
    public int? OnlyScenario { get; init; }

    /// <summary>Seed of the batch order.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>
    /// Stop after this many optimizer steps (0 = no limit). A run cut short by this limit skips the validation of the
    /// cut epoch and restores nothing: it is for throughput measurements (Mtfm.Bench <c>cuda-quick</c>).
    /// </summary>
    public long MaxSteps { get; init; }

    /// <summary>Folder of the training checkpoints (null = none are written).</summary>
    public string? CheckpointDirectory { get; init; }

    /// <summary>Write a checkpoint every this many steps (0 = only at the end of each epoch).</summary>
    public long CheckpointEvery { get; init; }

    /// <summary>Checkpoints kept (the newest ones).</summary>
    public int KeepCheckpoints { get; init; } = 3;

    /// <summary>Continue from the newest valid checkpoint in <see cref="CheckpointDirectory"/> (from the start when there is none).</summary>
    public bool Resume { get; init; }

    /// <summary>Consecutive steps with a non-finite loss or gradient (each skipped) after which training stops.</summary>
    public int MaxConsecutiveNonFiniteSteps { get; init; } = 10;

    /// <summary>
    /// Build the next training batch on a background thread while the current step runs (the batches and their order
    /// are the same either way); null (the default) = where the step leaves a core free: on CUDA, and on a CPU backend
    /// with fewer threads than cores (with every core in the step's parallel loops it measured no faster: BENCHMARKS.md).
    /// </summary>
    public bool? PrefetchBatches { get; init; }

    /// <summary>What a resumed run must share with the run that wrote the checkpoint.</summary>
    internal string Fingerprint() => BaseFingerprint() + (RankingLossWeight > 0 ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $";ranking={RankingLossWeight:R}") : "");

    private string BaseFingerprint() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"epochs={Epochs};batch_tokens={BatchTokens};lr={LearningRate:R};emb_lr={EmbeddingLearningRate:R};warmup={WarmupFraction:R};" +
        $"wd={WeightDecay:R};clip={ClipNorm:R};patience={Patience};evaluate_every={EvaluateEvery};only_scenario={OnlyScenario?.ToString() ?? "all"};" +
        $"seed={Seed};max_steps={MaxSteps};weight_average={WeightAverageDecay:R}");

    /// <summary>Throws naming the first bad field.</summary>
    public void Validate()
    {
        if (Epochs < 0) throw new ArgumentException($"Epochs = {Epochs} must be ≥ 1, or 0 for automatic.", nameof(Epochs));
        if (BatchTokens < 1) throw new ArgumentException($"BatchTokens = {BatchTokens} must be ≥ 1.", nameof(BatchTokens));
        if (!(LearningRate > 0 && float.IsFinite(LearningRate))) throw new ArgumentException($"LearningRate = {LearningRate} must be finite and > 0.", nameof(LearningRate));
        if (!(EmbeddingLearningRate > 0 && float.IsFinite(EmbeddingLearningRate))) throw new ArgumentException($"EmbeddingLearningRate = {EmbeddingLearningRate} must be finite and > 0.", nameof(EmbeddingLearningRate));
        if (!(WarmupFraction >= 0 && WarmupFraction < 1)) throw new ArgumentException($"WarmupFraction = {WarmupFraction} must lie in [0, 1).", nameof(WarmupFraction));
        if (!(WeightAverageDecay >= 0 && WeightAverageDecay < 1)) throw new ArgumentException($"WeightAverageDecay = {WeightAverageDecay} must lie in [0, 1) (0 = off).", nameof(WeightAverageDecay));
        if (!(RankingLossWeight >= 0 && float.IsFinite(RankingLossWeight))) throw new ArgumentException($"RankingLossWeight = {RankingLossWeight} must be finite and ≥ 0 (0 = off).", nameof(RankingLossWeight));
        if (!(ClipNorm >= 0)) throw new ArgumentException($"ClipNorm = {ClipNorm} must be ≥ 0.", nameof(ClipNorm));
        if (MaxSteps < 0) throw new ArgumentException($"MaxSteps = {MaxSteps} must be ≥ 0 (0 = no limit).", nameof(MaxSteps));
        if (CheckpointEvery < 0) throw new ArgumentException($"CheckpointEvery = {CheckpointEvery} must be ≥ 0 (0 = at the end of each epoch).", nameof(CheckpointEvery));
        if (KeepCheckpoints < 1) throw new ArgumentException($"KeepCheckpoints = {KeepCheckpoints} must be ≥ 1.", nameof(KeepCheckpoints));
        if (MaxConsecutiveNonFiniteSteps < 1) throw new ArgumentException($"MaxConsecutiveNonFiniteSteps = {MaxConsecutiveNonFiniteSteps} must be ≥ 1.", nameof(MaxConsecutiveNonFiniteSteps));
        if (Resume && CheckpointDirectory is null) throw new ArgumentException("Resume needs a CheckpointDirectory.", nameof(Resume));
        if (Patience < 1) throw new ArgumentException($"Patience = {Patience} must be ≥ 1.", nameof(Patience));
    }
}
