using System.Diagnostics;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;
using Mtfm.Cli.Commands;

namespace Mtfm.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        var r = new TrainRequest
        {
            Data = args.Length > 0 ? args[0] : "synthetic",
            Epochs = args.Length > 1 ? int.Parse(args[1]) : 3,
            BatchTokens = args.Length > 2 ? int.Parse(args[2]) : 4096,
        };
        var sw = Stopwatch.StartNew();
        var data = PreparedData.Load(r, Console.Out);
        Console.WriteLine($"data {sw.Elapsed.TotalSeconds:F1}s: train {data.Train} | valid {data.Valid} | test {data.Test}");
        using var be = new CpuBackend(r.Threads);
        using var model = new MtfmModel(be, MtfmConfig.Tiny, data.Store.Layout, r.Seed);
        Console.WriteLine($"params {model.ParameterCount:N0}");
        var trainer = new MtfmTrainer(model, new TrainOptions { Epochs = r.Epochs, BatchTokens = r.BatchTokens });
        var tb = new BatchBuilder(data.Train, data.Stats);
        var vb = new BatchBuilder(data.Valid, data.Stats);
        var res = trainer.Train(data.Train, tb, vb, p => Console.WriteLine($"ep {p.Epoch} step {p.Step}/{p.TotalSteps} loss {p.Loss:F4} expo/s {p.ExposuresPerSecond:F0} gauc {p.ValidGauc}"));
        Console.WriteLine($"trained {res.TrainSeconds:F1}s best valid gauc {res.BestValidGauc:F4}");
        var ev = trainer.Evaluate(new BatchBuilder(data.Test, data.Stats));
        for (int i = 0; i < ev.Model.Count; i++)
        {
            var m = ev.Model[i]; var b = ev.Bayes?[i];
            Console.WriteLine($"s{m.Scenario} t{m.Task} n={m.Exposures} auc {m.Auc:F4} gauc {m.Gauc:F4} ll {m.LogLoss:F4} | bayes auc {b?.Auc:F4} gauc {b?.Gauc:F4}");
        }
        return 0;
    }
}
