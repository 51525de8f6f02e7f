using Mtfm.Engine.Native;
using Mtfm.Tests.Cuda;
using Mtfm.Cli.Commands;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.Cli;

/// <summary>`mtfm train` and `mtfm eval` end to end on the tiny synthetic data.</summary>
[Collection(ConsoleCollection.Name)]
public class TrainCommandTests
{
    [Fact]
    public void TrainWritesTheRunDirectoryAndEvalReloadsIt()
    {
        string dir = Directory.CreateTempSubdirectory("mtfm-run").FullName;
        var stdout = Console.Out;
        try
        {
            var log = new StringWriter();
            Console.SetOut(log);
            int rc = TrainCommand.Run(new TrainRequest { Data = "synthetic:tiny", Epochs = 1, BatchTokens = 512, OutDir = dir, Name = "t", Threads = 1 });
            Assert.Equal(0, rc);
            string run = Path.Combine(dir, "t");
            foreach (var f in new[] { "model.safetensors", "config.json", "metrics.json", "report.md", "loss.png", "auc-click.png" })
                Assert.True(File.Exists(Path.Combine(run, f)), $"{f} missing; output:\n{log}");
            Assert.Contains("parameters", log.ToString());
            Assert.Contains("Bayes", log.ToString());
            Assert.Equal(0, EvalCommand.Run(run, new TrainRequest { Data = "synthetic:tiny", Threads = 1 }));
        }
        finally
        {
            Console.SetOut(stdout);
            Directory.Delete(dir, true);
        }
    }

    /// <summary>--history-statistics off reaches the saved configuration, and eval rebuilds the narrower tokenizers from it.</summary>
    [Fact]
    public void HistoryStatisticsOffIsSavedAndReloaded() => InQuietRunDirectory(dir =>
    {
        Assert.Equal(0, TrainCommand.Run(new TrainRequest { Data = "synthetic:tiny", Epochs = 1, BatchTokens = 512, OutDir = dir, Name = "off", Threads = 1, HistoryStatistics = false }));
        string run = Path.Combine(dir, "off");
        var config = System.Text.Json.JsonSerializer.Deserialize(File.ReadAllText(Path.Combine(run, "config.json")), ModelJsonContext.Default.MtfmConfig)!;
        Assert.False(config.HistoryStatistics);
        Assert.True(MtfmConfig.Tiny.HistoryStatistics);
        Assert.False(MtfmConfig.Mmoe.HistoryStatistics);
        Assert.Equal(0, EvalCommand.Run(run, new TrainRequest { Data = "synthetic:tiny", Threads = 1 }));
    });

    /// <summary>--embedding-lr reaches the run (its settings in metrics.json) and a rate that is not positive is refused by name.</summary>
    [Fact]
    public void EmbeddingLearningRateIsRecordedAndABadOneRefused() => InQuietRunDirectory(dir =>
    {
        Assert.Equal(0, TrainCommand.Run(new TrainRequest { Data = "synthetic:tiny", Epochs = 1, BatchTokens = 512, OutDir = dir, Name = "e", Threads = 1, EmbeddingLearningRate = 3e-4f }));
        string metrics = File.ReadAllText(Path.Combine(dir, "e", "metrics.json"));
        Assert.Contains("0.002 / 0.0003", metrics);
        var ex = Assert.Throws<ArgumentException>(() => TrainCommand.Run(new TrainRequest { Data = "synthetic:tiny", Epochs = 1, OutDir = dir, Name = "bad", Threads = 1, EmbeddingLearningRate = 0f }));
        Assert.Contains("EmbeddingLearningRate", ex.Message);
        Assert.Equal(TrainOptions.DefaultEmbeddingLearningRate, new TrainRequest().EmbeddingLearningRate);
    });

    /// <summary>
    /// Scenario pooling is on by default and names its pools in the run settings; <c>ScenarioPooling = false</c> is
    /// saved in the configuration and the model evaluates again from it.
    /// </summary>
    [Fact]
    public void ScenarioPoolingIsOnByDefaultRecordedAndCanBeTurnedOff() => InQuietRunDirectory(dir =>
    {
        string log = Path.Combine(dir, "pools.csv"), schema = Path.Combine(dir, "pools.json");
        File.WriteAllText(log, Model.ScenarioPoolingTests.Log());
        File.WriteAllText(schema, Model.ScenarioPoolingTests.Schema);
        MtfmConfig Saved(string run) => System.Text.Json.JsonSerializer.Deserialize(File.ReadAllText(Path.Combine(dir, run, "config.json")), ModelJsonContext.Default.MtfmConfig)!;
        Assert.Equal(0, TrainCommand.Run(new TrainRequest { Data = log, Schema = schema, Epochs = 1, BatchTokens = 256, OutDir = dir, Name = "on", Threads = 1 }));
        Assert.True(Saved("on").ScenarioPooling);
        Assert.Contains("on: [home, search]", File.ReadAllText(Path.Combine(dir, "on", "metrics.json")));
        Assert.Equal(0, TrainCommand.Run(new TrainRequest { Data = log, Schema = schema, Epochs = 1, BatchTokens = 256, OutDir = dir, Name = "off", Threads = 1, ScenarioPooling = false }));
        Assert.False(Saved("off").ScenarioPooling);
        Assert.Equal(0, EvalCommand.Run(Path.Combine(dir, "off"), new TrainRequest { Data = log, Schema = schema, Threads = 1 }));
        Assert.False(MtfmConfig.Mmoe.WithDefaultScenarioPooling().ScenarioPooling);
    });

    [Fact]
    public void RankingLossIsOffByDefaultAndRecordedWhenOn() => InQuietRunDirectory(dir =>
    {
        string log = Path.Combine(dir, "pools.csv"), schema = Path.Combine(dir, "pools.json");
        File.WriteAllText(log, Model.ScenarioPoolingTests.Log());
        File.WriteAllText(schema, Model.ScenarioPoolingTests.Schema);
        string Setting(string run)
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, run, "metrics.json")));
            return RunSetting(doc.RootElement, "ranking loss");
        }
        Assert.Equal(0, TrainCommand.Run(new TrainRequest { Data = log, Schema = schema, Epochs = 1, BatchTokens = 256, OutDir = dir, Name = "off", Threads = 1 }));
        Assert.Equal("off", Setting("off"));
        Assert.Equal(0, TrainCommand.Run(new TrainRequest { Data = log, Schema = schema, Epochs = 1, BatchTokens = 256, OutDir = dir, Name = "on", Threads = 1, RankingLossWeight = 0.25f }));
        Assert.Equal("0.25", Setting("on"));
    });

    /// <summary>The value of the run setting <paramref name="name"/> in a metrics.json document.</summary>
    private static string RunSetting(System.Text.Json.JsonElement root, string name) =>
        root.GetProperty("settings").EnumerateArray().First(e => e.GetProperty("name").GetString() == name).GetProperty("value").GetString()!;

    /// <summary>Runs <paramref name="body"/> with a fresh run directory (deleted afterwards) and standard output discarded.</summary>
    private static void InQuietRunDirectory(Action<string> body)
    {
        string dir = Directory.CreateTempSubdirectory("mtfm-run").FullName;
        var stdout = Console.Out;
        try
        {
            Console.SetOut(new StringWriter());
            body(dir);
        }
        finally
        {
            Console.SetOut(stdout);
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void CudaDeviceIsRefusedWithAClearMessage()
    {
        // On a GPU host the refusal path does not exist (and a full training run must not start here).
        try { CudaTestDevice.OpenGpuBackend().Dispose(); Assert.Skip("a GPU is usable here: the 'CUDA not available' refusal cannot be exercised"); }
        catch (CudaNotAvailableException) { }
        var err = Console.Error;
        try
        {
            var log = new StringWriter();
            Console.SetError(log);
            Assert.Equal(2, TrainCommand.Run(new TrainRequest { Data = "synthetic:tiny", Device = "cuda", Epochs = 1 }));
            Assert.Contains("CUDA not available", log.ToString());
        }
        finally { Console.SetError(err); }
    }

    [Fact]
    public void UnknownScenarioAndPresetAreNamed()
    {
        var stdout = Console.Out;
        try
        {
            Console.SetOut(new StringWriter());
            var ex = Assert.Throws<ArgumentException>(() => TrainCommand.Run(new TrainRequest { Data = "synthetic:tiny", Scenarios = "nope" }));
            Assert.Contains("nope", ex.Message);
            Assert.Contains("feed", ex.Message);
            Assert.Throws<ArgumentException>(() => MtfmConfig.Preset("xl"));
        }
        finally { Console.SetOut(stdout); }
    }
}
