namespace Mtfm.Engine.Data;

/// <summary>
/// Raw cell texts of chosen columns of the log, kept per exposure while reading (<see cref="ReadOptions.KeepColumns"/>)
/// so that predictions can be written with the user's own keys (request id, item id …) beside them.
/// </summary>
public sealed class ExposureColumns
{
    private readonly List<string> _values = [];

    internal ExposureColumns(IReadOnlyList<string> names) { Names = [.. names]; }

    /// <summary>The kept column names, in order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The text of kept column <paramref name="column"/> of exposure <paramref name="exposure"/> (dense exposure index, in reading order).</summary>
    public string Value(int exposure, int column) => _values[exposure * Names.Count + column];

    internal int ExposureCount => Names.Count == 0 ? 0 : _values.Count / Names.Count;

    internal void Add(string value) => _values.Add(value);
}
