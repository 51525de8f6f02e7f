using Mtfm.Engine.Data;

namespace Mtfm.Engine.IO;

/// <summary>The <see cref="PopulationStatistics"/> state inside a model checkpoint (<see cref="MtfmCheckpoint"/>).</summary>
internal static class PopulationCheckpoint
{
    private const string TensorPrefix = "population.";

    /// <summary>
    /// Adds the state to a checkpoint, every count as an I64 tensor of [rows, 5] (exposures, clicks, decayed exposures,
    /// decayed clicks as IEEE-754 bit patterns, and the last time): <c>population.s.a</c> per (scenario s, column a),
    /// <c>population.table.t</c> and <c>population.behaviour.t</c> per embedding table t that a T column uses;
    /// <c>population.s.totals</c> and <c>population.totals</c> [2] hold the scenario and all-scenario exposures and
    /// clicks. Bit patterns keep the round trip exact. A state that reads user columns at the window start
    /// (<see cref="PopulationStatistics.UserRatesAtWindowStart"/>) adds, for every count tensor with such rows, the
    /// window-start counts as <c>NAME.window</c> [rows, 6] (the same five fields, then the window index).
    /// </summary>
    public static void Write(PopulationStatistics state, SafetensorsWriter w)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(w);
        var l = state.Layout;
        for (int s = 0; s < l.ScenarioCount; s++)
        {
            for (int a = 0; a < state.ColumnCount(s); a++) WriteCounts(w, $"{TensorPrefix}{s}.{a}", state.Column(s, a));
            WriteTotals(w, $"{TensorPrefix}{s}.totals", state.ScenarioTotals(s));
        }
        for (int t = 0; t < l.Tables.Count; t++)
        {
            var (e, b) = state.TableCounts(t);
            if (e is not null) WriteCounts(w, $"{TensorPrefix}table.{t}", e);
            if (b is not null) WriteCounts(w, $"{TensorPrefix}behaviour.{t}", b);
        }
        WriteTotals(w, $"{TensorPrefix}totals", state.AllTotals);
    }

    /// <summary>
    /// Reads a state written by <see cref="Write"/>, to be read with the model's <paramref name="userRecentPrior"/>
    /// (Model.MtfmConfig.UserRecentRatePrior; a rule of the reading, not saved with the counts) and
    /// <paramref name="userRatesAtWindowStart"/> (Model.MtfmConfig.UserRatesAtWindowStart; its window-start counts must
    /// be there); throws <see cref="CheckpointFormatException"/> naming <paramref name="path"/> and the tensor.
    /// </summary>
    public static PopulationStatistics Read(SafetensorsFile file, DataLayout layout, string path, double userRecentPrior, bool userRatesAtWindowStart = false)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(layout);
        var p = new PopulationStatistics(layout, userRecentPrior, userRatesAtWindowStart);
        for (int s = 0; s < layout.ScenarioCount; s++)
        {
            for (int a = 0; a < p.ColumnCount(s); a++) ReadCounts(file, path, $"{TensorPrefix}{s}.{a}", p.Column(s, a));
            var (e, k) = ReadTotals(file, path, $"{TensorPrefix}{s}.totals");
            p.SetScenarioTotals(s, e, k);
        }
        for (int t = 0; t < layout.Tables.Count; t++)
        {
            var (e, b) = p.TableCounts(t);
            if (e is not null) ReadCounts(file, path, $"{TensorPrefix}table.{t}", e);
            if (b is not null) ReadCounts(file, path, $"{TensorPrefix}behaviour.{t}", b);
        }
        p.AllTotals = ReadTotals(file, path, $"{TensorPrefix}totals");
        return p;
    }

    private static void WriteCounts(SafetensorsWriter w, string name, PopulationStatistics.Counts c)
    {
        int rows = c.Last.Length;
        w.AddInt64(name, Pack(c, null), rows, 5);
        if (c.AtWindowStart is { } s) w.AddInt64(name + WindowSuffix, Pack(s.Start, s.Window), rows, 6);
    }

    /// <summary>Rows of (exposures, clicks, decayed exposures, decayed clicks as bit patterns, last time[, window]).</summary>
    private static long[] Pack(PopulationStatistics.Counts c, long[]? window)
    {
        int rows = c.Last.Length, width = window is null ? 5 : 6;
        var data = new long[rows * width];
        for (int r = 0; r < rows; r++)
        {
            int o = width * r;
            data[o] = BitConverter.DoubleToInt64Bits(c.Exposures[r]);
            data[o + 1] = BitConverter.DoubleToInt64Bits(c.Clicks[r]);
            data[o + 2] = BitConverter.DoubleToInt64Bits(c.DecayedExposures[r]);
            data[o + 3] = BitConverter.DoubleToInt64Bits(c.DecayedClicks[r]);
            data[o + 4] = c.Last[r];
            if (window is not null) data[o + 5] = window[r];
        }
        return data;
    }

    /// <summary>Reads tensor <paramref name="name"/> written by <see cref="Pack"/> into <paramref name="c"/> (and <paramref name="window"/>), counts checked.</summary>
    private static void Unpack(SafetensorsFile file, string path, string name, PopulationStatistics.Counts c, long[]? window)
    {
        int rows = c.Last.Length, width = window is null ? 5 : 6;
        var data = Tensor(file, path, name, (long)width * rows);
        for (int r = 0; r < rows; r++)
        {
            int o = width * r;
            c.Exposures[r] = Count(data[o], name, path);
            c.Clicks[r] = Count(data[o + 1], name, path);
            c.DecayedExposures[r] = Count(data[o + 2], name, path);
            c.DecayedClicks[r] = Count(data[o + 3], name, path);
            c.Last[r] = data[o + 4];
            if (window is not null) window[r] = data[o + 5];
        }
    }

    private const string WindowSuffix = ".window";

    private static void WriteTotals(SafetensorsWriter w, string name, (double Exposures, double Clicks) t) =>
        w.AddInt64(name, [BitConverter.DoubleToInt64Bits(t.Exposures), BitConverter.DoubleToInt64Bits(t.Clicks)], 2);

    private static long[] Tensor(SafetensorsFile file, string path, string name, long length)
    {
        if (!file.Contains(name)) throw new CheckpointFormatException(path, $"tensor '{name}' is missing (the model reads population statistics).");
        var data = file.ReadInt64(name);
        if (data.LongLength != length) throw new CheckpointFormatException(path, $"tensor '{name}' has {data.LongLength} values, the layout needs {length}.");
        return data;
    }

    private static double Count(long bits, string name, string path)
    {
        double v = BitConverter.Int64BitsToDouble(bits);
        if (!double.IsFinite(v) || v < 0) throw new CheckpointFormatException(path, $"tensor '{name}' holds a count that is negative or not finite ({v}).");
        return v;
    }

    private static void ReadCounts(SafetensorsFile file, string path, string name, PopulationStatistics.Counts c)
    {
        Unpack(file, path, name, c, null);
        if (c.AtWindowStart is { } s) Unpack(file, path, name + WindowSuffix, s.Start, s.Window);
    }

    private static (double Exposures, double Clicks) ReadTotals(SafetensorsFile file, string path, string name)
    {
        var t = Tensor(file, path, name, 2);
        return (Count(t[0], name, path), Count(t[1], name, path));
    }
}
