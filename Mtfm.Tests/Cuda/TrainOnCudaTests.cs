using System.Text.Json;
using Mtfm.Cli.Commands;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Model;

namespace Mtfm.Tests.Cuda;

/// <summary>`mtfm train --device cuda` end to end: on the emulated device everywhere, on a real GPU when present.</summary>
[Collection(ConsoleCollection.Name)]
public class TrainOnCudaTests
{
    private static readonly MtfmConfig Small = MtfmConfig.Tiny with
    {
        DModel = 8, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 4, TowerWidth = 4, EmbeddingDim = 4, TokenizerHidden = 8,
    };

    [Theory]
    [InlineData(CudaTestDevice.Emulated)]
    [InlineData(CudaTestDevice.Gpu)]
    public void TrainOnCudaMatchesTheCpuRun(string kind)
    {
        string device = kind == CudaTestDevice.Emulated ? "cuda-emulated" : "cuda";
        if (kind == CudaTestDevice.Emulated)
        {
            var lib = CudaTestDevice.EmulationLibraryOrSkip();
            Environment.SetEnvironmentVariable(EmulatedCudaDriver.LibraryVariable, lib);
        }
        string dir = Directory.CreateTempSubdirectory("mtfm-cuda-run").FullName;
        var stdout = Console.Out;
        var stderr = Console.Error;
        try
        {
            var log = new StringWriter();
            Console.SetOut(log);
            Console.SetError(log);
            TrainRequest Request(string dev, string name) => new()
            {
                Data = "synthetic:tiny", Config = Small, Epochs = 1, BatchTokens = 512, OutDir = dir, Name = name, Threads = 1, Device = dev,
            };
            int rc = TrainCommand.Run(Request(device, "gpu"));
            if (rc == 2 && kind == CudaTestDevice.Gpu) CudaTestDevice.SkipNoGpu(log.ToString().Trim());
            Assert.True(rc == 0, log.ToString());
            Assert.Equal(0, TrainCommand.Run(Request("cpu", "cpu")));
            double AucOf(string name)
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, name, "metrics.json")));
                foreach (var row in doc.RootElement.GetProperty("metrics").EnumerateArray())
                    if (row.GetProperty("scenario").GetString() == "(all)" && row.GetProperty("task").GetString() == "click")
                        return row.GetProperty("auc").GetDouble();
                throw new InvalidOperationException("no pooled click row in metrics.json");
            }
            double cuda = AucOf("gpu"), cpu = AucOf("cpu");
            Assert.True(Math.Abs(cuda - cpu) < 5e-3, $"{device} AUC {cuda} vs cpu AUC {cpu}\n{log}");
            Assert.Contains("cuda (", log.ToString());
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
            Directory.Delete(dir, true);
        }
    }
}
