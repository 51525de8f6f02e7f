using System.Diagnostics;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;

namespace Mtfm.Cli.Commands;

/// <summary>Everything `mtfm train` needs, resolved from its options.</summary>
internal sealed record TrainRequest
{
    public string Data { get; init; } = "synthetic";
    public string? Schema { get; init; }
    public string Preset { get; init; } = "tiny";
    /// <summary>--model: mtfm (the preset) or lightgbm (the baseline on causal statistics).</summary>
    public string Model { get; init; } = "mtfm";
    /// <summary>Overrides the preset's block count.</summary>
    public int? Blocks { get; init; }
    /// <summary>Overrides the preset's target layers per block.</summary>
    public int? TargetLayers { get; init; }
    /// <summary>--history-statistics: overrides the preset's <see cref="MtfmConfig.HistoryStatistics"/>.</summary>
    public bool? HistoryStatistics { get; init; }
    /// <summary>--population-statistics: overrides the preset's <see cref="MtfmConfig.PopulationStatistics"/>.</summary>
    public bool? PopulationStatistics { get; init; }
    /// <summary>--scenario-pooling: overrides the preset's <see cref="MtfmConfig.ScenarioPooling"/>.</summary>
    public bool? ScenarioPooling { get; init; }
    /// <summary>A full model configuration that replaces the preset (programmatic callers and tests).</summary>
    public MtfmConfig? Config { get; init; }
    public AttentionMode Attention { get; init; } = AttentionMode.Hta;
    public AggregationMode Aggregation { get; init; } = AggregationMode.UserWindow;
    public string Scenarios { get; init; } = "all";
    /// <summary>
    /// --feedback: true adds click feedback tokens (FeedbackTokens.WithClickFeedback) to a dataset whose schema declares
    /// none; false never; null (auto, the default) adds them for an MTFM model with sequence layers when the schema
    /// declares none and some scenario carries the first task's label.
    /// </summary>
    public bool? Feedback { get; init; }
    /// <summary>
    /// Statistics cap of the click feedback sequences that --feedback adds (null: <see cref="FeedbackTokens.ClickFeedbackStatisticsCap"/>;
    /// at most their H cap, e.g. 0: none). Programmatic callers and tests; `mtfm eval` uses <see cref="FeedbackOf"/> instead.
    /// </summary>
    public int? FeedbackStatisticsCap { get; init; }
    /// <summary>
    /// The schema a model was trained with (`mtfm eval`): when set, a data schema without feedback blocks of its own
    /// takes that model's blocks (<see cref="FeedbackTokens.WithFeedbackOf"/>), so the data is derived as in the model's
    /// training whatever rule or cap added them then; <see cref="Feedback"/> and <see cref="FeedbackStatisticsCap"/> are ignored.
    /// </summary>
    public DatasetSchema? FeedbackOf { get; init; }
    public int Epochs { get; init; }
    public int BatchTokens { get; init; } = 4096;
    public float LearningRate { get; init; } = 2e-3f;
    /// <summary>--embedding-lr: <see cref="TrainOptions.EmbeddingLearningRate"/>.</summary>
    public float EmbeddingLearningRate { get; init; } = TrainOptions.DefaultEmbeddingLearningRate;
    /// <summary>--weight-average: <see cref="TrainOptions.WeightAverageDecay"/> (0 = off).</summary>
    public float WeightAverageDecay { get; init; } = 0.995f;
    /// <summary>--ranking-loss: <see cref="TrainOptions.RankingLossWeight"/> (0 = off, the default).</summary>
    public float RankingLossWeight { get; init; }
    public ulong Seed { get; init; } = 1;
    public int Threads { get; init; }
    public string Device { get; init; } = "cpu";
    /// <summary>--cuda-attention: fp32 or bf16 (null = not given: fp32 on CUDA).</summary>
    public string? CudaAttention { get; init; }
    public string OutDir { get; init; } = "runs";
    /// <summary>--resume: a run name under <see cref="OutDir"/> (or a run directory) to continue from its newest valid checkpoint.</summary>
    public string? Resume { get; init; }
    /// <summary>--checkpoint-every: steps between checkpoints (0 = at the end of each epoch only).</summary>
    public long CheckpointEvery { get; init; }
    /// <summary>--keep-checkpoints.</summary>
    public int KeepCheckpoints { get; init; } = 3;
    /// <summary>--max-nonfinite-steps: consecutive skipped non-finite steps before training stops.</summary>
    public int MaxNonFiniteSteps { get; init; } = 10;
    /// <summary>--max-memory: refuse to train when the estimate exceeds this (e.g. 8G); null = only the machine's limit.</summary>
    public string? MaxMemory { get; init; }
    /// <summary>--predictions: write one row per test exposure (.csv or .parquet); null = none.</summary>
    public string? Predictions { get; init; }
    /// <summary>--predictions-columns: columns of the event log copied into the predictions file.</summary>
    public IReadOnlyList<string> PredictionColumns { get; init; } = [];
    public string? Name { get; init; }
}

/// <summary>Loads the data of a run and splits it into aggregated train/valid/test parts.</summary>
internal sealed class PreparedData
{
    public required EventStore Store { get; init; }
    public required AggregatedInstances Train { get; init; }
    public required AggregatedInstances Valid { get; init; }
    public required AggregatedInstances Test { get; init; }
    public required NumericStats Stats { get; init; }
    public required string Description { get; init; }

    /// <summary>Loads the events named by <see cref="TrainRequest.Data"/> (and <see cref="TrainRequest.Schema"/>).</summary>
    public static EventStore LoadStore(TrainRequest r, TextWriter log, out string desc)
    {
        EventStore store;
        if (r.PredictionColumns.Count > 0 && (r.Data == "synthetic" || r.Data.StartsWith("synthetic:", StringComparison.Ordinal) || r.Data.StartsWith("movielens:", StringComparison.Ordinal)))
            throw new ArgumentException($"--predictions-columns names columns of an event log; --data {r.Data} is not read from one (export it with `mtfm data export` first).");
        if (r.PredictionColumns.Count > 0 && r.Predictions is null)
            throw new ArgumentException("--predictions-columns needs --predictions <file.csv|file.parquet>.");
        if (MarketConfig.FromName(r.Data) is { } config)
        {
            var market = MarketGenerator.Generate(config);
            store = market.Store;
            desc = $"{r.Data} (seed {config.Seed})";
            log.Write(market.TruthTable(SplitPart.Test));
        }
        else if (r.Data == "synthetic" || r.Data.StartsWith("synthetic:", StringComparison.Ordinal))
        {
            string size = r.Data == "synthetic" ? "default" : r.Data["synthetic:".Length..];
            var synthetic = size switch
            {
                "tiny" => SyntheticConfig.Tiny,
                "default" => SyntheticConfig.Default,
                "large" => SyntheticConfig.Large,
                _ => throw new ArgumentException($"--data {r.Data}: the synthetic sizes are tiny, default and large (and {string.Join(", ", MarketConfig.Names)})."),
            };
            store = SyntheticGenerator.Generate(synthetic).Store;
            desc = $"synthetic ({size}, seed {synthetic.Seed})";
        }
        else if (r.Data.StartsWith("movielens:", StringComparison.Ordinal))
        {
            string dir = r.Data["movielens:".Length..];
            store = MovieLensImporter.Import(dir, log);
            desc = $"MovieLens ({dir})";
        }
        else
        {
            if (r.Schema is null) throw new ArgumentException("--data <events> needs --schema <schema.json>.");
            var schema = DatasetSchema.Load(r.Schema);
            store = new EventStore(new DataLayout(schema));
            var options = new ReadOptions { KeepColumns = r.PredictionColumns };
            var summary = r.Data.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase)
                ? ParquetEventReader.Read(r.Data, store, options)
                : CsvEventReader.Read(r.Data, store, options);
            log.WriteLine(summary.ToString());
            desc = $"{r.Data} with schema {r.Schema}";
        }
        bool declared = FeedbackTokens.Declared(store.Layout.Schema);
        if (r.FeedbackOf is { } model)
        {
            bool copy = !declared && FeedbackTokens.Declared(model);
            store = copy ? FeedbackTokens.Derive(store, FeedbackTokens.WithFeedbackOf(store.Layout.Schema, model)) : FeedbackTokens.Derive(store);
            if (copy) desc += ", the model's feedback tokens";
            return store;
        }
        if (r.Feedback == true && declared) throw new ArgumentException("--feedback on: the schema already declares feedback blocks (use --feedback auto or off).");
        if (r.Feedback == true || (r.Feedback is null && !declared && AutoFeedback(r, store.Layout.Schema)))
        {
            store = FeedbackTokens.Derive(store, FeedbackTokens.WithClickFeedback(store.Layout.Schema, statisticsCap: r.FeedbackStatisticsCap ?? FeedbackTokens.ClickFeedbackStatisticsCap));
            desc += ", click feedback tokens";
        }
        else store = FeedbackTokens.Derive(store);
        return store;
    }

    /// <summary>
    /// --feedback auto: click feedback for an MTFM model that has sequence layers (not the MMoE preset, not LightGBM,
    /// which computes its own running CTRs) when some scenario is labelled with the first task.
    /// </summary>
    private static bool AutoFeedback(TrainRequest r, DatasetSchema schema) =>
        r.Model == "mtfm" && r.Preset != "mmoe" && r.Blocks != 0 && r.Config is not { Blocks: 0 } &&
        schema.Tasks.Count > 0 && schema.Scenarios.Any(sc => sc.Labels.ContainsKey(schema.Tasks[0]));

    public static PreparedData Load(TrainRequest r, TextWriter log)
    {
        var store = LoadStore(r, log, out string desc);
        var split = store.Layout.Schema.Split ?? throw new ArgumentException("The dataset's schema has no temporal split (split.validStart/testStart).");
        var order = store.SortedByUserTime();
        AggregatedInstances Part(SplitPart p, AggregationMode m) => UserLevelAggregator.Aggregate(store, m, p, order);
        return new PreparedData
        {
            Store = store,
            Train = Part(SplitPart.Train, r.Aggregation),
            Valid = Part(SplitPart.Valid, AggregationMode.UserWindow),
            Test = Part(SplitPart.Test, AggregationMode.UserWindow),
            Stats = store.ComputeNumericStats(split.ValidStart),
            Description = desc,
        };
    }
}
