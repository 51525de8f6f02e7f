using Mtfm.Engine.Backends.Cuda;
using static Mtfm.Tests.Cuda.CudaTestDevice;

namespace Mtfm.Tests.Cuda;

/// <summary>
/// Every kernel of cuda/*.cu through the C# driver abstraction, against plain C# references, on random inputs at
/// sizes that are not multiples of any block size (including empty inputs and empty segments). "emulated" runs the
/// kernels' real source on the host emulation; "gpu" runs them on a real device and is skipped when there is none.
/// </summary>
public sealed class CudaKernelTests
{
    private static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

    private static float Silu(float x) => x / (1f + MathF.Exp(-x));

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void SiluForwardAndBackward(string kind)
    {
        using var dev = Open(kind);
        var rng = new Random(1);
        foreach (var n in new[] { 0, 1, 1000, 5003 })
        {
            var x = RandomFloats(rng, n, -8, 8);
            var dy = RandomFloats(rng, n, -1, 1);
            ulong px = dev.Up(x), pdy = dev.Up(dy), py = dev.Zeros<float>(n), pdx = dev.Zeros<float>(n);
            dev.Ops.SiluForward(px, py, n, dev.Stream);
            dev.Ops.SiluBackward(px, pdy, pdx, n, dev.Stream);
            var wantY = x.Select(Silu).ToArray();
            var wantDx = x.Select((v, i) =>
            {
                var s = Sigmoid(v);
                return dy[i] * s * (1 + v * (1 - s));
            }).ToArray();
            AssertClose(wantY, dev.Down<float>(py, n), 1e-5f, 1e-6f, $"silu fwd n={n}");
            AssertClose(wantDx, dev.Down<float>(pdx, n), 1e-5f, 1e-6f, $"silu bwd n={n}");
        }
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void BiasAddAndBiasGrad(string kind)
    {
        using var dev = Open(kind);
        var rng = new Random(2);
        foreach (var (rows, cols) in new[] { (0, 5), (7, 13), (300, 33), (1, 130) })
        {
            var x = RandomFloats(rng, rows * cols, -1, 1);
            var b = RandomFloats(rng, cols, -1, 1);
            ulong px = dev.Up(x), pb = dev.Up(b), py = dev.Zeros<float>(rows * cols);
            dev.Ops.BiasAdd(px, pb, py, rows, cols, dev.Stream);
            var want = x.Select((v, i) => v + b[i % cols]).ToArray();
            AssertClose(want, dev.Down<float>(py, rows * cols), 0, 0, $"bias add {rows}x{cols}");
            var g0 = Enumerable.Repeat(0.5f, cols).ToArray();
            var pg = dev.Up(g0);
            dev.Ops.BiasGrad(px, pg, rows, cols, accumulate: true, dev.Stream);
            var wantG = new float[cols];
            for (var c = 0; c < cols; c++)
            {
                var s = 0f;
                for (var r = 0; r < rows; r++)
                    s += x[r * cols + c];
                wantG[c] = 0.5f + s;
            }
            AssertClose(wantG, dev.Down<float>(pg, cols), 1e-5f, 1e-5f, $"bias grad {rows}x{cols}");
        }
    }

    private static (float[] Y, float[] Mean, float[] Rstd, float[] Dx, float[] DGamma, float[] DBeta) GlnReference(
        float[] x, float[] dy, int[] group, float[]? gamma, float[]? beta, int n, int d, int groups, float eps)
    {
        var y = new float[n * d];
        var dx = new float[n * d];
        var mean = new float[n];
        var rstd = new float[n];
        var dg = new float[groups * d];
        var db = new float[groups * d];
        for (var t = 0; t < n; t++)
        {
            double s = 0, q = 0;
            for (var c = 0; c < d; c++)
                s += x[t * d + c];
            var mu = (float)(s / d);
            for (var c = 0; c < d; c++)
                q += (x[t * d + c] - mu) * (double)(x[t * d + c] - mu);
            var rs = 1f / MathF.Sqrt((float)(q / d) + eps);
            mean[t] = mu;
            rstd[t] = rs;
            double a = 0, b = 0;
            for (var c = 0; c < d; c++)
            {
                var i = t * d + c;
                var gi = group.Length > 0 ? group[t] * d + c : c;
                var xh = (x[i] - mu) * rs;
                var ga = gamma is null ? 1f : gamma[gi];
                y[i] = gamma is null ? xh : xh * ga + beta![gi];
                a += dy[i] * ga;
                b += dy[i] * ga * xh;
                if (gamma is not null)
                {
                    dg[gi] += dy[i] * xh;
                    db[gi] += dy[i];
                }
            }
            for (var c = 0; c < d; c++)
            {
                var i = t * d + c;
                var gi = group.Length > 0 ? group[t] * d + c : c;
                var xh = (x[i] - mu) * rs;
                var ga = gamma is null ? 1f : gamma[gi];
                dx[i] = rs * (dy[i] * ga - (float)(a / d) - xh * (float)(b / d));
            }
        }
        return (y, mean, rstd, dx, dg, db);
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void GroupLayerNormForwardAndBackward(string kind)
    {
        using var dev = Open(kind);
        var rng = new Random(4);
        const int groups = 5;
        const float eps = 1e-5f;
        foreach (var (n, d) in new[] { (0, 8), (1, 3), (29, 45), (6, 300) })
        {
            var x = RandomFloats(rng, n * d, -2, 2);
            var dy = RandomFloats(rng, n * d, -1, 1);
            var gamma = RandomFloats(rng, groups * d, 0.5f, 1.5f);
            var beta = RandomFloats(rng, groups * d, -0.5f, 0.5f);
            var group = Enumerable.Range(0, n).Select(_ => rng.Next(groups - 2)).ToArray(); // last two groups empty
            var r = GlnReference(x, dy, group, gamma, beta, n, d, groups, eps);
            ulong px = dev.Up(x), pdy = dev.Up(dy), pga = dev.Up(gamma), pbe = dev.Up(beta), pgr = dev.Up(group);
            ulong py = dev.Zeros<float>(n * d), pm = dev.Zeros<float>(n), prs = dev.Zeros<float>(n), pdx = dev.Zeros<float>(n * d);
            dev.Ops.GroupLayerNormForward(px, pgr, pga, pbe, py, pm, prs, n, d, groups, eps, dev.Stream);
            AssertClose(r.Y, dev.Down<float>(py, n * d), 1e-4f, 2e-5f, $"GLN y {n}x{d}");
            AssertClose(r.Mean, dev.Down<float>(pm, n), 1e-4f, 1e-6f, $"GLN mean {n}x{d}");
            AssertClose(r.Rstd, dev.Down<float>(prs, n), 1e-4f, 1e-5f, $"GLN rstd {n}x{d}");
            dev.Ops.GroupLayerNormBackwardInput(pdy, px, pgr, pga, pm, prs, pdx, n, d, groups, accumulate: false, dev.Stream);
            AssertClose(r.Dx, dev.Down<float>(pdx, n * d), 1e-3f, 1e-4f, $"GLN dx {n}x{d}");

            var order = Enumerable.Range(0, n).OrderBy(t => group[t]).ThenBy(t => t).ToArray();
            var offs = new int[groups + 1];
            for (var g = 0; g < groups; g++)
                offs[g + 1] = offs[g] + group.Count(v => v == g);
            ulong pord = dev.Up(order), poff = dev.Up(offs);
            ulong pdg = dev.Up(Enumerable.Repeat(1f, groups * d).ToArray()), pdb = dev.Up(Enumerable.Repeat(-1f, groups * d).ToArray());
            dev.Ops.GroupLayerNormBackwardParams(pdy, px, pord, poff, pm, prs, pdg, pdb, groups, d, accumulate: true, dev.Stream);
            AssertClose(r.DGamma.Select(v => v + 1f).ToArray(), dev.Down<float>(pdg, groups * d), 1e-4f, 1e-4f, $"GLN dgamma {n}x{d}");
            AssertClose(r.DBeta.Select(v => v - 1f).ToArray(), dev.Down<float>(pdb, groups * d), 1e-4f, 1e-4f, $"GLN dbeta {n}x{d}");

            // plain LayerNorm (no affine parameters): the LN(O) of the HSTU layer
            var p = GlnReference(x, dy, [], null, null, n, d, 1, eps);
            dev.Ops.GroupLayerNormForward(px, 0, 0, 0, py, pm, prs, n, d, 0, eps, dev.Stream);
            AssertClose(p.Y, dev.Down<float>(py, n * d), 1e-4f, 2e-5f, $"LN y {n}x{d}");
            dev.Ops.GroupLayerNormBackwardInput(pdy, px, 0, 0, pm, prs, pdx, n, d, 0, accumulate: false, dev.Stream);
            AssertClose(p.Dx, dev.Down<float>(pdx, n * d), 1e-3f, 1e-4f, $"LN dx {n}x{d}");
        }
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void BceStatsAccumulateOnDevice(string kind)
    {
        using var dev = Open(kind);
        var rng = new Random(5);
        var accum = dev.Up(new[] { 10f, 5f });
        var partials = dev.Zeros<float>(2 * CudaOps.BceMaxBlocks);
        var stats = dev.Zeros<float>(2);
        double totalLoss = 10, totalCount = 5;
        foreach (var n in new[] { 0, 1, 777, 70001 })
        {
            var x = RandomFloats(rng, n, -8, 8);
            var y = Enumerable.Range(0, n).Select(_ => (float)rng.Next(2)).ToArray();
            var m = Enumerable.Range(0, n).Select(_ => rng.Next(4) == 0 ? 0f : 1f).ToArray();
            ulong px = dev.Up(x), py = dev.Up(y), pm = dev.Up(m);
            dev.Ops.BceForward(px, py, pm, n, partials, stats, accum, dev.Stream);
            double loss = 0, count = 0;
            for (var i = 0; i < n; i++)
            {
                if (m[i] == 0)
                    continue;
                loss += Math.Max(x[i], 0) - x[i] * y[i] + Math.Log(1 + Math.Exp(-Math.Abs(x[i])));
                count++;
            }
            totalLoss += loss;
            totalCount += count;
            AssertClose([(float)loss, (float)count], dev.Down<float>(stats, 2), 1e-4f, 1e-4f, $"bce stats n={n}");
            AssertClose([(float)totalLoss, (float)totalCount], dev.Down<float>(accum, 2), 1e-4f, 1e-3f, $"bce accum n={n}");
        }
    }

    private static void AdamRef(ref float p, ref float m, ref float v, float g, float lr, float b1, float b2, float eps,
        float wd, float bc1, float bc2)
    {
        m = b1 * m + (1 - b1) * g;
        v = b2 * v + (1 - b2) * g * g;
        p *= 1 - lr * wd;
        p -= lr * (m / bc1) / (MathF.Sqrt(v / bc2) + eps);
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void AdamWMultiTensorOverSeveralSteps(string kind)
    {
        using var dev = Open(kind);
        var rng = new Random(6);
        const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f, scale = 0.5f;
        var sizes = new[] { 5, 0, 1, 1000, 0, 77 };
        var host = sizes.Select(s => new[]
        {
            RandomFloats(rng, s, -1, 1), RandomFloats(rng, s, -1, 1), new float[s], new float[s],
        }).ToArray();
        var dptr = host.Select(h => h.Select(a => dev.Up(a)).ToArray()).ToArray();
        var table = dptr.SelectMany(p => p).ToArray();
        var offsets = new long[sizes.Length + 1];
        for (var k = 0; k < sizes.Length; k++)
            offsets[k + 1] = offsets[k] + sizes[k];
        ulong ptab = dev.Up(table), poff = dev.Up(offsets), pscale = dev.Up(new[] { scale });
        for (var step = 1; step <= 3; step++)
        {
            dev.Ops.AdamWMulti(ptab, poff, sizes.Length, offsets[^1], lr, b1, b2, eps, wd, step, pscale, dev.Stream);
            float bc1 = CudaOps.BiasCorrection(b1, step), bc2 = CudaOps.BiasCorrection(b2, step);
            foreach (var h in host)
                for (var j = 0; j < h[0].Length; j++)
                    AdamRef(ref h[0][j], ref h[2][j], ref h[3][j], h[1][j] * scale, lr, b1, b2, eps, wd, bc1, bc2);
        }
        for (var k = 0; k < sizes.Length; k++)
        {
            AssertClose(host[k][0], dev.Down<float>(dptr[k][0], sizes[k]), 1e-5f, 1e-6f, $"adamw param {k}");
            AssertClose(host[k][2], dev.Down<float>(dptr[k][2], sizes[k]), 1e-5f, 1e-7f, $"adamw m {k}");
            AssertClose(host[k][3], dev.Down<float>(dptr[k][3], sizes[k]), 1e-5f, 1e-9f, $"adamw v {k}");
            AssertClose(host[k][1], dev.Down<float>(dptr[k][1], sizes[k]), 0, 0, $"adamw grad untouched {k}");
        }
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void ParameterGradientsAreBitwiseDeterministic(string kind)
    {
        using var dev = Open(kind);
        var rng = new Random(8);
        const int n = 97, d = 70, groups = 3;
        var x = RandomFloats(rng, n * d, -2, 2);
        var dy = RandomFloats(rng, n * d, -1, 1);
        var group = Enumerable.Range(0, n).Select(_ => rng.Next(groups)).ToArray();
        var order = Enumerable.Range(0, n).OrderBy(t => group[t]).ThenBy(t => t).ToArray();
        var offs = new int[groups + 1];
        for (var g = 0; g < groups; g++)
            offs[g + 1] = offs[g] + group.Count(v => v == g);
        var gamma = RandomFloats(rng, groups * d, 0.5f, 1.5f);
        ulong px = dev.Up(x), pdy = dev.Up(dy), pgr = dev.Up(group), pord = dev.Up(order), poff = dev.Up(offs);
        ulong pga = dev.Up(gamma), pbe = dev.Zeros<float>(groups * d), py = dev.Zeros<float>(n * d);
        ulong pm = dev.Zeros<float>(n), prs = dev.Zeros<float>(n);
        dev.Ops.GroupLayerNormForward(px, pgr, pga, pbe, py, pm, prs, n, d, groups, 1e-5f, dev.Stream);
        float[]? first = null;
        for (var rep = 0; rep < 3; rep++)
        {
            ulong pdg = dev.Zeros<float>(groups * d), pdb = dev.Zeros<float>(groups * d);
            dev.Ops.GroupLayerNormBackwardParams(pdy, px, pord, poff, pm, prs, pdg, pdb, groups, d, false, dev.Stream);
            dev.Ops.BiasGrad(pdy, pdb, n, d, accumulate: true, dev.Stream);
            var got = dev.Down<float>(pdg, groups * d).Concat(dev.Down<float>(pdb, groups * d)).ToArray();
            if (first is null)
                first = got;
            else
                Assert.Equal(first, got);
        }
    }
}
