using System.Globalization;
using System.Text.Json;
using Mtfm.Cli.Reporting;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Native;
using Mtfm.Engine.Data;
using Mtfm.Engine.Evaluation;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;
using Spectre.Console;
using Mtfm.Engine.IO;

namespace Mtfm.Cli.Commands;

/// <summary>`mtfm train`: load or generate data, train MTFM, evaluate on the test window, write the run directory.</summary>
internal static class TrainCommand
{
    public static int Run(TrainRequest r)
    {
        if (r.Model == "lightgbm") return BaselineCommand.Run(r);
        if (r.Model != "mtfm") throw new ArgumentException($"--model {r.Model}: use mtfm or lightgbm.");
        var ci = CultureInfo.InvariantCulture;
        IBackend backend;
        try
        {
            backend = OpenBackend(r.Device, r.Threads, r.CudaAttention);
        }
        catch (CudaNotAvailableException ex)
        {
            Console.Error.WriteLine($"mtfm: --device {r.Device}: {ex.Message}");
            return 2;
        }
        using var owned = backend;
        long maxMemory = r.MaxMemory is null ? 0 : MemoryEstimate.ParseSize(r.MaxMemory);
        bool onCpu = backend is CpuBackend;
        string runDir = RunDirectory(r, out string name);
        var ckptStore = new CheckpointStore(Path.Combine(runDir, "checkpoints"), r.KeepCheckpoints);
        ckptStore.EnsureWritable(); // an unwritable output fails now, not after training
        var data = PreparedData.Load(r, Console.Out);
        var layout = data.Store.Layout;
        Console.WriteLine($"data: {data.Description}: {data.Store.Count:N0} events, {data.Store.ExposureCount:N0} exposures, {data.Store.UserCount:N0} users");
        foreach (var line in FeedbackTokens.Describe(layout.Schema)) Console.WriteLine($"  feedback tokens: {line}");
        Console.WriteLine($"  train {data.Train}");
        Console.WriteLine($"  valid {data.Valid}");
        Console.WriteLine($"  test  {data.Test}");
        int? only = null;
        if (r.Scenarios != "all")
        {
            int s = layout.Schema.Scenarios.FindIndex(x => x.Name == r.Scenarios);
            if (s < 0) throw new ArgumentException($"--scenarios {r.Scenarios}: no such scenario (have: all, {string.Join(", ", layout.Schema.Scenarios.Select(x => x.Name))}).");
            only = s;
        }
        var config = (r.Config ?? MtfmConfig.Preset(r.Preset)) with { Attention = r.Attention };
        if (r.Blocks is { } b) config = config with { Blocks = b };
        if (r.TargetLayers is { } k) config = config with { TargetLayersPerBlock = k };
        if (r.HistoryStatistics is { } hs) config = config with { HistoryStatistics = hs };
        config = config.WithDefaultPopulationStatistics();
        if (r.PopulationStatistics is { } ps) config = config with { PopulationStatistics = ps };
        config = r.ScenarioPooling is { } sp ? config with { ScenarioPooling = sp } : config.WithDefaultScenarioPooling();
        config.Validate();
        using var model = new MtfmModel(backend, config, layout, r.Seed);
        var trainBatches = config.Batches(data.Train, data.Stats);
        double flopsPerInstance = FlopsPerInstance(model, trainBatches);
        string shape = config.Layers == 0 ? "no transformer layers"
            : config.Attention switch
            {
                AttentionMode.Full => $"{config.Layers} full-attention layers",
                AttentionMode.TargetOnly => $"{config.Layers} target-attention layers",
                _ => $"{config.Layers} layers ({config.Blocks} blocks × (1 full + {config.TargetLayersPerBlock} target))",
            };
        Console.WriteLine($"model: preset {r.Preset}, attention {config.Attention}, d_model {config.DModel}, {shape}, heads {config.Heads}/{config.KvHeads} kv, " +
            $"{model.ParameterCount:N0} parameters, {flopsPerInstance / 1e6:F1} MFLOP forward per instance, {DeviceText(backend)}");
        if (model.SharedPools.Any())
            Console.WriteLine($"scenario pooling {PoolingText(model)} (one tokenizer and one set of heads each; --scenario-pooling off to keep them apart)");

        long averaged = r.WeightAverageDecay > 0 ? WeightAverage.AveragedCount(model.Parameters) : 0;
        var estimate = MemoryEstimate.For(config, layout, model.ParameterCount, r.BatchTokens, checkpoints: true, averaged);
        estimate.EnsureFits(maxMemory, onCpu ? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes : 0);
        Console.WriteLine($"memory: estimated {estimate.Describe()}{(maxMemory > 0 ? $", limit {MemoryEstimate.Format(maxMemory)}" : "")}" +
            (trainBatches.Population is { } pop ? $"; population statistics columns of every exposure {MemoryEstimate.Format(pop.Bytes)} (data side, not in the estimate)" : ""));

        var options = new TrainOptions
        {
            Epochs = r.Epochs, BatchTokens = r.BatchTokens, LearningRate = r.LearningRate, EmbeddingLearningRate = r.EmbeddingLearningRate, WeightAverageDecay = r.WeightAverageDecay,
            RankingLossWeight = r.RankingLossWeight, Seed = r.Seed, OnlyScenario = only,
            CheckpointDirectory = ckptStore.Directory, CheckpointEvery = r.CheckpointEvery, KeepCheckpoints = r.KeepCheckpoints,
            Resume = r.Resume is not null, MaxConsecutiveNonFiniteSteps = r.MaxNonFiniteSteps,
        };
        long batchesPerEpoch = trainBatches.CountBatches(options.BatchTokens);
        int epochs = options.ResolveEpochs(batchesPerEpoch);
        Console.WriteLine(r.Epochs > 0
            ? $"epochs: {epochs} of {batchesPerEpoch:N0} batches"
            : $"epochs: {epochs} of {batchesPerEpoch:N0} batches (auto: about {TrainOptions.AutoStepBudget:N0} steps, at most {TrainOptions.MaxAutoEpochs}; --epochs N to choose)");
        if (options.RankingLossWeight > 0)
            Console.WriteLine($"objective: BCE per task + {options.RankingLossWeight.ToString("R", System.Globalization.CultureInfo.InvariantCulture)} × within-user ranking (pairs of a user's clicked and not-clicked exposures)");
        var trainer = new MtfmTrainer(model, options) { Log = m => Console.Error.WriteLine(m) };
        TestKillHook.Install(trainer);
        long totalExposures = data.Train.TargetCount * (long)epochs;
        var result = TrainingProgress.Run("train", totalExposures, sink =>
        {
            long seen = 0;
            return trainer.Train(data.Train, trainBatches, config.Batches(data.Valid, data.Stats), p =>
            {
                seen = (long)(p.ExposuresPerSecond * p.Elapsed.TotalSeconds);
                sink.Report(Math.Min(seen, totalExposures), p.Loss);
            });
        });
        Console.WriteLine($"trained {result.Steps} steps, {result.Epochs} epochs in {result.TrainSeconds:F1} s: " +
            $"{result.ExposuresPerSecond:N0} exposures/s, {result.InstancesPerSecond:N0} instances/s; best valid CTR GAUC {result.BestValidGauc:F4} at step {result.BestStep}");

        var predictions = r.Predictions is null ? null : new PredictionWriter(data.Store);
        var eval = ModelEvaluation.Evaluate(model, config.Batches(data.Test, data.Stats), options.BatchTokens, predictions);
        var rows = MetricRows(layout, eval);
        PrintTable(rows);
        WritePredictions(predictions, r.Predictions);

        string dir = runDir;
        MtfmCheckpoint.Save(Path.Combine(dir, "model.safetensors"), model, data.Stats);
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(model.Config, ModelJsonContext.Default.MtfmConfig));
        var report = new RunReport($"MTFM run {name}", DateTimeOffset.UtcNow,
        [
            new("data", data.Description), new("preset", r.Preset), new("attention", config.Attention.ToString()), new("layers", shape), new("history statistics", config.HistoryStatistics ? "on" : "off"),
            new("population statistics", config.PopulationStatistics ? "on" : "off"), new("scenario pooling", PoolingText(model)),
            new("aggregation", r.Aggregation.ToString()), new("scenarios", r.Scenarios), new("epochs", r.Epochs > 0 ? epochs.ToString(ci) : $"{epochs} (auto)"),
            new("learning rate (dense / embeddings)", $"{r.LearningRate.ToString("R", ci)} / {r.EmbeddingLearningRate.ToString("R", ci)}"), new("weight average", r.WeightAverageDecay.ToString("R", ci)),
            new("ranking loss", options.RankingLossWeight > 0 ? options.RankingLossWeight.ToString("R", ci) : "off"),
            new("seed", r.Seed.ToString(ci)), new("device", DeviceText(backend)),
            new("parameters", model.ParameterCount.ToString(ci)), new("forward MFLOP per instance", (flopsPerInstance / 1e6).ToString("F2", ci)),
            new("instances/s", result.InstancesPerSecond.ToString("F1", ci)),
        ], rows,
            new TrainingCurves(result.LossCurve.Select(x => new LossPoint(x.Step, x.Loss)).ToList(),
                result.ValidCurve.Select(x => new LossPoint(x.Step, x.ValidLoss)).ToList()),
            result.TrainSeconds, result.ExposuresPerSecond);
        ReportWriter.Write(report, dir);
        Console.WriteLine($"wrote {dir}/ (model.safetensors, config.json, metrics.json, report.md, plots)");
        return 0;
    }

    /// <summary>The run directory: <c>--resume</c>'s (which must exist), else <c>&lt;--out&gt;/&lt;--name or a timestamp&gt;</c>.</summary>
    private static string RunDirectory(TrainRequest r, out string name)
    {
        if (r.Resume is { } resume)
        {
            string dir = Directory.Exists(resume) && !Directory.Exists(Path.Combine(r.OutDir, resume)) ? resume : Path.Combine(r.OutDir, resume);
            if (!Directory.Exists(dir)) throw new ArgumentException($"--resume {resume}: no run directory '{dir}'.");
            name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)));
            return dir;
        }
        name = r.Name ?? $"{DateTime.UtcNow:yyyyMMdd-HHmmss}-{r.Preset}";
        return Path.Combine(r.OutDir, name);
    }

    /// <summary>Writes the test exposures' predictions of <c>--predictions</c> (nothing when not asked for).</summary>
    internal static void WritePredictions(PredictionWriter? predictions, string? path)
    {
        if (predictions is null || path is null) return;
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        predictions.Write(path);
        Console.WriteLine($"wrote {path} ({predictions.Count:N0} test exposures: {string.Join(", ", predictions.Columns)})");
    }

    /// <summary>
    /// The backend of <c>--device</c>: <c>cpu</c>, <c>cuda</c> (the first GPU, through the driver API) or
    /// <c>cuda-emulated</c> (the CUDA kernels on the host emulation library named by <c>MTFM_CUDA_EMU_LIB</c>; for tests).
    /// </summary>
    internal static IBackend OpenBackend(string device, int threads, string? cudaAttention = null)
    {
        if (device is not ("cpu" or "cuda" or "cuda-emulated"))
            throw new ArgumentException($"--device {device}: use cpu or cuda.");
        var precision = ParseCudaAttention(device, cudaAttention);
        if (device == "cpu") return new CpuBackend(threads);
        var cuda = device == "cuda" ? CudaBackend.OpenDevice() : CudaBackend.OpenEmulated();
        cuda.AttentionPrecision = precision;
        return cuda;
    }

    /// <summary><c>--cuda-attention</c>: fp32 (also when not given) or bf16; only meaningful on a CUDA device.</summary>
    internal static CudaAttentionPrecision ParseCudaAttention(string device, string? value)
    {
        if (value is null) return CudaAttentionPrecision.Fp32;
        if (device == "cpu")
            throw new ArgumentException($"--cuda-attention {value}: applies only to --device cuda or cuda-emulated; --device cpu computes attention in fp32.");
        return value switch
        {
            "fp32" => CudaAttentionPrecision.Fp32,
            "bf16" => CudaAttentionPrecision.Bf16,
            _ => throw new ArgumentException($"--cuda-attention {value}: use fp32 or bf16."),
        };
    }

    /// <summary>The run-settings line of <see cref="MtfmConfig.ScenarioPooling"/>: off, or the pools of two or more scenarios.</summary>
    internal static string PoolingText(MtfmModel model)
    {
        if (!model.Config.ScenarioPooling) return "off";
        var names = model.Layout.Schema.Scenarios;
        var shared = model.SharedPools.Select(p => "[" + string.Join(", ", p.Select(s => names[s].Name)) + "]").ToList();
        return shared.Count == 0 ? "on (no two scenarios with the same features)" : "on: " + string.Join(" ", shared);
    }

    internal static string DeviceText(IBackend backend) => backend switch
    {
        CpuBackend cpu => $"cpu, {cpu.ThreadCount} threads",
        CudaBackend cuda => $"cuda ({cuda.Driver.DeviceName}, attention {(cuda.AttentionPrecision == CudaAttentionPrecision.Bf16 ? "bf16" : "fp32")})",
        _ => backend.Name,
    };

    /// <summary>Forward FLOPs per instance, averaged over the first batches of the training set.</summary>
    private static double FlopsPerInstance(MtfmModel model, BatchBuilder batches)
    {
        var counter = new FlopCounter();
        int instances = 0;
        foreach (var b in batches.Batches(4096).Take(3))
        {
            using var tape = new Engine.Autograd.Tape(model.Backend, gradEnabled: false);
            model.Forward(tape, b, counter);
            instances += b.InstanceCount;
        }
        return instances == 0 ? 0 : counter.Forward / instances;
    }

    internal static List<ScenarioMetricsRow> MetricRows(DataLayout layout, EvaluationResult eval)
    {
        var rows = new List<ScenarioMetricsRow>();
        for (int i = 0; i < eval.Model.Count; i++)
        {
            var m = eval.Model[i];
            if (m.Exposures == 0) continue;
            double bayes = eval.Bayes?[i].Auc ?? double.NaN;
            string scen = m.Scenario < 0 ? "(all)" : layout.Schema.Scenarios[m.Scenario].Name;
            rows.Add(new ScenarioMetricsRow(scen, layout.Schema.Tasks[m.Task], m.Exposures, m.Positives, m.Auc, m.Gauc, m.GaucUsers, m.LogLoss, bayes, m.ExpectedAuc));
        }
        return rows;
    }

    internal static void PrintTable(IReadOnlyList<ScenarioMetricsRow> rows)
    {
        // A console bound to the current Console.Out (not Spectre's cached default), wide enough for the table in logs.
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        if (Console.IsOutputRedirected) console.Profile.Width = Math.Max(console.Profile.Width, 120);
        var t = new Table().AddColumns("scenario", "task", "exposures", "AUC", "GAUC", "log-loss", "Bayes AUC", "gap (pp)");
        // Generated data: the AUC expected over label draws from the true probabilities as well.
        bool expected = rows.Any(m => double.IsFinite(m.ExpectedAuc));
        if (expected) t.AddColumn("expected AUC");
        foreach (var m in rows)
        {
            string gap = double.IsNaN(m.BayesOptimalAuc) ? "-" : ((m.BayesOptimalAuc - m.Auc) * 100).ToString("F2", CultureInfo.InvariantCulture);
            var cells = new List<string> { m.Scenario, m.Task, m.Exposures.ToString("N0", CultureInfo.InvariantCulture), F(m.Auc), F(m.Gauc), F(m.LogLoss), F(m.BayesOptimalAuc), gap };
            if (expected) cells.Add(F(m.ExpectedAuc));
            t.AddRow(cells.ToArray());
        }
        console.Write(t);

        static string F(double v) => double.IsNaN(v) ? "-" : v.ToString("F4", CultureInfo.InvariantCulture);
    }
}
