using System.Buffers;

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
        long max = -1;
        for (int i = 0; i < m; i++)
        {
            if (values[i] < 0 || values[i] > int.MaxValue)
                throw new ArgumentOutOfRangeException("index", values[i], $"index[{i}] = {values[i]} is outside [0, {int.MaxValue}].");
            if (values[i] > max) max = values[i];
        }
        var inverse = new int[m];
        if (max < 4L * m + 4096)
        {
            // Values in a small range: slot per value by a dense map (O(m + max)), no sort.
            int range = (int)max + 1;
            var slot = ArrayPool<int>.Shared.Rent(range);
            try
            {
                var map = slot.AsSpan(0, range);
                map.Clear();
                for (int i = 0; i < m; i++) map[(int)values[i]] = 1;
                int u = 0;
                for (int v = 0; v < range; v++)
                    if (map[v] != 0) map[v] = ++u; // slot + 1
                var unique = new int[u];
                for (int v = 0; v < range; v++)
                    if (map[v] != 0) unique[map[v] - 1] = v;
                for (int i = 0; i < m; i++) inverse[i] = map[(int)values[i]] - 1;
                return (unique, inverse);
            }
            finally
            {
                ArrayPool<int>.Shared.Return(slot);
            }
        }
        // Otherwise one sort of (value, position) pairs gives both outputs.
        var keys = ArrayPool<long>.Shared.Rent(m);
        var pos = ArrayPool<int>.Shared.Rent(m);
        try
        {
            var k = keys.AsSpan(0, m);
            var p = pos.AsSpan(0, m);
            values.CopyTo(k);
            for (int i = 0; i < m; i++) p[i] = i;
            k.Sort(p);
            int u = 0;
            for (int i = 0; i < m; i++)
            {
                if (i == 0 || k[i] != k[u - 1]) k[u++] = k[i]; // k[u - 1] is the last distinct value so far
                inverse[p[i]] = u - 1;
            }
            var unique = new int[u];
            for (int i = 0; i < u; i++) unique[i] = (int)k[i];
            return (unique, inverse);
        }
        finally
        {
            ArrayPool<long>.Shared.Return(keys);
            ArrayPool<int>.Shared.Return(pos);
        }
    }
}
