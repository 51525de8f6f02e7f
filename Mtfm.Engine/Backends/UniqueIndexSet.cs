namespace Mtfm.Engine.Backends;

/// <summary>
/// The host computation behind <see cref="IBackend.UniqueIndices"/>, shared by every backend: the distinct values of
/// an index list in ascending order and, per position, the slot of its value among them.
/// </summary>
internal static class UniqueIndexSet
{
    /// <summary>
    /// Distinct values of <paramref name="values"/> ascending, and each position's slot. A value outside
    /// [0, int.MaxValue] throws naming <c>index</c>, the position and the value.
    /// </summary>
    public static (int[] Unique, int[] Inverse) Compute(ReadOnlySpan<long> values)
    {
        int m = values.Length;
        for (int i = 0; i < m; i++)
            if (values[i] < 0 || values[i] > int.MaxValue)
                throw new ArgumentOutOfRangeException("index", values[i], $"index[{i}] = {values[i]} is outside [0, {int.MaxValue}].");
        var sorted = values.ToArray();
        Array.Sort(sorted);
        int u = 0;
        for (int i = 0; i < m; i++)
            if (i == 0 || sorted[i] != sorted[u - 1]) sorted[u++] = sorted[i];
        var unique = new int[u];
        for (int i = 0; i < u; i++) unique[i] = (int)sorted[i];
        var inverse = new int[m];
        for (int i = 0; i < m; i++) inverse[i] = Array.BinarySearch(unique, (int)values[i]);
        return (unique, inverse);
    }
}
