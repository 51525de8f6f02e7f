using System.Numerics.Tensors;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Tests.Core;

namespace Mtfm.Tests.Backends;

/// <summary>
/// The CPU LayerNorm forward on rows of up to 8 whole vectors (three vector sweeps per row) gives exactly the bits of
/// the span-op formulation, recomputed here: mean = Sum(x)/n, d = x − mean, rstd = 1/√(SumOfSquares(d)/n + eps),
/// y = MultiplyAdd(d·rstd, gamma, beta). Wider rows keep the span ops; both are checked.
/// </summary>
public class LayerNormForwardTests
{
    [Theory]
    [InlineData(16, 1)]
    [InlineData(64, 0)]
    [InlineData(128, 3)]
    [InlineData(144, 2)] // wider than 8 vectors: the span path
    [InlineData(50, 1)]  // not whole vectors: the span path
    public void SweptRowsGiveTheSpanOpBitsForAnyThreadCount(int cols, int groups)
    {
        const int rows = 500;
        const float eps = 1e-5f;
        var rng = new Random(cols * 7 + groups);
        var x = TestTensors.Randn(rng, rows * cols);
        for (int i = 0; i < x.Length; i++) x[i] = x[i] * 3 + 0.5f;
        float[]? gamma = groups > 0 ? TestTensors.Randn(rng, groups * cols) : null;
        float[]? beta = groups > 0 ? TestTensors.Randn(rng, groups * cols) : null;
        int[]? ids = groups > 1 ? Enumerable.Range(0, rows).Select(_ => rng.Next(groups)).ToArray() : null;
        var wantY = new float[rows * cols];
        var wantMean = new float[rows];
        var wantRstd = new float[rows];
        for (int i = 0; i < rows; i++)
        {
            var xr = x.AsSpan(i * cols, cols);
            var y = wantY.AsSpan(i * cols, cols);
            wantMean[i] = TensorPrimitives.Sum(xr) / cols;
            TensorPrimitives.Subtract(xr, wantMean[i], y);
            wantRstd[i] = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(y) / cols + eps);
            TensorPrimitives.Multiply(y, wantRstd[i], y);
            if (gamma is null) continue;
            int g = ids is null ? 0 : ids[i];
            TensorPrimitives.MultiplyAdd(y, gamma.AsSpan(g * cols, cols), beta!.AsSpan(g * cols, cols), y);
        }
        foreach (int threads in new[] { 1, 2 })
        {
            using var be = new CpuBackend(threads);
            using var tx = TestTensors.Tensor(be, x, rows, cols);
            using var tg = gamma is null ? null : TestTensors.Tensor(be, gamma, groups, cols);
            using var tb = beta is null ? null : TestTensors.Tensor(be, beta, groups, cols);
            using var tid = ids is null ? null : TestTensors.Ints(be, ids, rows);
            using var ty = TestTensors.Tensor(be, new float[rows * cols], rows, cols);
            using var tm = TestTensors.Tensor(be, new float[rows], rows);
            using var tr = TestTensors.Tensor(be, new float[rows], rows);
            be.LayerNorm(tx, tg, tb, tid, eps, ty, tm, tr);
            Assert.Equal(wantMean, TestTensors.Read(tm));
            Assert.Equal(wantRstd, TestTensors.Read(tr));
            Assert.Equal(wantY, TestTensors.Read(ty));
        }
    }
}
