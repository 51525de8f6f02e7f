namespace Mtfm.Engine.Data;

/// <summary>Fixed-length windows aligned to an origin, and the temporal split by window start.</summary>
/// <param name="Length">Window length in seconds (&gt; 0).</param>
/// <param name="Origin">Window origin in unix seconds.</param>
internal readonly record struct WindowSpec(long Length, long Origin)
{
    /// <summary>Index of the window holding time <paramref name="t"/> (floor division, also for t &lt; origin).</summary>
    public long IndexOf(long t) { long d = t - Origin, q = d / Length; return d % Length < 0 ? q - 1 : q; }
    /// <summary>Start time of window <paramref name="index"/>.</summary>
    public long StartOf(long index) => Origin + index * Length;
    /// <summary>The schema's windows.</summary>
    public static WindowSpec From(DatasetSchema s) => new(s.WindowSeconds, s.WindowOrigin);
}

/// <summary>Which part of a temporal split to aggregate.</summary>
internal enum SplitPart
{
    /// <summary>All windows.</summary>
    All,
    /// <summary>Windows starting before <see cref="SplitSpec.ValidStart"/>.</summary>
    Train,
    /// <summary>Windows starting in [ValidStart, TestStart).</summary>
    Valid,
    /// <summary>Windows starting at or after <see cref="SplitSpec.TestStart"/>.</summary>
    Test,
}
