using ScottPlot;

namespace Mtfm.Cli.Reporting;

/// <summary>PNG plots of a run (ScottPlot 5 on SkiaSharp; native assets without system dependencies).</summary>
internal static class ReportPlots
{
    /// <summary>Training loss (line) and validation loss (line with markers) against the step.</summary>
    public static void LossCurves(TrainingCurves curves, string path, int width = 900, int height = 520)
    {
        ArgumentNullException.ThrowIfNull(curves);
        if (curves.Train.Count == 0 && curves.Validation.Count == 0)
            throw new ArgumentException("both loss curves are empty: nothing to plot.", nameof(curves));
        var plt = new Plot();
        if (curves.Train.Count > 0)
        {
            var s = plt.Add.ScatterLine(curves.Train.Select(p => (double)p.Step).ToArray(), curves.Train.Select(p => p.Loss).ToArray());
            s.LegendText = "training loss";
            s.LineWidth = 1.5f;
        }
        if (curves.Validation.Count > 0)
        {
            var s = plt.Add.Scatter(curves.Validation.Select(p => (double)p.Step).ToArray(), curves.Validation.Select(p => p.Loss).ToArray());
            s.LegendText = "validation loss";
            s.LineWidth = 2f;
            s.MarkerSize = 7;
        }
        plt.Title("Loss");
        plt.XLabel("step");
        plt.YLabel("loss (BCE, summed over tasks)");
        plt.ShowLegend(Alignment.UpperRight);
        Save(plt, path, width, height);
    }

    /// <summary>Per-scenario AUC bars of one task, each beside the Bayes-optimal AUC of the same exposures where known.</summary>
    public static void ScenarioAuc(IReadOnlyList<ScenarioMetricsRow> rows, string task, string path, int width = 900, int height = 520)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var sel = rows.Where(r => r.Task == task).ToArray();
        if (sel.Length == 0) throw new ArgumentException($"no metrics rows for task '{task}'.", nameof(task));
        var plt = new Plot();
        var model = Colors.SteelBlue;
        var bayes = Colors.DarkOrange;
        var bars = new List<Bar>();
        bool anyBayes = false;
        double lo = 1;
        for (int i = 0; i < sel.Length; i++)
        {
            double x = i * 3;
            if (double.IsFinite(sel[i].Auc))
            {
                bars.Add(new Bar { Position = x, Value = sel[i].Auc, FillColor = model, Label = sel[i].Auc.ToString("0.000") });
                lo = Math.Min(lo, sel[i].Auc);
            }
            if (double.IsFinite(sel[i].BayesOptimalAuc))
            {
                anyBayes = true;
                bars.Add(new Bar { Position = x + 1, Value = sel[i].BayesOptimalAuc, FillColor = bayes, Label = sel[i].BayesOptimalAuc.ToString("0.000") });
                lo = Math.Min(lo, sel[i].BayesOptimalAuc);
            }
        }
        var plottable = plt.Add.Bars(bars);
        plottable.ValueLabelStyle.FontSize = 12;
        var positions = sel.Select((_, i) => i * 3 + (anyBayes ? 0.5 : 0)).ToArray();
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(positions, sel.Select(r => r.Scenario).ToArray());
        // AUC differences live near the top: start the axis a little below the lowest bar (never above 0.5).
        double bottom = Math.Max(0, Math.Min(0.5, Math.Floor((lo - 0.05) * 10) / 10));
        plt.Axes.SetLimitsY(bottom, 1.0);
        plt.Axes.SetLimitsX(-1.5, (sel.Length - 1) * 3 + 2.5); // fixed slot width: one scenario is not one huge bar
        plt.Legend.ManualItems.Add(new LegendItem { LabelText = "model AUC", FillColor = model });
        if (anyBayes) plt.Legend.ManualItems.Add(new LegendItem { LabelText = "Bayes-optimal AUC", FillColor = bayes });
        plt.ShowLegend(Alignment.UpperRight);
        plt.Title($"AUC per scenario: {task}");
        plt.YLabel("AUC");
        Save(plt, path, width, height);
    }

    private static void Save(Plot plt, string path, int width, int height)
    {
        if (width < 100) throw new ArgumentOutOfRangeException(nameof(width), width, "width must be ≥ 100 pixels.");
        if (height < 100) throw new ArgumentOutOfRangeException(nameof(height), height, "height must be ≥ 100 pixels.");
        plt.SavePng(path, width, height);
    }
}
