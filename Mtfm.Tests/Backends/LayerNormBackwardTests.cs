using System.Numerics.Tensors;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Tests.Core;

namespace Mtfm.Tests.Backends;

/// <summary>
/// The CPU LayerNorm backward on rows of a multiple of 16 columns (one fused pass per row, dx and the parameter partials
/// together) gives exactly the bits of the span-op formulation it replaced, recomputed here independently: per row
/// x̂ = (x − mean)·rstd, g = dy·gamma, dx += rstd·((x̂·(−mean(g·x̂)) + g) − mean(g)); dgamma and dbeta summed per group
/// over blocks of 256 group-sorted rows, the blocks' partials then added in order to the accumulating outputs.
/// </summary>
public class LayerNormBackwardTests
{
    private const int Block = 256;

    private static (float[] Dx, float[] Dg, float[] Db) Reference(float[] x, float[] mean, float[] rstd, float[]? gamma, int[]? ids, float[] dy,
        float[] dx0, float[] dg0, float[] db0, int rows, int cols)
    {
        var dx = (float[])dx0.Clone();
        var xhat = new float[cols];
        var g = new float[cols];
        for (int i = 0; i < rows; i++)
        {
            var xr = x.AsSpan(i * cols, cols);
            var dyr = dy.AsSpan(i * cols, cols);
            TensorPrimitives.Subtract(xr, mean[i], xhat);
            TensorPrimitives.Multiply(xhat, rstd[i], xhat);
            if (gamma is null) dyr.CopyTo(g);
            else TensorPrimitives.Multiply(dyr, gamma.AsSpan((ids is null ? 0 : ids[i]) * cols, cols), g);
            float meanG = TensorPrimitives.Sum(g) / cols;
            float meanGx = TensorPrimitives.Dot(g, xhat) / cols;
            TensorPrimitives.MultiplyAdd(xhat, -meanGx, g, g);
            TensorPrimitives.Subtract(g, meanG, g);
            TensorPrimitives.MultiplyAdd(g, rstd[i], dx.AsSpan(i * cols, cols), dx.AsSpan(i * cols, cols));
        }
        var dgOut = (float[])dg0.Clone();
        var dbOut = (float[])db0.Clone();
        int groups = gamma is null ? 0 : gamma.Length / cols;
        for (int grp = 0; grp < groups; grp++)
        {
            var members = Enumerable.Range(0, rows).Where(i => (ids is null ? 0 : ids[i]) == grp).ToArray();
            for (int s = 0; s < members.Length; s += Block)
            {
                var pg = new float[cols];
                var pb = new float[cols];
                foreach (int i in members.Skip(s).Take(Block))
                {
                    TensorPrimitives.Subtract(x.AsSpan(i * cols, cols), mean[i], xhat);
                    TensorPrimitives.Multiply(xhat, rstd[i], xhat);
                    TensorPrimitives.MultiplyAdd(dy.AsSpan(i * cols, cols), xhat, pg, pg);
                    TensorPrimitives.Add(pb, dy.AsSpan(i * cols, cols), pb);
                }
                TensorPrimitives.Add(dgOut.AsSpan(grp * cols, cols), pg, dgOut.AsSpan(grp * cols, cols));
                TensorPrimitives.Add(dbOut.AsSpan(grp * cols, cols), pb, dbOut.AsSpan(grp * cols, cols));
            }
        }
        return (dx, dgOut, dbOut);
    }

    [Theory]
    [InlineData(16, 1, true, true)]
    [InlineData(128, 3, true, true)]
    [InlineData(128, 3, false, true)]   // parameters only
    [InlineData(128, 3, true, false)]   // dx only
    [InlineData(768, 2, true, true)]
    [InlineData(64, 0, true, false)]    // no affine parameters
    public void FusedRowsGiveTheSpanOpBitsForAnyThreadCount(int cols, int groups, bool wantDx, bool wantParams)
    {
        const int rows = 700;
        var rng = new Random(cols * 31 + groups);
        var x = TestTensors.Randn(rng, rows * cols);
        var dy = TestTensors.Randn(rng, rows * cols);
        var mean = TestTensors.Randn(rng, rows, 0.3);
        var rstd = Enumerable.Range(0, rows).Select(_ => (float)(0.5 + rng.NextDouble())).ToArray();
        float[]? gamma = groups > 0 ? TestTensors.Randn(rng, groups * cols) : null;
        int[]? ids = groups > 1 ? Enumerable.Range(0, rows).Select(_ => rng.Next(groups)).ToArray() : null;
        var dx0 = TestTensors.Randn(rng, rows * cols, 0.1);
        var dg0 = TestTensors.Randn(rng, Math.Max(1, groups) * cols, 0.1);
        var db0 = TestTensors.Randn(rng, Math.Max(1, groups) * cols, 0.1);
        var want = Reference(x, mean, rstd, gamma, ids, dy, dx0, dg0, db0, rows, cols);
        foreach (int threads in new[] { 1, 2 })
        {
            using var be = new CpuBackend(threads);
            using var tx = TestTensors.Tensor(be, x, rows, cols);
            using var tdy = TestTensors.Tensor(be, dy, rows, cols);
            using var tm = TestTensors.Tensor(be, mean, rows);
            using var tr = TestTensors.Tensor(be, rstd, rows);
            using var tg = gamma is null ? null : TestTensors.Tensor(be, gamma, groups, cols);
            using var tid = ids is null ? null : TestTensors.Ints(be, ids, rows);
            using var tdx = TestTensors.Tensor(be, dx0, rows, cols);
            using var tdg = TestTensors.Tensor(be, dg0, Math.Max(1, groups), cols);
            using var tdb = TestTensors.Tensor(be, db0, Math.Max(1, groups), cols);
            be.LayerNormBackward(tx, tm, tr, tg, tid, tdy, wantDx ? tdx : null, wantParams ? tdg : null, wantParams ? tdb : null);
            Assert.Equal(wantDx ? want.Dx : dx0, TestTensors.Read(tdx));
            if (wantParams)
            {
                Assert.Equal(want.Dg, TestTensors.Read(tdg));
                Assert.Equal(want.Db, TestTensors.Read(tdb));
            }
        }
    }
}
