using Mtfm.Engine.Backends;

namespace Mtfm.Tests.Core;

/// <summary>
/// <see cref="UniqueIndexSet.Compute"/> (behind every backend's <c>UniqueIndices</c>) against a naive reference, on both
/// of its paths: values in a small range (dense slot map) and values spread over a large range (one pair sort).
/// </summary>
public sealed class UniqueIndexSetTests
{
    private static (int[] Unique, int[] Inverse) Reference(long[] values)
    {
        var unique = values.Distinct().OrderBy(v => v).Select(v => (int)v).ToArray();
        return (unique, values.Select(v => Array.IndexOf(unique, (int)v)).ToArray());
    }

    [Theory]
    [InlineData(0, 10)]             // empty
    [InlineData(1, 10)]
    [InlineData(500, 40)]           // many repeats, small range: dense path
    [InlineData(300, 5000)]         // range below 4·m + 4096: dense path
    [InlineData(300, 1_000_000)]    // wide range: sort path
    [InlineData(2000, int.MaxValue)] // values up to int.MaxValue: sort path
    public void MatchesTheNaiveReference(int m, int range)
    {
        var rng = new Random(m * 31 + range % 1000);
        var values = Enumerable.Range(0, m).Select(_ => (long)rng.Next(range)).ToArray();
        if (m > 1 && range > 1_000) values[m / 2] = values[0]; // at least one repeat on the wide paths too
        if (range == int.MaxValue && m > 2) values[1] = int.MaxValue;
        var (u, inv) = UniqueIndexSet.Compute(values);
        var (ru, rinv) = Reference(values);
        Assert.Equal(ru, u);
        Assert.Equal(rinv, inv);
    }

    [Fact]
    public void RejectsValuesOutsideTheInt32Range()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => UniqueIndexSet.Compute([3, 1L << 31, 2]));
        Assert.Contains("index[1] = 2147483648", e.Message);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => UniqueIndexSet.Compute([3, -1]));
        Assert.Contains("index[1] = -1", e.Message);
    }
}
