using System.Globalization;
using System.Text;

namespace Mtfm.Bench.Cuda;

/// <summary>
/// The markdown table of <see cref="CudaQuick"/>: a header, one table of measured figures, a table of the issue's
/// targets, notes. Each row is printed to stdout as it is measured and the whole file (<c>--out</c>) is rewritten after
/// each row, so a run cut short by a timeout still leaves what it measured.
/// </summary>
internal sealed class QuickReport(string? outPath)
{
    private static readonly CultureInfo Ci = CultureInfo.InvariantCulture;
    private readonly List<string> _header = [];
    private readonly List<string> _rows = [];
    private readonly List<string> _targets = [];
    private readonly List<string> _notes = [];

    public void Header(string line)
    {
        _header.Add(line);
        Console.WriteLine(line);
        Flush();
    }

    /// <summary>A measured figure: <paramref name="ms"/> are the per-repetition times (median and spread shown).</summary>
    public void Row(string figure, string size, double[]? ms, string rate, string note = "")
    {
        string med = "-", spread = "-";
        if (ms is { Length: > 0 })
        {
            med = F(DeviceTimer.Median(ms), 3);
            spread = $"{F(ms.Min(), 3)}–{F(ms.Max(), 3)} ({ms.Length})";
        }
        var row = $"| {figure} | {size} | {med} | {spread} | {rate} | {note} |";
        _rows.Add(row);
        Console.WriteLine(row);
        Flush();
    }

    public void Target(string what, string measured, string target, bool? met)
    {
        var row = $"| {what} | {measured} | {target} | {(met is null ? "n/a" : met.Value ? "**met**" : "not met")} |";
        _targets.Add(row);
        Console.WriteLine(row);
        Flush();
    }

    public void Note(string text)
    {
        _notes.Add(text);
        Console.WriteLine("note: " + text);
        Flush();
    }

    public string Markdown()
    {
        var sb = new StringBuilder();
        foreach (var h in _header) sb.AppendLine(h);
        if (_rows.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine("| figure | size | median ms | min–max ms (reps) | rate | note |");
            sb.AppendLine("|---|---|---:|---:|---:|---|");
            foreach (var r in _rows) sb.AppendLine(r);
        }
        if (_targets.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine("| target (CUDA issue) | measured | target | |");
            sb.AppendLine("|---|---:|---:|---|");
            foreach (var r in _targets) sb.AppendLine(r);
        }
        if (_notes.Count > 0)
        {
            sb.AppendLine();
            foreach (var n in _notes) sb.AppendLine("- " + n);
        }
        return sb.ToString();
    }

    private void Flush()
    {
        if (outPath is null) return;
        var dir = Path.GetDirectoryName(Path.GetFullPath(outPath));
        if (dir is not null) Directory.CreateDirectory(dir);
        File.WriteAllText(outPath, Markdown());
    }

    public static string F(double v, int digits) => double.IsFinite(v) ? v.ToString("F" + digits, Ci) : "-";
}
