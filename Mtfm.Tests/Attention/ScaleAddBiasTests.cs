using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Tests.Attention;

/// <summary>The attention's score pass s = alpha·s + rab[bucket]: the permute path gives the scalar loop's bits.</summary>
public class ScaleAddBiasTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(31)]
    [InlineData(32)]
    [InlineData(33)]
    [InlineData(63)] // the default 2·32 − 1
    [InlineData(64)]
    [InlineData(65)] // beyond the permute table: the scalar path
    [InlineData(255)]
    public unsafe void EveryLengthAndTableSizeMatchesTheScalarLoop(int tableSize)
    {
        var rng = new Random(tableSize);
        const float alpha = 0.17677669f;
        var bias = Enumerable.Range(0, tableSize).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        foreach (int n in new[] { 0, 1, 15, 16, 17, 40, 288 })
        {
            var s = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 20 - 10)).ToArray();
            var bucket = Enumerable.Range(0, n).Select(_ => rng.Next(tableSize)).ToArray();
            var expect = s.Select((x, j) => alpha * x + bias[bucket[j]]).ToArray();
            fixed (float* ps = s, pb = bias)
            fixed (int* pk = bucket)
                HstuAttentionMicroKernels.ScaleAddBias(ps, n, alpha, pb, tableSize, pk);
            for (int j = 0; j < n; j++)
                Assert.True(BitConverter.SingleToInt32Bits(expect[j]) == BitConverter.SingleToInt32Bits(s[j]), $"table {tableSize}, n {n}, j {j}: {s[j]} vs {expect[j]}");
        }
    }
}
