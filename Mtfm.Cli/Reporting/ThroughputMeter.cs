namespace Mtfm.Cli.Reporting;

/// <summary>Rate and ETA of a job of <see cref="Total"/> units, measured from its start with a <see cref="TimeProvider"/>.</summary>
internal sealed class ThroughputMeter
{
    private readonly TimeProvider _time;
    private readonly long _start;

    public ThroughputMeter(long total, TimeProvider? time = null)
    {
        if (total < 0) throw new ArgumentOutOfRangeException(nameof(total), total, "total must be ≥ 0.");
        Total = total;
        _time = time ?? TimeProvider.System;
        _start = _time.GetTimestamp();
    }

    public long Total { get; }

    public TimeSpan Elapsed => _time.GetElapsedTime(_start);

    /// <summary>Units per second so far (0 before any time has passed).</summary>
    public double Rate(long done)
    {
        double s = Elapsed.TotalSeconds;
        return s > 0 ? done / s : 0;
    }

    /// <summary>Remaining time at the average rate so far; null while unknown (nothing done yet).</summary>
    public TimeSpan? Eta(long done)
    {
        double r = Rate(done);
        if (r <= 0) return null;
        double s = Math.Max(0, Total - done) / r;
        return s < TimeSpan.MaxValue.TotalSeconds ? TimeSpan.FromSeconds(s) : null;
    }

    public static string Format(TimeSpan? t) => t is null ? "--:--:--" : $"{(int)t.Value.TotalHours:00}:{t.Value.Minutes:00}:{t.Value.Seconds:00}";
}
