using Mtfm.Engine.Data;

namespace Mtfm.Engine.IO;

/// <summary>The <see cref="PopulationStatistics"/> state inside a model checkpoint (<see cref="MtfmCheckpoint"/>).</summary>
internal static class PopulationCheckpoint
{
    private const string TensorPrefix = "population.";

    /// <summary>
    /// Adds the state to a checkpoint: per (scenario s, column a) an I64 tensor <c>population.s.a</c> of [rows, 5]
    /// (exposures, clicks, decayed exposures, decayed clicks as IEEE-754 bit patterns, and the last time), and per scenario
    /// <c>population.s.totals</c> [2]. Bit patterns keep the round trip exact.
    /// </summary>
    public static void Write(PopulationStatistics state, SafetensorsWriter w)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(w);
        for (int s = 0; s < state.Layout.ScenarioCount; s++)
        {
            for (int a = 0; a < state.ColumnCount(s); a++)
            {
                var c = state.Column(s, a);
                int rows = c.Last.Length;
                var data = new long[rows * 5];
                for (int r = 0; r < rows; r++)
                {
                    data[5 * r] = BitConverter.DoubleToInt64Bits(c.Exposures[r]);
                    data[5 * r + 1] = BitConverter.DoubleToInt64Bits(c.Clicks[r]);
                    data[5 * r + 2] = BitConverter.DoubleToInt64Bits(c.DecayedExposures[r]);
                    data[5 * r + 3] = BitConverter.DoubleToInt64Bits(c.DecayedClicks[r]);
                    data[5 * r + 4] = c.Last[r];
                }
                w.AddInt64($"{TensorPrefix}{s}.{a}", data, rows, 5);
            }
            var (e, k) = state.ScenarioTotals(s);
            w.AddInt64($"{TensorPrefix}{s}.totals", [BitConverter.DoubleToInt64Bits(e), BitConverter.DoubleToInt64Bits(k)], 2);
        }
    }

    /// <summary>Reads a state written by <see cref="Write"/>; throws <see cref="CheckpointFormatException"/> naming <paramref name="path"/> and the tensor.</summary>
    public static PopulationStatistics Read(SafetensorsFile file, DataLayout layout, string path)
    {
        ArgumentNullException.ThrowIfNull(file);
        var p = new PopulationStatistics(layout);
        long[] Tensor(string name, long length)
        {
            if (!file.Contains(name)) throw new CheckpointFormatException(path, $"tensor '{name}' is missing (the model reads population statistics).");
            var data = file.ReadInt64(name);
            if (data.LongLength != length) throw new CheckpointFormatException(path, $"tensor '{name}' has {data.LongLength} values, the layout needs {length}.");
            return data;
        }
        static double Count(long bits, string name, string path)
        {
            double v = BitConverter.Int64BitsToDouble(bits);
            if (!double.IsFinite(v) || v < 0) throw new CheckpointFormatException(path, $"tensor '{name}' holds a count that is negative or not finite ({v}).");
            return v;
        }
        for (int s = 0; s < layout.ScenarioCount; s++)
        {
            for (int a = 0; a < p.ColumnCount(s); a++)
            {
                var c = p.Column(s, a);
                string name = $"{TensorPrefix}{s}.{a}";
                var data = Tensor(name, 5L * c.Last.Length);
                for (int r = 0; r < c.Last.Length; r++)
                {
                    c.Exposures[r] = Count(data[5 * r], name, path);
                    c.Clicks[r] = Count(data[5 * r + 1], name, path);
                    c.DecayedExposures[r] = Count(data[5 * r + 2], name, path);
                    c.DecayedClicks[r] = Count(data[5 * r + 3], name, path);
                    c.Last[r] = data[5 * r + 4];
                }
            }
            string tn = $"{TensorPrefix}{s}.totals";
            var t = Tensor(tn, 2);
            p.SetScenarioTotals(s, Count(t[0], tn, path), Count(t[1], tn, path));
        }
        return p;
    }

}
