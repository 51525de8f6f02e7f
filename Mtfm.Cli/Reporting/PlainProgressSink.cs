using System.Globalization;

namespace Mtfm.Cli.Reporting;

/// <summary>
/// Progress as plain text lines, at most one per <c>interval</c> (plus a final line): what CI logs and redirected
/// output get instead of a live display. Example:
/// <c>[train] 42.0% 42,000/100,000 exposures | loss 0.4321 | 12,345 exp/s | elapsed 00:00:03 | ETA 00:00:04</c>
/// </summary>
internal sealed class PlainProgressSink : IProgressSink
{
    private readonly TextWriter _out;
    private readonly string _title;
    private readonly TimeSpan _interval;
    private readonly TimeProvider _time;
    private readonly ThroughputMeter _meter;
    private long _lastLine;
    private bool _any;
    private long _done;
    private double _loss = double.NaN;

    public PlainProgressSink(TextWriter output, string title, long total, TimeSpan interval, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (interval < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(interval), interval, "interval must be ≥ 0.");
        _out = output;
        _title = title;
        _interval = interval;
        _time = time ?? TimeProvider.System;
        _meter = new ThroughputMeter(total, _time);
    }

    public void Report(long done, double loss)
    {
        if (done < 0) throw new ArgumentOutOfRangeException(nameof(done), done, "done must be ≥ 0.");
        _done = done;
        _loss = loss;
        long now = _time.GetTimestamp();
        if (_any && _time.GetElapsedTime(_lastLine, now) < _interval) return;
        _any = true;
        _lastLine = now;
        WriteLine();
    }

    /// <summary>Writes the final line.</summary>
    public void Complete()
    {
        WriteLine();
        _out.Flush();
    }

    internal string Line()
    {
        var ci = CultureInfo.InvariantCulture;
        long total = _meter.Total;
        string pct = total > 0 ? (100.0 * _done / total).ToString("0.0", ci) + "%" : "";
        string loss = double.IsNaN(_loss) ? "n/a" : _loss.ToString("0.0000", ci);
        return string.Create(ci, $"[{_title}] {pct} {_done:#,0}/{total:#,0} exposures | loss {loss} | {_meter.Rate(_done):#,0} exp/s | elapsed {ThroughputMeter.Format(_meter.Elapsed)} | ETA {ThroughputMeter.Format(_meter.Eta(_done))}");
    }

    private void WriteLine() => _out.WriteLine(Line());
}
