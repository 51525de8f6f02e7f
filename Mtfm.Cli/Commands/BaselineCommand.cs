using System.Globalization;
using Mtfm.Baselines;
using Mtfm.Cli.Reporting;
using Mtfm.Engine.Evaluation;

namespace Mtfm.Cli.Commands;

/// <summary>`mtfm train --model lightgbm`: the LightGBM baseline on causal statistics, same data, split, metrics and run directory layout as MTFM.</summary>
internal static class BaselineCommand
{
    public static int Run(TrainRequest r)
    {
        var ci = CultureInfo.InvariantCulture;
        var store = PreparedData.LoadStore(r, Console.Out, out string desc);
        var layout = store.Layout;
        Console.WriteLine($"data: {desc}: {store.Count:N0} events, {store.ExposureCount:N0} exposures, {store.UserCount:N0} users");
        var options = new LightGbmOptions { Seed = (int)(r.Seed % int.MaxValue), Threads = r.Threads };
        var result = LightGbmBaseline.Train(store, options, Console.Out);
        Console.WriteLine($"trained LightGBM in {result.TrainSeconds:F1} s (features {result.FeatureSeconds:F1} s, {result.FeatureNames.Count} columns)");
        var rows = TrainCommand.MetricRows(layout, new EvaluationResult(result.Test, result.Bayes));
        TrainCommand.PrintTable(rows);
        if (r.Predictions is not null)
        {
            var predictions = new PredictionWriter(store);
            int tasks = layout.TaskCount;
            foreach (int ev in result.TestEvents) predictions.Add(ev, result.Probabilities.AsSpan(store.ExposureIndexOf(ev) * tasks, tasks));
            TrainCommand.WritePredictions(predictions, r.Predictions);
        }

        string name = r.Name ?? $"{DateTime.UtcNow:yyyyMMdd-HHmmss}-lightgbm";
        string dir = Path.Combine(r.OutDir, name);
        Directory.CreateDirectory(dir);
        File.WriteAllLines(Path.Combine(dir, "features.txt"), result.FeatureNames);
        double exposuresPerSecond = result.TrainExposures.Sum() / Math.Max(result.TrainSeconds, 1e-9);
        var report = new RunReport($"LightGBM run {name}", DateTimeOffset.UtcNow,
        [
            new("data", desc), new("model", "lightgbm (ML.NET LightGbm 6.0.0) on causal statistics"),
            new("features", result.FeatureNames.Count.ToString(ci)), new("iterations", options.Iterations.ToString(ci)),
            new("leaves", options.Leaves.ToString(ci)), new("learning rate", options.LearningRate.ToString(ci)),
            new("early stopping rounds", options.EarlyStoppingRounds.ToString(ci)), new("seed", options.Seed.ToString(ci)),
            new("feature seconds", result.FeatureSeconds.ToString("F1", ci)),
        ], rows, new TrainingCurves([], []), result.TrainSeconds, exposuresPerSecond);
        ReportWriter.Write(report, dir);
        Console.WriteLine($"wrote {dir}/ (metrics.json, report.md, features.txt, plots)");
        return 0;
    }
}
