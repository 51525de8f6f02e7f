using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;
using static Mtfm.Tests.Core.TestTensors;

namespace Mtfm.Tests.Core;

/// <summary>Forward values against straightforward float64 host references.</summary>
public sealed class ForwardReferenceTests : IDisposable
{
    private readonly CpuBackend _be = new(threads: 2);
    private readonly Tape _tape;
    private readonly Random _rng = new(99);

    public ForwardReferenceTests() => _tape = new Tape(_be, gradEnabled: false);

    public void Dispose()
    {
        _tape.Dispose();
        _be.Dispose();
    }

    private (Variable V, float[] Host) Rand(params int[] shape)
    {
        int n = 1;
        foreach (var d in shape) n *= d;
        var h = Randn(_rng, n);
        return (_tape.Input(h, shape), h);
    }

    private static void Close(double[] expected, float[] actual, double tol = 1e-5)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol * (1 + Math.Abs(expected[i])), $"element {i}: expected {expected[i]}, got {actual[i]}");
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public void MatMulMatchesReference(bool ta, bool tb)
    {
        int m = 5, k = 13, n = 3;
        var (a, ha) = ta ? Rand(k, m) : Rand(m, k);
        var (b, hb) = tb ? Rand(n, k) : Rand(k, n);
        var c = Read(_tape.MatMul(a, b, ta, tb).Value);
        var e = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                for (int p = 0; p < k; p++)
                    e[i * n + j] += (double)(ta ? ha[p * m + i] : ha[i * k + p]) * (tb ? hb[j * k + p] : hb[p * n + j]);
        Close(e, c, 1e-5);
    }

    [Fact]
    public void GroupLayerNormMatchesReference()
    {
        int n = 9, d = 13, g = 3;
        var (x, hx) = Rand(n, d);
        var (gamma, hg) = Rand(g, d);
        var (beta, hb) = Rand(g, d);
        int[] groups = [2, 0, 1, 1, 0, 2, 2, 1, 0];
        var y = Read(_tape.GroupLayerNorm(x, gamma, beta, _tape.Ids(groups, [n])).Value);
        var e = new double[n * d];
        for (int i = 0; i < n; i++)
        {
            double mean = 0, var = 0;
            for (int j = 0; j < d; j++) mean += hx[i * d + j];
            mean /= d;
            for (int j = 0; j < d; j++) var += Math.Pow(hx[i * d + j] - mean, 2);
            var /= d;
            for (int j = 0; j < d; j++)
                e[i * d + j] = (hx[i * d + j] - mean) / Math.Sqrt(var + 1e-5) * hg[groups[i] * d + j] + hb[groups[i] * d + j];
        }
        Close(e, y, 1e-5);
    }

    [Fact]
    public void SoftmaxSiluAndBceMatchReference()
    {
        var (x, hx) = Rand(3, 7);
        var s = Read(_tape.Softmax(x).Value);
        var silu = Read(_tape.Silu(x).Value);
        var es = new double[21];
        var esilu = new double[21];
        for (int i = 0; i < 3; i++)
        {
            double max = double.MinValue, sum = 0;
            for (int j = 0; j < 7; j++) max = Math.Max(max, hx[i * 7 + j]);
            for (int j = 0; j < 7; j++) sum += Math.Exp(hx[i * 7 + j] - max);
            for (int j = 0; j < 7; j++) es[i * 7 + j] = Math.Exp(hx[i * 7 + j] - max) / sum;
        }
        for (int i = 0; i < 21; i++) esilu[i] = hx[i] / (1 + Math.Exp(-hx[i]));
        Close(es, s);
        Close(esilu, silu);

        // Stable BCE at extreme logits: no overflow, exact mean over present labels only.
        float[] z = [80f, -80f, 0.3f, 50f];
        float[] t = [0f, 1f, 1f, 1f];
        float[] m = [1f, 1f, 1f, 0f];
        var loss = Read(_tape.BceWithLogits(_tape.Input(z, [4]), _tape.Input(t, [4]).Value, _tape.Input(m, [4]).Value).Value)[0];
        double expected = (80 + 80 + Math.Log(1 + Math.Exp(-0.3))) / 3;
        Assert.Equal(expected, loss, 4);
        var none = Read(_tape.BceWithLogits(_tape.Input(z, [4]), _tape.Input(t, [4]).Value, _tape.Input([0, 0, 0, 0], [4]).Value).Value)[0];
        Assert.Equal(0f, none);
    }

    [Fact]
    public void ConcatSplitGatherScatterMoveTheRightNumbers()
    {
        var (a, ha) = Rand(2, 2);
        var (b, hb) = Rand(2, 3);
        var c = Read(_tape.Concat(a, b).Value);
        Assert.Equal(new[] { ha[0], ha[1], hb[0], hb[1], hb[2], ha[2], ha[3], hb[3], hb[4], hb[5] }, c);
        var parts = _tape.Split(_tape.Concat(a, b), 2, 3);
        Assert.Equal(ha, Read(parts[0].Value));
        Assert.Equal(hb, Read(parts[1].Value));

        var (x, hx) = Rand(4, 2);
        var g = Read(_tape.GatherRows(x, _tape.Ids([3, 0, 3], [3])).Value);
        Assert.Equal(new[] { hx[6], hx[7], hx[0], hx[1], hx[6], hx[7] }, g);
        var (src, hs) = Rand(2, 2);
        var sc = Read(_tape.ScatterRows(x, _tape.Ids([2, 0], [2]), src).Value);
        Assert.Equal(new[] { hs[2], hs[3], hx[2], hx[3], hs[0], hs[1], hx[6], hx[7] }, sc);
        Assert.Equal(hx, Read(x.Value)); // the input is untouched
    }

    [Fact]
    public void SumsMatchReference()
    {
        var (x, hx) = Rand(5, 13);
        Assert.Equal(hx.Sum(v => (double)v), Read(_tape.Sum(x).Value)[0], 4);
        Assert.Equal(hx.Average(v => (double)v), Read(_tape.Mean(x).Value)[0], 5);
        var rows = Read(_tape.SumLastAxis(x).Value);
        for (int i = 0; i < 5; i++) Assert.Equal(hx.Skip(i * 13).Take(13).Sum(v => (double)v), rows[i], 4);
        using var cols = _be.Allocate(DType.Float32, [13]);
        _be.SumRows(x.Value, cols, accumulate: false);
        var hc = Read(cols);
        for (int j = 0; j < 13; j++) Assert.Equal(Enumerable.Range(0, 5).Sum(i => (double)hx[i * 13 + j]), hc[j], 4);
    }
}
