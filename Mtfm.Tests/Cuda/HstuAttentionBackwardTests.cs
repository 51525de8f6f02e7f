using Mtfm.Engine.Backends.Cuda;
using static Mtfm.Tests.Cuda.CudaTestDevice;

namespace Mtfm.Tests.Cuda;

/// <summary>
/// Backward of the fused HSTU attention against an analytic reference; the reference itself is checked against central
/// finite differences of a double-precision forward.
/// </summary>
public sealed class HstuAttentionBackwardTests
{
    private sealed record Problem(int[] Offsets, int[] Kinds, long[] Times, int[] QueryTokens, int H, int G, int Dqk,
        int Dv, int Nb, long Unit, double Alpha);

    private static bool Visible(Problem p, int q, int k) => p.Kinds[k] switch
    {
        0 => true,
        1 => k == q || p.Times[k] < p.Times[q],
        _ => k == q,
    };

    private static int Instance(Problem p, int token)
    {
        var b = 0;
        while (p.Offsets[b + 1] <= token)
            b++;
        return b;
    }

    private static double[] Forward(Problem p, double[] q, double[] k, double[] v, double[] rab)
    {
        var o = new double[p.QueryTokens.Length * p.H * p.Dv];
        var nb2 = 2 * p.Nb - 1;
        for (var r = 0; r < p.QueryTokens.Length; r++)
        {
            var qt = p.QueryTokens[r];
            var b = Instance(p, qt);
            var n = Enumerable.Range(p.Offsets[b], p.Offsets[b + 1] - p.Offsets[b]).Count(kt => Visible(p, qt, kt));
            for (var hd = 0; hd < p.H; hd++)
            {
                var kv = hd / (p.H / p.G);
                for (var kt = p.Offsets[b]; kt < p.Offsets[b + 1]; kt++)
                {
                    if (!Visible(p, qt, kt))
                        continue;
                    double dot = 0;
                    for (var c = 0; c < p.Dqk; c++)
                        dot += q[(r * p.H + hd) * p.Dqk + c] * k[(kt * p.G + kv) * p.Dqk + c];
                    var s = p.Alpha * dot + rab[hd * nb2 + AttentionTestBatch.Bucket(p.Times[qt] - p.Times[kt], p.Nb, p.Unit)];
                    var a = s / (1 + Math.Exp(-s)) / n;
                    for (var c = 0; c < p.Dv; c++)
                        o[(r * p.H + hd) * p.Dv + c] += a * v[(kt * p.G + kv) * p.Dv + c];
                }
            }
        }
        return o;
    }

    private static (double[] Dq, double[] Dk, double[] Dv, double[] Drab) Backward(Problem p, double[] q, double[] k,
        double[] v, double[] rab, double[] dout)
    {
        var nb2 = 2 * p.Nb - 1;
        double[] dq = new double[q.Length], dk = new double[k.Length], dv = new double[v.Length], drab = new double[rab.Length];
        for (var r = 0; r < p.QueryTokens.Length; r++)
        {
            var qt = p.QueryTokens[r];
            var b = Instance(p, qt);
            var n = Enumerable.Range(p.Offsets[b], p.Offsets[b + 1] - p.Offsets[b]).Count(kt => Visible(p, qt, kt));
            for (var hd = 0; hd < p.H; hd++)
            {
                var kv = hd / (p.H / p.G);
                for (var kt = p.Offsets[b]; kt < p.Offsets[b + 1]; kt++)
                {
                    if (!Visible(p, qt, kt))
                        continue;
                    double dot = 0, da = 0;
                    for (var c = 0; c < p.Dqk; c++)
                        dot += q[(r * p.H + hd) * p.Dqk + c] * k[(kt * p.G + kv) * p.Dqk + c];
                    for (var c = 0; c < p.Dv; c++)
                        da += dout[(r * p.H + hd) * p.Dv + c] * v[(kt * p.G + kv) * p.Dv + c];
                    var bu = AttentionTestBatch.Bucket(p.Times[qt] - p.Times[kt], p.Nb, p.Unit);
                    var s = p.Alpha * dot + rab[hd * nb2 + bu];
                    var sg = 1 / (1 + Math.Exp(-s));
                    var a = s * sg / n;
                    var ds = da / n * sg * (1 + s * (1 - sg));
                    for (var c = 0; c < p.Dv; c++)
                        dv[(kt * p.G + kv) * p.Dv + c] += a * dout[(r * p.H + hd) * p.Dv + c];
                    for (var c = 0; c < p.Dqk; c++)
                    {
                        dq[(r * p.H + hd) * p.Dqk + c] += p.Alpha * ds * k[(kt * p.G + kv) * p.Dqk + c];
                        dk[(kt * p.G + kv) * p.Dqk + c] += p.Alpha * ds * q[(r * p.H + hd) * p.Dqk + c];
                    }
                    drab[hd * nb2 + bu] += ds;
                }
            }
        }
        return (dq, dk, dv, drab);
    }

    private static Problem MakeProblem(Random rng, bool targetOnly, int h, int g, int dqk, int dv,
        (int H, int R, int T)[] counts)
    {
        var offsets = new List<int> { 0 };
        var kinds = new List<int>();
        var times = new List<long>();
        foreach (var (nh, nr, nt) in counts)
        {
            foreach (var (kind, n, lo, hi) in new[] { (0, nh, 1000L, 9000L), (1, nr, 10_000L, 10_030L), (2, nt, 10_000L, 10_030L) })
                foreach (var t in Enumerable.Range(0, n).Select(_ => rng.NextInt64(lo, hi)).Order())
                {
                    kinds.Add(kind);
                    times.Add(t);
                }
            offsets.Add(kinds.Count);
        }
        var queries = Enumerable.Range(0, kinds.Count).Where(t => !targetOnly || kinds[t] == 2).ToArray();
        return new Problem([.. offsets], [.. kinds], [.. times], queries, h, g, dqk, dv, 6, 3, 1 / Math.Sqrt(dqk));
    }

    private static double[] Rand(Random rng, int n, double scale) =>
        Enumerable.Range(0, n).Select(_ => (rng.NextDouble() * 2 - 1) * scale).ToArray();

    [Fact]
    public void ReferenceGradientsMatchFiniteDifferences()
    {
        var rng = new Random(31);
        var p = MakeProblem(rng, false, 2, 1, 3, 2, [(2, 2, 2), (1, 0, 1)]);
        var tokens = p.Kinds.Length;
        var nb2 = 2 * p.Nb - 1;
        var q = Rand(rng, p.QueryTokens.Length * p.H * p.Dqk, 1);
        var k = Rand(rng, tokens * p.G * p.Dqk, 1);
        var v = Rand(rng, tokens * p.G * p.Dv, 1);
        var rab = Rand(rng, p.H * nb2, 0.5);
        var dout = Rand(rng, p.QueryTokens.Length * p.H * p.Dv, 1);
        var (dq, dk, dv, drab) = Backward(p, q, k, v, rab, dout);
        double Loss() => Forward(p, q, k, v, rab).Select((o, i) => o * dout[i]).Sum();
        foreach (var (x, grad, name) in new[] { (q, dq, "q"), (k, dk, "k"), (v, dv, "v"), (rab, drab, "rab") })
            for (var i = 0; i < x.Length; i++)
            {
                const double eps = 1e-6;
                var keep = x[i];
                x[i] = keep + eps;
                var up = Loss();
                x[i] = keep - eps;
                var down = Loss();
                x[i] = keep;
                var numeric = (up - down) / (2 * eps);
                Assert.True(Math.Abs(numeric - grad[i]) < 1e-6 + 1e-5 * Math.Abs(numeric),
                    $"d{name}[{i}]: analytic {grad[i]}, numeric {numeric}");
            }
    }

    [Theory]
    [InlineData(Emulated, false, 3, 1, 16, 16)]
    [InlineData(Emulated, true, 3, 1, 16, 16)]
    [InlineData(Emulated, false, 4, 2, 9, 7)]
    [InlineData(Emulated, true, 4, 4, 100, 70)]
    [InlineData(Gpu, false, 3, 1, 16, 16)]
    [InlineData(Gpu, true, 3, 1, 16, 16)]
    [InlineData(Gpu, false, 4, 2, 9, 7)]
    [InlineData(Gpu, true, 4, 4, 100, 70)]
    public void KernelsMatchTheReference(string kind, bool targetOnly, int h, int g, int dqk, int dv)
    {
        using var dev = Open(kind);
        var rng = new Random(32 + dqk + h);
        var p = MakeProblem(rng, targetOnly, h, g, dqk, dv, [(5, 7, 9), (0, 0, 0), (40, 3, 37), (1, 0, 1), (0, 6, 2), (3, 2, 0)]);
        var tokens = p.Kinds.Length;
        var nq = p.QueryTokens.Length;
        var nb2 = 2 * p.Nb - 1;
        var q = Rand(rng, nq * h * dqk, 1);
        var k = Rand(rng, tokens * g * dqk, 1);
        var v = Rand(rng, tokens * g * dv, 1);
        var rab = Rand(rng, h * nb2, 0.5);
        var dout = Rand(rng, nq * h * dv, 1);
        static float[] F(double[] x) => x.Select(d => (float)d).ToArray();
        // the reference runs on the float-rounded inputs
        double[] D(float[] x) => x.Select(f => (double)f).ToArray();
        var (fq, fk, fv, frab, fdo) = (F(q), F(k), F(v), F(rab), F(dout));
        var (wq, wk, wv, wrab) = Backward(p, D(fq), D(fk), D(fv), D(frab), D(fdo));
        var tile = CudaOps.HstuAttentionBackwardTileSize(dqk, dv);
        var plan = HstuAttentionPlan.Build(p.Offsets, targetOnly ? p.QueryTokens : null, tile);
        ulong pq = dev.Up(fq), pk = dev.Up(fk), pv = dev.Up(fv), prab = dev.Up(frab), pdo = dev.Up(fdo),
            pkinds = dev.Up(p.Kinds), ptimes = dev.Up(p.Times), pqt = dev.Up(p.QueryTokens),
            ptiles = dev.Up(plan.Tiles), pktiles = dev.Up(plan.KeyTiles),
            gq = dev.Up(Enumerable.Repeat(-9f, fq.Length).ToArray()), gk = dev.Up(Enumerable.Repeat(-9f, fk.Length).ToArray()),
            gv = dev.Up(Enumerable.Repeat(-9f, fv.Length).ToArray()), grab = dev.Up(Enumerable.Repeat(0.5f, frab.Length).ToArray()),
            counts = dev.Zeros<float>(nq), parts = dev.Zeros<float>(Math.Max(1, plan.NumTiles) * h * nb2);
        dev.Ops.HstuAttentionBackward(pq, pk, pv, prab, pkinds, ptimes, targetOnly ? pqt : 0, ptiles, pktiles, plan, pdo,
            gq, gk, gv, grab, accumulateRab: true, counts, parts, h, g, dqk, dv, p.Nb, p.Unit, (float)p.Alpha, dev.Stream);
        AssertClose(F(wq), dev.Down<float>(gq, fq.Length), 1e-3f, 2e-5f, "dq");
        AssertClose(F(wk), dev.Down<float>(gk, fk.Length), 1e-3f, 2e-5f, "dk");
        AssertClose(F(wv), dev.Down<float>(gv, fv.Length), 1e-3f, 2e-5f, "dv");
        AssertClose(wrab.Select(x => (float)x + 0.5f).ToArray(), dev.Down<float>(grab, frab.Length), 1e-3f, 2e-5f, "drab");

        // bitwise deterministic on a second run
        var first = dev.Down<float>(gk, fk.Length).Concat(dev.Down<float>(gq, fq.Length)).ToArray();
        dev.Ops.HstuAttentionBackward(pq, pk, pv, prab, pkinds, ptimes, targetOnly ? pqt : 0, ptiles, pktiles, plan, pdo,
            gq, gk, gv, grab, accumulateRab: false, counts, parts, h, g, dqk, dv, p.Nb, p.Unit, (float)p.Alpha, dev.Stream);
        Assert.Equal(first, dev.Down<float>(gk, fk.Length).Concat(dev.Down<float>(gq, fq.Length)).ToArray());
        AssertClose(F(wrab), dev.Down<float>(grab, frab.Length), 1e-3f, 2e-5f, "drab (overwrite)");
    }

    [Fact]
    public void KeyTilesCoverEveryTokenOnceWithTheirInstancesQueries()
    {
        var plan = HstuAttentionPlan.Build([0, 3, 3, 10], [2, 8, 9], 4);
        Assert.Equal(new[] { 0, 3, 0, 1, 3, 7, 1, 3, 7, 10, 1, 3 }, plan.KeyTiles);
        var full = HstuAttentionPlan.Build([0, 2, 2], null, 4);
        Assert.Equal(new[] { 0, 2, 0, 2 }, full.KeyTiles);
    }
}
