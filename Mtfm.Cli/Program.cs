using System.CommandLine;
using Mtfm.Cli.Commands;
using Mtfm.Cli.Serving;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;

namespace Mtfm.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        var root = new RootCommand("mtfm: train, evaluate and serve MTFM multi-scenario recommendation models.");
        root.Subcommands.Add(BuildTrain());
        root.Subcommands.Add(BuildEval());
        root.Subcommands.Add(BuildData());
        root.Subcommands.Add(BuildScore());
        root.Subcommands.Add(BuildServe());
        return root.Parse(args).Invoke();
    }

    private static Command BuildTrain()
    {
        var data = new Option<string>("--data") { Description = "synthetic (default; synthetic:tiny/default/large, synthetic:market[-small|-light]), movielens:<dir>, or an event log (.csv/.parquet) with --schema", DefaultValueFactory = _ => "synthetic" };
        var schema = new Option<string?>("--schema") { Description = "dataset schema JSON for --data <events> (docs/data.md; \"missing\": \"allow\" reads empty cells as missing values, \"sourceMapping\" derives the source from several columns)" };
        var preset = new Option<string>("--preset") { Description = "model: tiny, small, base, or mmoe (the baseline without sequences)", DefaultValueFactory = _ => "tiny" };
        var modelKind = new Option<string>("--model") { Description = "mtfm (default; --preset chooses its size) or lightgbm (gradient-boosted trees on causal statistics, Mtfm.Baselines)", DefaultValueFactory = _ => "mtfm" };
        var blocks = new Option<int?>("--blocks") { Description = "override the preset's number of HTA blocks B" };
        var populationStats = new Option<string?>("--population-statistics") { Description = "on or off: T tokens also read cross-user counts and click rates of the candidate's feature values, from every earlier exposure of the log (docs/quality.md; default: on, off for the mmoe preset)" };
        var scenarioPooling = new Option<string?>("--scenario-pooling") { Description = "on or off: scenarios whose exposures have the same features share one T tokenizer and one gate and tower per task, each with a bias of its own (docs/quality.md; default: on, off for the mmoe preset)" };
        var historyStats = new Option<string?>("--history-statistics") { Description = "on or off: T tokens also read causal counts and shares of the user's visible behaviour (docs/quality.md; default: on, off for the mmoe preset)" };
        var targetLayers = new Option<int?>("--target-layers") { Description = "override the preset's target layers per block K (3 = the paper's 3:1)" };
        var attention = new Option<string>("--attention") { Description = "hta, full or target-only", DefaultValueFactory = _ => "hta" };
        var aggregation = new Option<string>("--aggregation") { Description = "user (user-level windows) or exposure (one instance per exposure)", DefaultValueFactory = _ => "user" };
        var scenarios = new Option<string>("--scenarios") { Description = "all, or one scenario name to train on alone", DefaultValueFactory = _ => "all" };
        var feedback = new Option<string>("--feedback") { Description = "auto, on or off: click feedback tokens (each exposure also enters a feedback sequence with its click outcome, visible strictly later; docs/data.md) for a dataset whose schema declares none; auto: on for MTFM presets with sequences, off for mmoe and lightgbm", DefaultValueFactory = _ => "auto" };
        var epochs = new Option<int>("--epochs") { Description = "passes over the training data (early stopping may end sooner); 0 = auto: enough for about 3,000 steps, 1 to 7", DefaultValueFactory = _ => 0 };
        var batchTokens = new Option<int>("--batch-tokens") { Description = "tokens per batch", DefaultValueFactory = _ => 4096 };
        var lr = new Option<float>("--lr") { Description = "peak learning rate of dense parameters", DefaultValueFactory = _ => 2e-3f };
        var embeddingLr = new Option<float>("--embedding-lr") { Description = "peak learning rate of the embedding tables (row-sparse Adam; docs/training.md)", DefaultValueFactory = _ => TrainOptions.DefaultEmbeddingLearningRate };
        var weightAverage = new Option<float>("--weight-average") { Description = "largest decay of the moving average of the dense weights that is validated and kept (docs/training.md); 0 = off", DefaultValueFactory = _ => 0.995f };
        var rankingLoss = new Option<float>("--ranking-loss") { Description = "weight of a within-user ranking term added to the training objective (a pairwise logistic loss on each user's clicked vs not-clicked exposures in a batch; docs/training.md); 0 = off (the default)", DefaultValueFactory = _ => 0f };
        var seed = new Option<ulong>("--seed") { Description = "seed of initialisation and batch order", DefaultValueFactory = _ => 1UL };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = one per core)", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "cpu, cuda (the first GPU), or cuda-emulated (the CUDA kernels on the host emulation named by MTFM_CUDA_EMU_LIB; for tests)", DefaultValueFactory = _ => "cpu" };
        var cudaAttention = CudaAttentionOption();
        var outDir = new Option<string>("--out") { Description = "directory that receives runs/<name>/", DefaultValueFactory = _ => "runs" };
        var name = new Option<string?>("--name") { Description = "run name (default: a timestamp)" };
        var resume = new Option<string?>("--resume") { Description = "continue the run <name> (under --out, or a run directory) from its newest valid checkpoint; give the same training options" };
        var ckptEvery = new Option<long>("--checkpoint-every") { Description = "write a training checkpoint every N steps (0 = at the end of each epoch only)", DefaultValueFactory = _ => 0 };
        var keepCkpt = new Option<int>("--keep-checkpoints") { Description = "training checkpoints kept (the newest)", DefaultValueFactory = _ => 3 };
        var maxNonFinite = new Option<int>("--max-nonfinite-steps") { Description = "stop after this many consecutive steps skipped for a non-finite loss or gradient", DefaultValueFactory = _ => 10 };
        var maxMemory = new Option<string?>("--max-memory") { Description = "refuse to train when the memory estimate exceeds this size (e.g. 512M, 8G)" };
        var (predictions, predictionColumns) = PredictionOptions();
        var cmd = new Command("train", "Train MTFM (default: the built-in synthetic multi-scenario data, preset tiny, on the CPU).")
        {
            data, schema, preset, modelKind, blocks, targetLayers, historyStats, populationStats, scenarioPooling, attention, aggregation, scenarios, feedback, epochs, batchTokens, lr, embeddingLr, weightAverage, rankingLoss, seed, threads, device, cudaAttention, outDir, name,
            resume, ckptEvery, keepCkpt, maxNonFinite, maxMemory, predictions, predictionColumns,
        };
        cmd.SetAction(p => Guard(() => TrainCommand.Run(new TrainRequest
        {
            Data = p.GetValue(data)!,
            Schema = p.GetValue(schema),
            Preset = p.GetValue(preset)!,
            Model = p.GetValue(modelKind)!,
            Blocks = p.GetValue(blocks),
            TargetLayers = p.GetValue(targetLayers),
            HistoryStatistics = p.GetValue(historyStats) switch
            {
                null => null,
                "on" => true,
                "off" => false,
                var v => throw new ArgumentException($"--history-statistics {v}: use on or off."),
            },
            PopulationStatistics = p.GetValue(populationStats) switch
            {
                null => null,
                "on" => true,
                "off" => false,
                var v => throw new ArgumentException($"--population-statistics {v}: use on or off."),
            },
            ScenarioPooling = p.GetValue(scenarioPooling) switch
            {
                null => null,
                "on" => true,
                "off" => false,
                var v => throw new ArgumentException($"--scenario-pooling {v}: use on or off."),
            },
            Attention = p.GetValue(attention) switch
            {
                "hta" => AttentionMode.Hta,
                "full" => AttentionMode.Full,
                "target-only" => AttentionMode.TargetOnly,
                var a => throw new ArgumentException($"--attention {a}: use hta, full or target-only."),
            },
            Aggregation = ParseAggregation(p.GetValue(aggregation)!),
            Scenarios = p.GetValue(scenarios)!,
            Feedback = p.GetValue(feedback) switch
            {
                "auto" => null,
                "on" => true,
                "off" => false,
                var v => throw new ArgumentException($"--feedback {v}: use auto, on or off."),
            },
            Epochs = p.GetValue(epochs),
            BatchTokens = p.GetValue(batchTokens),
            LearningRate = p.GetValue(lr),
            EmbeddingLearningRate = p.GetValue(embeddingLr),
            WeightAverageDecay = p.GetValue(weightAverage),
            RankingLossWeight = p.GetValue(rankingLoss),
            Seed = p.GetValue(seed),
            Threads = p.GetValue(threads),
            Device = p.GetValue(device)!,
            CudaAttention = p.GetValue(cudaAttention),
            OutDir = p.GetValue(outDir)!,
            Name = p.GetValue(name),
            Resume = p.GetValue(resume),
            CheckpointEvery = p.GetValue(ckptEvery),
            KeepCheckpoints = p.GetValue(keepCkpt),
            MaxNonFiniteSteps = p.GetValue(maxNonFinite),
            MaxMemory = p.GetValue(maxMemory),
            Predictions = p.GetValue(predictions),
            PredictionColumns = SplitColumns(p.GetValue(predictionColumns)),
        })));
        return cmd;
    }

    private static Command BuildEval()
    {
        var model = new Option<string>("--model") { Description = "run directory (or its model.safetensors)", Required = true };
        var data = new Option<string>("--data") { Description = "synthetic, movielens:<dir>, or an event log with --schema", DefaultValueFactory = _ => "synthetic" };
        var schema = new Option<string?>("--schema") { Description = "dataset schema JSON for --data <events>" };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = one per core)", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "cpu, cuda (the first GPU), or cuda-emulated (the host emulation named by MTFM_CUDA_EMU_LIB; for tests)", DefaultValueFactory = _ => "cpu" };
        var cudaAttention = CudaAttentionOption();
        var (predictions, predictionColumns) = PredictionOptions();
        var cmd = new Command("eval", "Evaluate a trained model on the test window of a dataset.") { model, data, schema, threads, device, cudaAttention, predictions, predictionColumns };
        cmd.SetAction(p => Guard(() => EvalCommand.Run(p.GetValue(model)!, new TrainRequest
        {
            Predictions = p.GetValue(predictions),
            PredictionColumns = SplitColumns(p.GetValue(predictionColumns)),
            Data = p.GetValue(data)!,
            Schema = p.GetValue(schema),
            Threads = p.GetValue(threads),
            Device = p.GetValue(device)!,
            CudaAttention = p.GetValue(cudaAttention),
        })));
        return cmd;
    }

    private static Command BuildData()
    {
        var data = new Option<string>("--data") { Description = "synthetic[:tiny|default|large|market|market-small|market-light], movielens:<dir>, or an event log with --schema", DefaultValueFactory = _ => "synthetic" };
        var schema = new Option<string?>("--schema") { Description = "dataset schema JSON for --data <events>" };
        var output = new Option<string>("--out") { Description = "output file (.csv or .parquet for export; .parquet for aggregate)", Required = true };
        var export = new Command("export", "Write a dataset's event log (CSV or Parquet) and its schema JSON.") { data, schema, output };
        export.SetAction(p => Guard(() => DataCommand.Export(p.GetValue(data)!, p.GetValue(schema), p.GetValue(output)!)));
        var mode = new Option<string>("--aggregation") { Description = "user (user-level windows) or exposure", DefaultValueFactory = _ => "user" };
        var aggregate = new Command("aggregate", "Aggregate a dataset into instances (H, R, T per user and window) and write them as Parquet with list columns.")
        {
            data, schema, output, mode,
        };
        aggregate.SetAction(p => Guard(() => DataCommand.Aggregate(p.GetValue(data)!, p.GetValue(schema), ParseAggregation(p.GetValue(mode)!), p.GetValue(output)!)));
        var marketData = new Option<string>("--data") { Description = "synthetic:market, synthetic:market-small or synthetic:market-light", DefaultValueFactory = _ => "synthetic:market" };
        var truth = new Command("truth", "Print a generated market dataset's Bayes AUC per scenario and the AUC of oracles without user knowledge and without the recency term.") { marketData };
        truth.SetAction(p => Guard(() => DataCommand.Truth(p.GetValue(marketData)!)));
        return new Command("data", "Data pipeline utilities.") { export, aggregate, truth };
    }

    private static (Option<string?> File, Option<string?> Columns) PredictionOptions() => (
        new("--predictions")
        {
            Description = "write one row per test exposure to this .csv or .parquet file: user, time, scenario, the --predictions-columns, p_<task> (probability) and label_<task> per task",
        },
        new("--predictions-columns")
        {
            Description = "comma-separated columns of the event log (--data <file>) copied into the predictions file as keys, e.g. request_id,item_id",
        });

    private static string[] SplitColumns(string? value) =>
        value is null ? [] : value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

    private static Option<string?> CudaAttentionOption() => new("--cuda-attention")
    {
        Description = "attention forward on a CUDA device: fp32 (default; CUDA-core FMA) or bf16 (tensor cores, fp32 accumulation; the backward stays fp32). Only with --device cuda or cuda-emulated",
    };

    private static AggregationMode ParseAggregation(string value) => value switch
    {
        "user" => AggregationMode.UserWindow,
        "exposure" => AggregationMode.PerExposure,
        _ => throw new ArgumentException($"--aggregation {value}: use user or exposure."),
    };

    internal static Command BuildScore()
    {
        var model = new Option<string>("--model") { Description = "run directory (or its model.safetensors)", Required = true };
        var input = new Option<string?>("--input") { Description = "JSON-lines requests, one per line (default: standard input)" };
        var output = new Option<string?>("--output") { Description = "JSON-lines responses (default: standard output)" };
        var failFast = new Option<bool>("--fail-fast") { Description = "stop at the first bad request line (default: report it and go on)" };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = one per core)", DefaultValueFactory = _ => 0 };
        var contextCache = new Option<int>("--context-cache-mb") { Description = "memory for encoded H/R contexts (per-layer K/V) kept for reuse, in MiB; 0 = off", DefaultValueFactory = _ => 256 };
        var cmd = new Command("score", "Score JSON-lines requests (user, scenario, time, behaviour events, candidates) with a trained model; see docs/serving.md.")
        {
            model, input, output, failFast, threads, contextCache,
        };
        cmd.SetAction(p => Guard(() => ScoreCommand.Run(new ScoreOptions
        {
            Model = p.GetValue(model)!,
            Input = p.GetValue(input),
            Output = p.GetValue(output),
            FailFast = p.GetValue(failFast),
            Threads = p.GetValue(threads),
            ContextCache = p.GetValue(contextCache),
        }, Console.In, p.InvocationConfiguration.Output, p.InvocationConfiguration.Error)));
        return cmd;
    }

    internal static Command BuildServe()
    {
        var model = new Option<string>("--model") { Description = "run directory (or its model.safetensors)", Required = true };
        var host = new Option<string>("--host") { Description = "IP address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0 = any free port)", DefaultValueFactory = _ => 8080 };
        var device = new Option<string>("--device") { Description = "cpu, cuda (the first GPU), or cuda-emulated (the host emulation named by MTFM_CUDA_EMU_LIB; for tests)", DefaultValueFactory = _ => "cpu" };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = one per core)", DefaultValueFactory = _ => 0 };
        var cache = new Option<int>("--context-cache-mb") { Description = "memory for cached H/R contexts in MiB; 0 = off", DefaultValueFactory = _ => 256 };
        var queue = new Option<int>("--queue") { Description = "requests waiting at most; beyond it 503 with Retry-After", DefaultValueFactory = _ => 256 };
        var window = new Option<double>("--batch-window-ms") { Description = "micro-batching: how long the worker waits for more requests to batch", DefaultValueFactory = _ => 2.0 };
        var batchCandidates = new Option<int>("--max-batch-candidates") { Description = "candidates of one micro-batch at most", DefaultValueFactory = _ => 4096 };
        var noBatching = new Option<bool>("--no-micro-batching") { Description = "score every request in its own forward" };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "request body size limit (413 beyond)", DefaultValueFactory = _ => 8L << 20 };
        var maxCand = new Option<int>("--max-candidates") { Description = "candidates per request at most (413 beyond)", DefaultValueFactory = _ => 2000 };
        var maxEvents = new Option<int>("--max-events") { Description = "events per request at most (413 beyond)", DefaultValueFactory = _ => 10_000 };
        var maxReq = new Option<int>("--max-requests-per-call") { Description = "requests in one JSON array at most (413 beyond)", DefaultValueFactory = _ => 64 };
        var watch = new Option<bool>("--watch") { Description = "reload the model when its checkpoint file changes (write it aside and rename it over the old one)" };
        var cmd = new Command("serve", "Serve a trained model over HTTP: POST /v1/score, GET /healthz, /readyz, /metrics, POST /admin/reload; see docs/serving.md.")
        {
            model, host, port, device, threads, cache, queue, window, batchCandidates, noBatching, maxBody, maxCand, maxEvents, maxReq, watch,
        };
        cmd.SetAction(p => Guard(() => ServeCommand.Run(new ServeOptions
        {
            Model = p.GetValue(model)!,
            Host = p.GetValue(host)!,
            Port = p.GetValue(port),
            Device = p.GetValue(device)!,
            Threads = p.GetValue(threads),
            ContextCacheMb = p.GetValue(cache),
            QueueCapacity = p.GetValue(queue),
            BatchWindowMs = p.GetValue(window),
            MaxBatchCandidates = p.GetValue(batchCandidates),
            MicroBatching = !p.GetValue(noBatching),
            MaxBodyBytes = p.GetValue(maxBody),
            MaxCandidates = p.GetValue(maxCand),
            MaxEvents = p.GetValue(maxEvents),
            MaxRequestsPerCall = p.GetValue(maxReq),
            WatchModel = p.GetValue(watch),
        }, Console.Error)));
        return cmd;
    }

    /// <summary>Turns expected failures (bad input, bad files) into one clear line and exit code 1.</summary>
    private static int Guard(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception ex) when (ex is ArgumentException or DataFormatException or CheckpointFormatException or IOException or InvalidOperationException or InsufficientMemoryException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"mtfm: {ex.Message}");
            return 1;
        }
    }
}
