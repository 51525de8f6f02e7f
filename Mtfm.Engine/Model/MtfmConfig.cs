namespace Mtfm.Engine.Model;

/// <summary>
/// The size and shape of an MTFM network (spec §5). Use a preset (<see cref="Tiny"/>, <see cref="Small"/>,
/// <see cref="Base"/>) and override what you need with <c>with</c>.
/// </summary>
public sealed record MtfmConfig
{
    /// <summary>Token width d_model.</summary>
    public int DModel { get; init; } = 64;

    /// <summary>Number of HTA blocks B.</summary>
    public int Blocks { get; init; } = 1;

    /// <summary>Target layers per block K (the paper's best is 3, written 3:1).</summary>
    public int TargetLayersPerBlock { get; init; } = 1;

    /// <summary>Query heads h.</summary>
    public int Heads { get; init; } = 2;

    /// <summary>Key/value heads g (divides <see cref="Heads"/>; GQA).</summary>
    public int KvHeads { get; init; } = 1;

    /// <summary>Shared MMoE experts E.</summary>
    public int Experts { get; init; } = 4;

    /// <summary>Width of each expert d_e.</summary>
    public int ExpertWidth { get; init; } = 32;

    /// <summary>Hidden width of each (scenario, task) tower.</summary>
    public int TowerWidth { get; init; } = 16;

    /// <summary>Embedding width of every categorical feature.</summary>
    public int EmbeddingDim { get; init; } = 16;

    /// <summary>Hidden width of the tokenizer MLPs (Linear → SiLU → Linear).</summary>
    public int TokenizerHidden { get; init; } = 64;

    /// <summary>Time buckets per direction NB of the relative time bias.</summary>
    public int TimeBuckets { get; init; } = DefaultTimeBuckets;

    /// <summary>The default of <see cref="TimeBuckets"/>.</summary>
    public const int DefaultTimeBuckets = 32;

    /// <summary>
    /// Whether T tokenizers also read the instance's history statistics (<see cref="Data.HistoryStatistics"/>:
    /// causal counts and shares of the user's visible behaviour, overall and on the candidate's feature values).
    /// On by default for models with sequences; the MMoE baseline (no sequences) has it off. See docs/quality.md.
    /// </summary>
    public bool HistoryStatistics { get; init; } = true;

    /// <summary>
    /// Whether T tokenizers also read cross-user statistics of the candidate's feature values
    /// (<see cref="Data.PopulationStatistics"/>: how often anyone was shown and clicked items, categories, … holding the
    /// candidate's values, before its time). The state is saved with the model for serving. Off in a configuration
    /// (checkpoints written before it existed load with it off); <c>mtfm train</c> and <c>TrainingSettings</c> turn it
    /// on for presets with sequences (<see cref="WithDefaultPopulationStatistics"/>). See docs/quality.md.
    /// </summary>
    public bool PopulationStatistics { get; init; }

    /// <summary>
    /// This configuration with <see cref="PopulationStatistics"/> on when it has transformer blocks (the training default;
    /// the MMoE baseline stays without), <see cref="UserRecentRatePrior"/> = <see cref="DefaultUserRecentRatePrior"/>
    /// for the user columns' last-day click rates and <see cref="UserRatesAtWindowStart"/> on (whichever preset: an MMoE
    /// run that turns the statistics on reads them so too).
    /// </summary>
    public MtfmConfig WithDefaultPopulationStatistics() =>
        this with { PopulationStatistics = Blocks > 0, UserRecentRatePrior = DefaultUserRecentRatePrior, UserRatesAtWindowStart = true };

    /// <summary>
    /// Whether the population statistics of a scenario's <c>userFeatures</c> columns (the user's own exposure counts and
    /// click rates, in the scenario and in all scenarios) count only the windows before the T token's own
    /// (<see cref="Data.PopulationStatistics"/>): every exposure of a user in one window then reads the same user figures.
    /// Read per exposure, they move with each earlier outcome of the window, which reorders a user's own exposures for
    /// no reason tied to the items (that window's outcomes still reach the T tokens through the feedback tokens' history
    /// statistics). Off in a configuration (checkpoints written before it existed read per exposure, as they were
    /// trained); <see cref="WithDefaultPopulationStatistics"/> turns it on. See docs/quality.md.
    /// </summary>
    public bool UserRatesAtWindowStart { get; init; }

    /// <summary>
    /// Pseudo-exposures of the prior that smooths the last-day (decayed) click rates the population statistics give the
    /// columns of a scenario's <c>userFeatures</c> (the user's own recent click rate, in the scenario and in all
    /// scenarios; <see cref="Data.PopulationStatistics"/>). Every other rate is smoothed with 10. A light user's recent
    /// rate jumps with each outcome, which moves their scores from one exposure to the next for no predictive reason, so
    /// a stronger prior keeps it near the scenario's rate until the user has many recent exposures. 10 in a configuration
    /// (checkpoints written before it existed were trained with 10 and load with it);
    /// <see cref="WithDefaultPopulationStatistics"/> sets <see cref="DefaultUserRecentRatePrior"/>. See docs/quality.md.
    /// </summary>
    public double UserRecentRatePrior { get; init; } = Data.PopulationStatistics.PriorStrength;

    /// <summary>The training default of <see cref="UserRecentRatePrior"/>.</summary>
    public const double DefaultUserRecentRatePrior = 100;

    /// <summary>
    /// Whether scenarios whose T tokens take the same inputs (the same features in the same order, hence the same
    /// statistics columns) share one T tokenizer and one gate and tower per task, told apart by a hidden-layer bias of
    /// their own in the shared tokenizer. A small scenario then learns from every scenario of its kind, as a tree
    /// model with the scenario as a feature does, instead of from its own exposures alone. Scenarios with features of
    /// their own keep their own tokenizer and heads; with no two alike the network is the same as with it off. Off in a
    /// configuration (checkpoints written before it existed load with it off); <c>mtfm train</c> and
    /// <c>TrainingSettings</c> turn it on for presets with sequences (<see cref="WithDefaultScenarioPooling"/>). See
    /// docs/quality.md.
    /// </summary>
    public bool ScenarioPooling { get; init; }

    /// <summary>This configuration with <see cref="ScenarioPooling"/> on when it has transformer blocks (the training default; the MMoE baseline keeps a tokenizer and heads per scenario).</summary>
    public MtfmConfig WithDefaultScenarioPooling() => this with { ScenarioPooling = Blocks > 0 };

    /// <summary>Which layers are stacked (HTA, all full, all target).</summary>
    public AttentionMode Attention { get; init; } = AttentionMode.Hta;

    /// <summary>Width of a Q/K head: d_model / h.</summary>
    public int Dqk => DModel / Heads;

    /// <summary>Width of a V head: d_model / h.</summary>
    public int Dv => DModel / Heads;

    /// <summary>Total transformer layers B·(1 + K).</summary>
    public int Layers => Blocks * (1 + TargetLayersPerBlock);

    /// <summary>True when layer <paramref name="layer"/> is a full-attention layer.</summary>
    public bool IsFullLayer(int layer) => Attention switch
    {
        AttentionMode.Full => true,
        AttentionMode.TargetOnly => false,
        _ => layer % (1 + TargetLayersPerBlock) == 0,
    };

    /// <summary>The preset for quick CPU runs (trains in minutes on 2 cores).</summary>
    public static MtfmConfig Tiny => new();

    /// <summary>A mid-size preset.</summary>
    public static MtfmConfig Small => new()
    {
        DModel = 128, Blocks = 2, TargetLayersPerBlock = 3, Heads = 4, KvHeads = 1, Experts = 4, ExpertWidth = 64,
        TowerWidth = 32, TokenizerHidden = 128,
    };

    /// <summary>The paper's best shape (3:1 × 4, h = 3, g = 1) at d_model 768.</summary>
    public static MtfmConfig Base => new()
    {
        DModel = 768, Blocks = 4, TargetLayersPerBlock = 3, Heads = 3, KvHeads = 1, Experts = 8, ExpertWidth = 256,
        TowerWidth = 128, EmbeddingDim = 32, TokenizerHidden = 512,
    };

    /// <summary>
    /// The classic production baseline: the same tokenizers of the exposure features and the same MMoE heads, but no
    /// behaviour sequences and no transformer (0 blocks).
    /// </summary>
    public static MtfmConfig Mmoe => new() { Blocks = 0, HistoryStatistics = false };

    /// <summary>The preset called <paramref name="name"/> (tiny, small, base).</summary>
    public static MtfmConfig Preset(string name) => name.ToLowerInvariant() switch
    {
        "tiny" => Tiny,
        "small" => Small,
        "base" => Base,
        "mmoe" => Mmoe,
        _ => throw new ArgumentException($"Unknown preset '{name}': use tiny, small, base or mmoe.", nameof(name)),
    };

    /// <summary>Throws <see cref="ArgumentException"/> naming the first inconsistent field.</summary>
    public void Validate()
    {
        static void Positive(int v, string name)
        {
            if (v < 1) throw new ArgumentException($"{name} = {v} must be ≥ 1.", name);
        }
        Positive(DModel, nameof(DModel));
        if (Blocks < 0) throw new ArgumentException($"{nameof(Blocks)} = {Blocks} must be ≥ 0 (0 = the MMoE baseline without sequences).", nameof(Blocks));
        if (TargetLayersPerBlock < 0) throw new ArgumentException($"{nameof(TargetLayersPerBlock)} = {TargetLayersPerBlock} must be ≥ 0.", nameof(TargetLayersPerBlock));
        Positive(Heads, nameof(Heads));
        Positive(KvHeads, nameof(KvHeads));
        if (Heads % KvHeads != 0) throw new ArgumentException($"{nameof(KvHeads)} = {KvHeads} must divide {nameof(Heads)} = {Heads}.", nameof(KvHeads));
        if (DModel % Heads != 0) throw new ArgumentException($"{nameof(DModel)} = {DModel} must be a multiple of {nameof(Heads)} = {Heads}.", nameof(DModel));
        Positive(Experts, nameof(Experts));
        Positive(ExpertWidth, nameof(ExpertWidth));
        Positive(TowerWidth, nameof(TowerWidth));
        Positive(EmbeddingDim, nameof(EmbeddingDim));
        Positive(TokenizerHidden, nameof(TokenizerHidden));
        if (!double.IsFinite(UserRecentRatePrior) || UserRecentRatePrior <= 0)
            throw new ArgumentException($"{nameof(UserRecentRatePrior)} = {UserRecentRatePrior} must be a finite number > 0.", nameof(UserRecentRatePrior));
        if (TimeBuckets < 2 || TimeBuckets > 128) throw new ArgumentException($"{nameof(TimeBuckets)} = {TimeBuckets} must lie in [2, 128].", nameof(TimeBuckets));
    }
}
