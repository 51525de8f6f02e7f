using System.CommandLine;
using Mtfm.Cli.Commands;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;

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
        return root.Parse(args).Invoke();
    }

    private static Command BuildTrain()
    {
        var data = new Option<string>("--data") { Description = "synthetic (default; synthetic:tiny/default/large), movielens:<dir>, or an event log (.csv/.parquet) with --schema", DefaultValueFactory = _ => "synthetic" };
        var schema = new Option<string?>("--schema") { Description = "dataset schema JSON for --data <events>" };
        var preset = new Option<string>("--preset") { Description = "model: tiny, small, base, or mmoe (the baseline without sequences)", DefaultValueFactory = _ => "tiny" };
        var blocks = new Option<int?>("--blocks") { Description = "override the preset's number of HTA blocks B" };
        var targetLayers = new Option<int?>("--target-layers") { Description = "override the preset's target layers per block K (3 = the paper's 3:1)" };
        var attention = new Option<string>("--attention") { Description = "hta, full or target-only", DefaultValueFactory = _ => "hta" };
        var aggregation = new Option<string>("--aggregation") { Description = "user (user-level windows) or exposure (one instance per exposure)", DefaultValueFactory = _ => "user" };
        var scenarios = new Option<string>("--scenarios") { Description = "all, or one scenario name to train on alone", DefaultValueFactory = _ => "all" };
        var feedback = new Option<bool>("--feedback") { Description = "add click feedback tokens (each exposure also enters a 'feedback' sequence with its click outcome; docs/data.md) to a dataset whose schema declares none" };
        var epochs = new Option<int>("--epochs") { Description = "passes over the training data (early stopping may end sooner)", DefaultValueFactory = _ => 7 };
        var batchTokens = new Option<int>("--batch-tokens") { Description = "tokens per batch", DefaultValueFactory = _ => 4096 };
        var lr = new Option<float>("--lr") { Description = "peak learning rate of dense parameters", DefaultValueFactory = _ => 2e-3f };
        var seed = new Option<ulong>("--seed") { Description = "seed of initialisation and batch order", DefaultValueFactory = _ => 1UL };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = one per core)", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "cpu, cuda (the first GPU), or cuda-emulated (the CUDA kernels on the host emulation named by MTFM_CUDA_EMU_LIB; for tests)", DefaultValueFactory = _ => "cpu" };
        var cudaAttention = CudaAttentionOption();
        var outDir = new Option<string>("--out") { Description = "directory that receives runs/<name>/", DefaultValueFactory = _ => "runs" };
        var name = new Option<string?>("--name") { Description = "run name (default: a timestamp)" };
        var cmd = new Command("train", "Train MTFM (default: the built-in synthetic multi-scenario data, preset tiny, on the CPU).")
        {
            data, schema, preset, blocks, targetLayers, attention, aggregation, scenarios, feedback, epochs, batchTokens, lr, seed, threads, device, cudaAttention, outDir, name,
        };
        cmd.SetAction(p => Guard(() => TrainCommand.Run(new TrainRequest
        {
            Data = p.GetValue(data)!,
            Schema = p.GetValue(schema),
            Preset = p.GetValue(preset)!,
            Blocks = p.GetValue(blocks),
            TargetLayers = p.GetValue(targetLayers),
            Attention = p.GetValue(attention) switch
            {
                "hta" => AttentionMode.Hta,
                "full" => AttentionMode.Full,
                "target-only" => AttentionMode.TargetOnly,
                var a => throw new ArgumentException($"--attention {a}: use hta, full or target-only."),
            },
            Aggregation = ParseAggregation(p.GetValue(aggregation)!),
            Scenarios = p.GetValue(scenarios)!,
            Feedback = p.GetValue(feedback),
            Epochs = p.GetValue(epochs),
            BatchTokens = p.GetValue(batchTokens),
            LearningRate = p.GetValue(lr),
            Seed = p.GetValue(seed),
            Threads = p.GetValue(threads),
            Device = p.GetValue(device)!,
            CudaAttention = p.GetValue(cudaAttention),
            OutDir = p.GetValue(outDir)!,
            Name = p.GetValue(name),
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
        var cmd = new Command("eval", "Evaluate a trained model on the test window of a dataset.") { model, data, schema, threads, device, cudaAttention };
        cmd.SetAction(p => Guard(() => EvalCommand.Run(p.GetValue(model)!, new TrainRequest
        {
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
        var data = new Option<string>("--data") { Description = "synthetic[:tiny|default|large], movielens:<dir>, or an event log with --schema", DefaultValueFactory = _ => "synthetic" };
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
        return new Command("data", "Data pipeline utilities.") { export, aggregate };
    }

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

    /// <summary>Turns expected failures (bad input, bad files) into one clear line and exit code 1.</summary>
    private static int Guard(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception ex) when (ex is ArgumentException or DataFormatException or CheckpointFormatException or IOException or InvalidOperationException)
        {
            Console.Error.WriteLine($"mtfm: {ex.Message}");
            return 1;
        }
    }
}
