using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Mtfm.Cli.Reporting;

/// <summary>Writes a run's report directory: report.md, metrics.json, loss.png and one auc-&lt;task&gt;.png per task.</summary>
internal static class ReportWriter
{
    /// <summary>Writes the report into <paramref name="directory"/> (created if missing); returns the paths written.</summary>
    public static IReadOnlyList<string> Write(RunReport report, string directory)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory.CreateDirectory(directory);
        var written = new List<string>();
        var plots = new List<(string title, string file)>();

        string? plotsMissing = null;
        try
        {
            if (report.Curves.Train.Count + report.Curves.Validation.Count > 0)
            {
                string loss = Path.Combine(directory, "loss.png");
                ReportPlots.LossCurves(report.Curves, loss);
                written.Add(loss);
                plots.Add(("Loss curves", "loss.png"));
            }
            foreach (string task in report.Metrics.Select(m => m.Task).Distinct(StringComparer.Ordinal))
            {
                string file = $"auc-{Sanitize(task)}.png";
                string p = Path.Combine(directory, file);
                ReportPlots.ScenarioAuc(report.Metrics, task, p);
                written.Add(p);
                plots.Add(($"AUC per scenario ({task})", file));
            }
        }
        catch (Exception e) when (IsMissingNativeRenderer(e))
        {
            // A machine without SkiaSharp's native library (a slimmed deployment, an unusual libc) still gets its
            // metrics and report: the plots are the one part that needs it.
            plotsMissing = $"plots not drawn: the plotting library could not load its native renderer ({Innermost(e).Message.Split('\n')[0].Trim()})";
            Console.Error.WriteLine("warning: " + plotsMissing);
        }

        string json = Path.Combine(directory, "metrics.json");
        File.WriteAllText(json, JsonSerializer.Serialize(report, ReportJsonContext.Default.RunReport));
        written.Add(json);

        string md = Path.Combine(directory, "report.md");
        File.WriteAllText(md, Markdown(report, plots, plotsMissing));
        written.Add(md);
        return written;
    }

    /// <summary>The report.md text.</summary>
    internal static string Markdown(RunReport r, IReadOnlyList<(string title, string file)> plots, string? plotsMissing = null)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append("# ").AppendLine(Escape(r.Title)).AppendLine();
        sb.Append(ci, $"Written {r.CreatedUtc.UtcDateTime:yyyy-MM-dd HH:mm:ss} UTC. Training took {r.TrainSeconds:0.0} s at {r.ExposuresPerSecond:#,0} exposures/s.").AppendLine().AppendLine();
        if (r.Settings.Count > 0)
        {
            sb.AppendLine("## Settings").AppendLine().AppendLine("| setting | value |").AppendLine("|---|---|");
            foreach (var s in r.Settings) sb.Append("| ").Append(Escape(s.Name)).Append(" | ").Append(Escape(s.Value)).AppendLine(" |");
            sb.AppendLine();
        }
        sb.AppendLine("## Metrics (evaluation window)").AppendLine();
        bool bayes = r.Metrics.Any(m => double.IsFinite(m.BayesOptimalAuc));
        sb.Append("| scenario | task | exposures | positives | AUC | GAUC | GAUC users | log-loss |");
        if (bayes) sb.Append(" Bayes-optimal AUC |");
        bool expected = r.Metrics.Any(m => double.IsFinite(m.ExpectedAuc));
        if (expected) sb.Append(" expected AUC |");
        sb.AppendLine();
        sb.Append("|---|---|---:|---:|---:|---:|---:|---:|");
        if (bayes) sb.Append("---:|");
        if (expected) sb.Append("---:|");
        sb.AppendLine();
        foreach (var m in r.Metrics)
        {
            sb.Append(ci, $"| {Escape(m.Scenario)} | {Escape(m.Task)} | {m.Exposures:#,0} | {m.Positives:#,0} | {F(m.Auc)} | {F(m.Gauc)} | {m.GaucUsers:#,0} | {F(m.LogLoss)} |");
            if (bayes) sb.Append(' ').Append(F(m.BayesOptimalAuc)).Append(" |");
            if (expected) sb.Append(' ').Append(F(m.ExpectedAuc)).Append(" |");
            sb.AppendLine();
        }
        sb.AppendLine().AppendLine("n/a: undefined (one class only, or no user with both classes).");
        if (expected) sb.AppendLine("Expected AUC: the model's AUC averaged over label draws from the data's true probabilities (free of the one test draw's noise).");
        sb.AppendLine();
        if (plotsMissing is not null) sb.Append("Note: ").AppendLine(Escape(plotsMissing)).AppendLine();
        foreach (var (title, file) in plots)
            sb.Append("## ").AppendLine(title).AppendLine().Append("![").Append(title).Append("](").Append(file).AppendLine(")").AppendLine();
        return sb.ToString();
    }

    /// <summary>True for the failures of a missing native renderer (DllNotFoundException, possibly inside type initialisers).</summary>
    internal static bool IsMissingNativeRenderer(Exception e) => Innermost(e) is DllNotFoundException or EntryPointNotFoundException;

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e;
    }

    private static string F(double v) => double.IsFinite(v) ? v.ToString("0.0000", CultureInfo.InvariantCulture) : "n/a";

    private static string Escape(string s) => s.Replace("|", "\\|", StringComparison.Ordinal).Replace("\n", " ", StringComparison.Ordinal);

    private static string Sanitize(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (char c in s) sb.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_');
        return sb.ToString();
    }
}
