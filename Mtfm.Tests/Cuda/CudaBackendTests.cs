using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Native;
using Mtfm.Engine.Tensors;
using static Mtfm.Tests.Cuda.CudaTestDevice;

namespace Mtfm.Tests.Cuda;

/// <summary>
/// Every <see cref="IBackend"/> op of <see cref="CudaBackend"/> (emulated device; a real GPU when present) against
/// <see cref="CpuBackend"/>(1) on the same random inputs at odd sizes (never tile multiples), forward and backward,
/// with gradient outputs pre-filled so that "backward accumulates" is checked too. Tolerances: ops with one rounding
/// per element and the same order (add, mul, scale, copies, gathers, the scatter-add, which sums in the CPU's order)
/// must match exactly; transcendental ops (SiLU, softmax, BCE: the host libm vs TensorPrimitives' vectorised
/// approximations, ≤ a few ulp) use rtol 1e-5; reductions and GEMMs sum in a different order than the CPU's blocked
/// partition, so they get rtol 1e-5 plus an absolute term scaled by the magnitude summed (n·ε·Σ|terms|).
/// </summary>
public sealed class CudaBackendTests
{
    private sealed class Pair : IDisposable
    {
        public required CpuBackend Cpu;
        public required CudaBackend Gpu;

        public (Tensor C, Tensor G) Both(float[] data, params int[] shape) => (Cpu.FromHost<float>(data, shape), Gpu.FromHost<float>(data, shape));

        public (Tensor C, Tensor G) BothI(int[] data, params int[] shape) => (Cpu.FromHost<int>(data, shape), Gpu.FromHost<int>(data, shape));

        public (Tensor C, Tensor G) BothL(long[] data, params int[] shape) => (Cpu.FromHost<long>(data, shape), Gpu.FromHost<long>(data, shape));

        public (Tensor C, Tensor G) Random(Random rng, float lo, float hi, params int[] shape)
        {
            long n = 1;
            foreach (var d in shape) n *= d;
            return Both(RandomFloats(rng, (int)n, lo, hi), shape);
        }

        public void Same((Tensor C, Tensor G) t, float rtol, float atol, string what) =>
            AssertClose(Cpu.ToHost<float>(t.C), Gpu.ToHost<float>(t.G), rtol, atol, what);

        public void Exact((Tensor C, Tensor G) t, string what) => Assert.Equal(Cpu.ToHost<float>(t.C), Gpu.ToHost<float>(t.G));

        public void Dispose()
        {
            Gpu.Dispose();
            Cpu.Dispose();
        }
    }

    private static Pair Open(string kind) => new() { Gpu = OpenBackend(kind), Cpu = new CpuBackend(1) }; // GPU first: it may skip

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void ElementwiseOpsMatchTheCpu(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(1);
        int r = 17, c = 59;
        var a = p.Random(rng, -3, 3, r, c);
        var b = p.Random(rng, -3, 3, r, c);
        var y = p.Random(rng, -1, 1, r, c);

        p.Cpu.Add(a.C, b.C, y.C); p.Gpu.Add(a.G, b.G, y.G); p.Exact(y, "Add");
        p.Cpu.Mul(a.C, b.C, y.C); p.Gpu.Mul(a.G, b.G, y.G); p.Exact(y, "Mul");
        p.Cpu.MulAccumulate(a.C, b.C, y.C); p.Gpu.MulAccumulate(a.G, b.G, y.G); p.Same(y, 1e-6f, 1e-6f, "MulAccumulate");
        p.Cpu.Scale(a.C, -0.37f, y.C); p.Gpu.Scale(a.G, -0.37f, y.G); p.Exact(y, "Scale");
        p.Cpu.Axpy(0.61f, a.C, y.C); p.Gpu.Axpy(0.61f, a.G, y.G); p.Same(y, 1e-6f, 1e-6f, "Axpy");
        var bias = p.Random(rng, -1, 1, c);
        p.Cpu.AddBias(a.C, bias.C, y.C); p.Gpu.AddBias(a.G, bias.G, y.G); p.Exact(y, "AddBias");
        p.Cpu.Silu(a.C, y.C); p.Gpu.Silu(a.G, y.G); p.Same(y, 1e-5f, 1e-6f, "Silu");
        var dx = p.Random(rng, -1, 1, r, c);
        p.Cpu.SiluBackward(a.C, b.C, dx.C); p.Gpu.SiluBackward(a.G, b.G, dx.G); p.Same(dx, 1e-5f, 1e-5f, "SiluBackward (accumulating)");
        var s = p.Both([0.75f], 1);
        p.Cpu.AddScalar(s.C, -2f, dx.C); p.Gpu.AddScalar(s.G, -2f, dx.G); p.Same(dx, 1e-6f, 1e-6f, "AddScalar");
        p.Cpu.Fill(y.C, 2.5f); p.Gpu.Fill(y.G, 2.5f); p.Exact(y, "Fill");
        var sub = (y.C.Rows(3, 5), y.G.Rows(3, 5)); // views at an offset
        p.Cpu.Fill(sub.Item1, -1f); p.Gpu.Fill(sub.Item2, -1f); p.Exact(y, "Fill of a row view");
        Assert.Throws<ArgumentException>("y", () => p.Gpu.Silu(a.G, a.G));
        Assert.Throws<ArgumentException>("b", () => p.Gpu.Add(a.G, bias.G, y.G));
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void ReductionsMatchTheCpu(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(2);
        foreach (var (r, c) in new[] { (37, 45), (300, 7), (1, 1) })
        {
            var x = p.Random(rng, -1, 1, r, c);
            var tot = p.Both([0f], 1);
            p.Cpu.SumAll(x.C, 0.5f, tot.C); p.Gpu.SumAll(x.G, 0.5f, tot.G);
            p.Same(tot, 1e-5f, 1e-6f * r * c, $"SumAll [{r},{c}]");
            var rows = p.Random(rng, -1, 1, r);
            p.Cpu.SumLastAxis(x.C, 1.5f, rows.C); p.Gpu.SumLastAxis(x.G, 1.5f, rows.G);
            p.Same(rows, 1e-5f, 1e-6f * c, $"SumLastAxis [{r},{c}]");
            var dx = p.Random(rng, -1, 1, r, c);
            p.Cpu.SumLastAxisBackward(rows.C, -0.5f, dx.C); p.Gpu.SumLastAxisBackward(rows.G, -0.5f, dx.G);
            p.Same(dx, 1e-6f, 1e-6f, $"SumLastAxisBackward [{r},{c}]");
            var cols = p.Random(rng, -1, 1, c);
            p.Cpu.SumRows(x.C, cols.C, accumulate: true); p.Gpu.SumRows(x.G, cols.G, accumulate: true);
            p.Same(cols, 1e-5f, 1e-6f * r, $"SumRows accumulate [{r},{c}]");
            p.Cpu.SumRows(x.C, cols.C, accumulate: false); p.Gpu.SumRows(x.G, cols.G, accumulate: false);
            p.Same(cols, 1e-5f, 1e-6f * r, $"SumRows [{r},{c}]");
        }
        var empty = p.Both([], 0);
        var z = p.Both([7f], 1);
        p.Cpu.SumAll(empty.C, 1f, z.C); p.Gpu.SumAll(empty.G, 1f, z.G);
        p.Exact(z, "SumAll of nothing");
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void GemmsMatchTheCpuInEveryTransposition(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(3);
        int m = 37, n = 29, k = 43;
        foreach (var ta in new[] { false, true })
            foreach (var tb in new[] { false, true })
            {
                var a = ta ? p.Random(rng, -1, 1, k, m) : p.Random(rng, -1, 1, m, k);
                var b = tb ? p.Random(rng, -1, 1, n, k) : p.Random(rng, -1, 1, k, n);
                var c = p.Random(rng, -1, 1, m, n);
                p.Cpu.Gemm(ta, tb, 0.7f, a.C, b.C, 0.3f, c.C); p.Gpu.Gemm(ta, tb, 0.7f, a.G, b.G, 0.3f, c.G);
                p.Same(c, 1e-5f, 1e-6f * k, $"Gemm transA={ta} transB={tb}");
                int bt = 3, bm = 5, bn = 17, bk = 19;
                var ba = ta ? p.Random(rng, -1, 1, bt, bk, bm) : p.Random(rng, -1, 1, bt, bm, bk);
                var bb = tb ? p.Random(rng, -1, 1, bt, bn, bk) : p.Random(rng, -1, 1, bt, bk, bn);
                var bc = p.Random(rng, -1, 1, bt, bm, bn);
                p.Cpu.BatchedGemm(ta, tb, 1f, ba.C, bb.C, 1f, bc.C); p.Gpu.BatchedGemm(ta, tb, 1f, ba.G, bb.G, 1f, bc.G);
                p.Same(bc, 1e-5f, 1e-6f * bk, $"BatchedGemm transA={ta} transB={tb}");
            }
        // beta = 0 overwrites: NaN garbage in C must not leak into the product.
        var x = p.Random(rng, -1, 1, 3, 4);
        var w = p.Random(rng, -1, 1, 4, 5);
        var o = p.Gpu.FromHost<float>(Enumerable.Repeat(float.NaN, 15).ToArray(), 3, 5);
        p.Gpu.Gemm(false, false, 1f, x.G, w.G, 0f, o);
        Assert.All(p.Gpu.ToHost<float>(o), v => Assert.True(float.IsFinite(v)));
        Assert.Throws<ArgumentException>("b", () => p.Gpu.Gemm(false, false, 1f, x.G, x.G, 0f, o));
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void LayerNormsMatchTheCpuForwardAndBackward(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(4);
        int r = 45, d = 37, groups = 3;
        var ids = Enumerable.Range(0, r).Select(_ => rng.Next(groups)).ToArray();
        foreach (var mode in new[] { "plain", "affine", "group32", "group64" })
        {
            var x = p.Random(rng, -2, 2, r, d);
            int g = mode.StartsWith("group") ? groups : 1;
            (Tensor C, Tensor G)? gamma = mode == "plain" ? null : p.Random(rng, 0.5f, 1.5f, g, d);
            (Tensor C, Tensor G)? beta = mode == "plain" ? null : p.Random(rng, -0.5f, 0.5f, g, d);
            (Tensor C, Tensor G)? gid = mode switch
            {
                "group32" => p.BothI(ids, r),
                "group64" => p.BothL(ids.Select(i => (long)i).ToArray(), r),
                _ => null,
            };
            var y = p.Random(rng, 0, 1, r, d);
            var mean = p.Random(rng, 0, 1, r);
            var rstd = p.Random(rng, 0, 1, r);
            p.Cpu.LayerNorm(x.C, gamma?.C, beta?.C, gid?.C, 1e-5f, y.C, mean.C, rstd.C);
            p.Gpu.LayerNorm(x.G, gamma?.G, beta?.G, gid?.G, 1e-5f, y.G, mean.G, rstd.G);
            p.Same(y, 1e-4f, 1e-5f, $"LayerNorm {mode} y");
            p.Same(mean, 1e-5f, 1e-6f, $"LayerNorm {mode} mean");
            p.Same(rstd, 1e-5f, 1e-6f, $"LayerNorm {mode} rstd");
            var dy = p.Random(rng, -1, 1, r, d);
            var dx = p.Random(rng, -1, 1, r, d);
            (Tensor C, Tensor G)? dg = gamma is null ? null : p.Random(rng, -1, 1, g, d);
            (Tensor C, Tensor G)? db = gamma is null ? null : p.Random(rng, -1, 1, g, d);
            p.Cpu.LayerNormBackward(x.C, mean.C, rstd.C, gamma?.C, gid?.C, dy.C, dx.C, dg?.C, db?.C);
            p.Gpu.LayerNormBackward(x.G, mean.G, rstd.G, gamma?.G, gid?.G, dy.G, dx.G, dg?.G, db?.G);
            p.Same(dx, 1e-4f, 1e-5f, $"LayerNorm {mode} dx");
            if (dg is { } dgv) p.Same(dgv, 1e-4f, 1e-5f * r, $"LayerNorm {mode} dgamma");
            if (db is { } dbv) p.Same(dbv, 1e-4f, 1e-5f * r, $"LayerNorm {mode} dbeta");
            if (gamma is { } gm)
            {
                // dbeta only (dgamma null) still accumulates correctly
                p.Cpu.LayerNormBackward(x.C, mean.C, rstd.C, gm.C, gid?.C, dy.C, null, null, db!.Value.C);
                p.Gpu.LayerNormBackward(x.G, mean.G, rstd.G, gm.G, gid?.G, dy.G, null, null, db!.Value.G);
                p.Same(db!.Value, 1e-4f, 1e-5f * r, $"LayerNorm {mode} dbeta alone");
            }
        }
        var bad = p.BothI(Enumerable.Repeat(0, r).Select((_, i) => i == 7 ? 5 : 0).ToArray(), r);
        var gx = p.Random(rng, -1, 1, r, d);
        var gg = p.Random(rng, -1, 1, groups, d);
        var e = Assert.Throws<ArgumentOutOfRangeException>("groupIds", () => p.Gpu.LayerNorm(gx.G, gg.G, gg.G, bad.G, 1e-5f, gx.G, gx.G.Reshape(-1).Rows(0, r), gx.G.Reshape(-1).Rows(0, r)));
        Assert.Contains("groupIds[7] = 5", e.Message);
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void SoftmaxAndBceMatchTheCpu(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(5);
        foreach (var (r, c) in new[] { (23, 37), (5, 70), (9, 3) })
        {
            var x = p.Random(rng, -5, 5, r, c);
            var y = p.Random(rng, 0, 1, r, c);
            p.Cpu.Softmax(x.C, y.C); p.Gpu.Softmax(x.G, y.G);
            p.Same(y, 1e-5f, 1e-7f, $"Softmax [{r},{c}]");
            var dy = p.Random(rng, -1, 1, r, c);
            var dx = p.Random(rng, -1, 1, r, c);
            p.Cpu.SoftmaxBackward(y.C, dy.C, dx.C); p.Gpu.SoftmaxBackward(y.G, dy.G, dx.G);
            p.Same(dx, 1e-5f, 1e-6f, $"SoftmaxBackward [{r},{c}]");
        }
        foreach (var (n, maskP) in new[] { (1001, 0.6), (37, 0.0), (300, 1.0) })
        {
            var z = p.Random(rng, -6, 6, n);
            var labels = p.Both(Enumerable.Range(0, n).Select(_ => (float)rng.Next(2)).ToArray(), n);
            var mask = p.Both(Enumerable.Range(0, n).Select(_ => rng.NextDouble() < maskP ? 1f : 0f).ToArray(), n);
            var loss = p.Both([3f], 1);
            p.Cpu.BceWithLogits(z.C, labels.C, mask.C, loss.C); p.Gpu.BceWithLogits(z.G, labels.G, mask.G, loss.G);
            p.Same(loss, 1e-5f, 1e-6f, $"BceWithLogits n={n} mask p={maskP}");
            var dloss = p.Both([1.7f], 1);
            var dz = p.Random(rng, -1, 1, n);
            p.Cpu.BceWithLogitsBackward(z.C, labels.C, mask.C, dloss.C, dz.C); p.Gpu.BceWithLogitsBackward(z.G, labels.G, mask.G, dloss.G, dz.G);
            p.Same(dz, 1e-5f, 1e-6f, $"BceWithLogitsBackward n={n} mask p={maskP}");
        }
    }

    /// <summary>
    /// ScatterAddRows groups its sources on the host by a counting sort when the target has few rows for the ids (the
    /// test above) and by a comparison sort when it has many (a wide table): both must give the CPU's sums bitwise.
    /// </summary>
    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void ScatterAddRowsIntoAWideTableMatchesTheCpu(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(61);
        int n = 20_000, d = 3, m = 57; // n > 4·m + 4096: the sorting path
        var idx = Enumerable.Range(0, m).Select(i => i % 5 == 0 ? 7 : rng.Next(n)).ToArray(); // 7 repeats
        foreach (var wide in new[] { false, true })
        {
            var index = wide ? p.BothL(idx.Select(i => (long)i).ToArray(), m) : p.BothI(idx, m);
            var g = p.Random(rng, -1, 1, m, d);
            var acc = p.Random(rng, -1, 1, n, d);
            p.Cpu.ScatterAddRows(g.C, index.C, acc.C); p.Gpu.ScatterAddRows(g.G, index.G, acc.G); p.Exact(acc, $"ScatterAddRows (wide table) int64={wide}");
        }
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void RowAndColumnOpsMatchTheCpu(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(6);
        int n = 31, d = 13, m = 47;
        var src = p.Random(rng, -1, 1, n, d);
        var idx = Enumerable.Range(0, m).Select(_ => rng.Next(n)).ToArray();
        foreach (var wide in new[] { false, true })
        {
            var index = wide ? p.BothL(idx.Select(i => (long)i).ToArray(), m) : p.BothI(idx, m);
            var g = p.Random(rng, -1, 1, m, d);
            p.Cpu.GatherRows(src.C, index.C, g.C); p.Gpu.GatherRows(src.G, index.G, g.G); p.Exact(g, $"GatherRows int64={wide}");
            var acc = p.Random(rng, -1, 1, n, d);
            p.Cpu.ScatterAddRows(g.C, index.C, acc.C); p.Gpu.ScatterAddRows(g.G, index.G, acc.G); p.Exact(acc, $"ScatterAddRows int64={wide}");
            p.Cpu.FillRows(acc.C, index.C, -3f); p.Gpu.FillRows(acc.G, index.G, -3f); p.Exact(acc, $"FillRows int64={wide}");
            var (uc, ic) = p.Cpu.UniqueIndices(index.C);
            var (ug, ig) = p.Gpu.UniqueIndices(index.G);
            Assert.Equal(p.Cpu.ToHost<int>(uc), p.Gpu.ToHost<int>(ug));
            Assert.Equal(p.Cpu.ToHost<int>(ic), p.Gpu.ToHost<int>(ig));
            var perm = Enumerable.Range(0, n).OrderBy(_ => rng.Next()).Take(11).ToArray();
            var distinct = wide ? p.BothL(perm.Select(i => (long)i).ToArray(), 11) : p.BothI(perm, 11);
            var rowsSrc = p.Random(rng, -1, 1, 11, d);
            p.Cpu.ScatterRows(rowsSrc.C, distinct.C, acc.C); p.Gpu.ScatterRows(rowsSrc.G, distinct.G, acc.G); p.Exact(acc, $"ScatterRows int64={wide}");
            var rep = p.Gpu.FromHost<int>([4, 4], 2);
            var e = Assert.Throws<ArgumentException>("ids", () => p.Gpu.ScatterRows(g.G.Rows(0, 2), rep, acc.G, "ids"));
            Assert.Contains("repeats", e.Message);
        }
        // gather through a row view of the index (an offset into the storage) and of the source
        var big = p.BothI(idx, m);
        var gv = p.Random(rng, -1, 1, 10, d);
        Assert.Throws<ArgumentOutOfRangeException>("ids", () => p.Gpu.GatherRows(src.G.Rows(2, 5), big.G.Rows(30, 10), gv.G, "ids"));
        var ok = p.BothI(idx.Select(i => i % 20).ToArray(), m);
        p.Cpu.GatherRows(src.C.Rows(2, 20), ok.C.Rows(30, 10), gv.C); p.Gpu.GatherRows(src.G.Rows(2, 20), ok.G.Rows(30, 10), gv.G);
        p.Exact(gv, "GatherRows through views");
        var bad = p.BothI([0, 3, n + 4], 3);
        var ob = p.Random(rng, 0, 1, 3, d);
        var ec = Assert.Throws<ArgumentOutOfRangeException>("ids", () => p.Cpu.GatherRows(src.C, bad.C, ob.C, "ids"));
        var eg = Assert.Throws<ArgumentOutOfRangeException>("ids", () => p.Gpu.GatherRows(src.G, bad.G, ob.G, "ids"));
        Assert.Equal(ec.Message, eg.Message);

        // CopyColumns (concat / split), overwrite and accumulate
        var a = p.Random(rng, -1, 1, 19, 11);
        var b = p.Random(rng, -1, 1, 19, 23);
        foreach (var accumulate in new[] { false, true })
        {
            p.Cpu.CopyColumns(a.C, 2, b.C, 9, 7, accumulate); p.Gpu.CopyColumns(a.G, 2, b.G, 9, 7, accumulate);
            p.Exact(b, $"CopyColumns accumulate={accumulate}");
        }
        Assert.Throws<ArgumentOutOfRangeException>("dstCol", () => p.Gpu.CopyColumns(a.G, 0, b.G, 20, 7, false));

        // Copy: fp32, Int32 ⇄ Int64 (with the range check), and the mirror follows the copies
        var f2 = p.Random(rng, 0, 1, 19, 11);
        p.Cpu.Copy(a.C, f2.C); p.Gpu.Copy(a.G, f2.G); p.Exact(f2, "Copy fp32");
        var i64 = p.Gpu.Allocate(DType.Int64, [m]);
        p.Gpu.Copy(big.G, i64);
        Assert.Equal(idx.Select(i => (long)i).ToArray(), p.Gpu.ToHost<long>(i64));
        var i32 = p.Gpu.Allocate(DType.Int32, [m]);
        p.Gpu.Copy(i64, i32);
        Assert.Equal(idx, p.Gpu.ToHost<int>(i32));
        var g2 = p.Gpu.Allocate(DType.Float32, [m, d]);
        p.Gpu.GatherRows(src.G, i32, g2); // validated from the mirror written by Copy
        var huge = p.Gpu.FromHost<long>([1L, 1L << 40], 2);
        var e2 = Assert.Throws<ArgumentOutOfRangeException>("src", () => p.Gpu.Copy(huge, p.Gpu.Allocate(DType.Int32, [2])));
        Assert.Contains("src[1]", e2.Message);
    }

    private static AttentionLayout Layout(Random rng, (int H, int R, int T)[] spec, int nb = 8)
    {
        var offsets = new List<int> { 0 };
        var kind = new List<byte>();
        var time = new List<long>();
        foreach (var (h, r, t) in spec)
        {
            for (int i = 0; i < h; i++) { kind.Add(0); time.Add(1000 + rng.Next(0, 500)); }
            long tt = 2000;
            for (int i = 0; i < r; i++) { kind.Add(1); tt += rng.Next(0, 3) == 0 ? 0 : rng.Next(1, 300); time.Add(tt); }
            var tt2 = Enumerable.Range(0, t).Select(_ => 2000L + rng.Next(0, 600)).Order().ToArray(); // T tokens time-ordered
            foreach (var x in tt2) { kind.Add(2); time.Add(x); }
            offsets.Add(kind.Count);
        }
        return new AttentionLayout([.. offsets], [.. kind], [.. time], nb, 7);
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void JaggedHstuAttentionMatchesTheCpuForwardAndBackward(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(7);
        int h = 4, g = 2, dqk = 5, dv = 3;
        using var layout = Layout(rng, [(3, 5, 2), (0, 1, 1), (6, 0, 3), (2, 9, 0), (1, 3, 4)]);
        int n = layout.TokenCount;
        foreach (var target in new[] { false, true })
        {
            int rows = target ? layout.TargetTokens.Length : n;
            var q = p.Random(rng, -1, 1, rows, h * dqk);
            var k = p.Random(rng, -1, 1, n, g * dqk);
            var v = p.Random(rng, -1, 1, n, g * dv);
            var rab = p.Random(rng, -0.5f, 0.5f, h, layout.RabWidth);
            var o = p.Random(rng, 0, 1, rows, h * dv);
            p.Cpu.HstuAttention(layout, target, h, g, q.C, k.C, v.C, rab.C, o.C);
            p.Gpu.HstuAttention(layout, target, h, g, q.G, k.G, v.G, rab.G, o.G);
            p.Same(o, 1e-4f, 1e-5f, $"HstuAttention target={target} o");
            var dO = p.Random(rng, -1, 1, rows, h * dv);
            var dq = p.Random(rng, -1, 1, rows, h * dqk);
            var dk = p.Random(rng, -1, 1, n, g * dqk);
            var dvv = p.Random(rng, -1, 1, n, g * dv);
            var drab = p.Random(rng, -1, 1, h, layout.RabWidth);
            p.Cpu.HstuAttentionBackward(layout, target, h, g, q.C, k.C, v.C, rab.C, dO.C, dq.C, dk.C, dvv.C, drab.C);
            p.Gpu.HstuAttentionBackward(layout, target, h, g, q.G, k.G, v.G, rab.G, dO.G, dq.G, dk.G, dvv.G, drab.G);
            p.Same(dq, 1e-4f, 1e-5f, $"HstuAttentionBackward target={target} dq");
            p.Same(dk, 1e-4f, 1e-5f, $"HstuAttentionBackward target={target} dk");
            p.Same(dvv, 1e-4f, 1e-5f, $"HstuAttentionBackward target={target} dv");
            p.Same(drab, 1e-4f, 1e-4f, $"HstuAttentionBackward target={target} drab");
            // null outputs are allowed; what is given still accumulates
            p.Cpu.HstuAttentionBackward(layout, target, h, g, q.C, k.C, v.C, rab.C, dO.C, null, dk.C, null, null);
            p.Gpu.HstuAttentionBackward(layout, target, h, g, q.G, k.G, v.G, rab.G, dO.G, null, dk.G, null, null);
            p.Same(dk, 1e-4f, 1e-5f, $"HstuAttentionBackward target={target} dk only");
        }
        Assert.IsType<CudaAttentionLayoutCache>(layout.DeviceCache);
    }

    /// <summary>
    /// Every bucket count MtfmConfig.TimeBuckets allows: NB = 33 and 128 (2·NB − 1 = 65 and 255 bucket sums per
    /// tile, the latter more than the backward's 128 threads per block). Times spread over ~10⁶ s at unit 1 s and H
    /// queries seeing later H keys (dt &lt; 0) put pairs into buckets up to NB − 1 + 20.
    /// </summary>
    [Theory]
    [InlineData(Emulated, 33)]
    [InlineData(Emulated, 128)]
    [InlineData(Gpu, 128)]
    public void HstuAttentionBackwardMatchesTheCpuForEveryBucketCount(string kind, int nb)
    {
        using var p = Open(kind);
        var rng = new Random(nb);
        int h = 2, g = 1, dqk = 4, dv = 3;
        var offsets = new List<int> { 0 };
        var kinds = new List<byte>();
        var time = new List<long>();
        foreach (var (nh, nr, nt) in new[] { (20, 6, 3), (0, 2, 1), (35, 0, 2) })
        {
            foreach (var t in Enumerable.Range(0, nh).Select(_ => 1_000_000L - rng.Next(0, 999_000)).Order()) { kinds.Add(0); time.Add(t); }
            long tt = 1_000_000;
            for (int i = 0; i < nr; i++) { kinds.Add(1); tt += rng.Next(0, 50); time.Add(tt); }
            foreach (var t in Enumerable.Range(0, nt).Select(_ => tt + rng.Next(0, 50)).Order()) { kinds.Add(2); time.Add(t); }
            offsets.Add(kinds.Count);
        }
        using var layout = new AttentionLayout([.. offsets], [.. kinds], [.. time], nb, 1);
        int n = layout.TokenCount;
        foreach (var target in new[] { false, true })
        {
            int rows = target ? layout.TargetTokens.Length : n;
            var q = p.Random(rng, -1, 1, rows, h * dqk);
            var k = p.Random(rng, -1, 1, n, g * dqk);
            var v = p.Random(rng, -1, 1, n, g * dv);
            var rab = p.Random(rng, -0.5f, 0.5f, h, layout.RabWidth);
            var dO = p.Random(rng, -1, 1, rows, h * dv);
            var dq = p.Random(rng, -1, 1, rows, h * dqk);
            var dk = p.Random(rng, -1, 1, n, g * dqk);
            var dvv = p.Random(rng, -1, 1, n, g * dv);
            var drab = p.Random(rng, 0, 0, h, layout.RabWidth);
            p.Cpu.HstuAttentionBackward(layout, target, h, g, q.C, k.C, v.C, rab.C, dO.C, dq.C, dk.C, dvv.C, drab.C);
            p.Gpu.HstuAttentionBackward(layout, target, h, g, q.G, k.G, v.G, rab.G, dO.G, dq.G, dk.G, dvv.G, drab.G);
            p.Same(dq, 1e-4f, 1e-5f, $"NB={nb} target={target} dq");
            p.Same(dk, 1e-4f, 1e-5f, $"NB={nb} target={target} dk");
            p.Same(dvv, 1e-4f, 1e-5f, $"NB={nb} target={target} dv");
            p.Same(drab, 1e-4f, 1e-5f, $"NB={nb} target={target} drab");
            var cpuDrab = p.Cpu.ToHost<float>(drab.C);
            // H queries see later H keys (dt < 0): buckets NB − 1 + m are reached, for NB = 128 beyond the 128 threads
            int high = Math.Min(nb, 128);
            if (!target) Assert.Contains(Enumerable.Range(high, layout.RabWidth - high), b => cpuDrab[b] != 0f);
        }
    }

    /// <summary>
    /// Times at the ends of the 64-bit range: |dt| reaches 2^64 − 1, where a signed difference overflows. The kernels form
    /// |dt| in unsigned arithmetic like the CPU, so forward, backward and the rab gradient's buckets match it (with
    /// NB = 128 the saturating bucket 1 + 64 and its dt &lt; 0 twin are reached; with a signed difference they were not).
    /// </summary>
    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void AttentionTimeBucketsAreExactAtTheEndsOfTheTimeRange(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(64);
        int h = 2, g = 1, dqk = 4, dv = 3, nb = 128;
        // one instance: H at the minimum time and just above it, R/T at the maximum (dt ≥ 2^63 between them)
        byte[] kinds = [0, 0, 0, 1, 1, 2, 2];
        long[] time = [long.MinValue, long.MinValue + 1, 0, long.MaxValue - 1, long.MaxValue - 1, long.MaxValue, long.MaxValue];
        using var layout = new AttentionLayout([0, kinds.Length], kinds, time, nb, 1);
        int n = layout.TokenCount;
        foreach (var target in new[] { false, true })
        {
            int rows = target ? layout.TargetTokens.Length : n;
            var q = p.Random(rng, -1, 1, rows, h * dqk);
            var k = p.Random(rng, -1, 1, n, g * dqk);
            var v = p.Random(rng, -1, 1, n, g * dv);
            var rab = p.Random(rng, -0.5f, 0.5f, h, layout.RabWidth);
            var o = p.Random(rng, 0, 0, rows, h * dv);
            p.Cpu.HstuAttention(layout, target, h, g, q.C, k.C, v.C, rab.C, o.C);
            p.Gpu.HstuAttention(layout, target, h, g, q.G, k.G, v.G, rab.G, o.G);
            p.Same(o, 1e-4f, 1e-5f, $"extreme times target={target} o");
            var dO = p.Random(rng, -1, 1, rows, h * dv);
            var dq = p.Random(rng, 0, 0, rows, h * dqk);
            var dk = p.Random(rng, 0, 0, n, g * dqk);
            var dvv = p.Random(rng, 0, 0, n, g * dv);
            var drab = p.Random(rng, 0, 0, h, layout.RabWidth);
            p.Cpu.HstuAttentionBackward(layout, target, h, g, q.C, k.C, v.C, rab.C, dO.C, dq.C, dk.C, dvv.C, drab.C);
            p.Gpu.HstuAttentionBackward(layout, target, h, g, q.G, k.G, v.G, rab.G, dO.G, dq.G, dk.G, dvv.G, drab.G);
            p.Same(dq, 1e-4f, 1e-5f, $"extreme times target={target} dq");
            p.Same(dk, 1e-4f, 1e-5f, $"extreme times target={target} dk");
            p.Same(drab, 1e-4f, 1e-5f, $"extreme times target={target} drab");
            var cpuDrab = p.Cpu.ToHost<float>(drab.C);
            Assert.NotEqual(0f, cpuDrab[1 + 64]); // T/R queries at 2^63 − 1 seeing H keys at −2^63: |dt| = 2^64 − 1
            if (!target) Assert.NotEqual(0f, cpuDrab[nb - 1 + 64]); // H at −2^63 seeing the H key at 0: |dt| = 2^63, dt < 0
        }
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void AttentionLayoutCachesAreBoundedAndReturnTheirMemory(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(9);
        long rentedBefore = p.Gpu.Pool.RentedBytes;
        var layouts = new List<AttentionLayout>();
        for (int i = 0; i < CudaBackend.MaxLayoutCaches + 4; i++)
        {
            var layout = Layout(rng, [(2, 3, 1), (1, 2, 2)]);
            layouts.Add(layout);
            int n = layout.TokenCount;
            using var q = p.Gpu.FromHost<float>(RandomFloats(rng, n * 4, -1, 1), n, 4);
            using var rab = p.Gpu.FromHost<float>(new float[2 * layout.RabWidth], 2, layout.RabWidth);
            using var o = p.Gpu.Allocate(DType.Float32, [n, 4]);
            p.Gpu.HstuAttention(layout, false, 2, 2, q, q, q, rab, o);
        }
        Assert.Equal(CudaBackend.MaxLayoutCaches, p.Gpu.LayoutCacheCount);
        Assert.Null(layouts[0].DeviceCache);  // evicted (and detached): a later use rebuilds it
        Assert.NotNull(layouts[^1].DeviceCache);
        foreach (var l in layouts) l.Dispose();
        Assert.Equal(0, p.Gpu.LayoutCacheCount);
        Assert.Equal(rentedBefore, p.Gpu.Pool.RentedBytes);
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void NoOpSynchronisesExceptDownloadAndMemoryReturns(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(8);
        long live = p.Gpu.LiveAllocations, bytes = p.Gpu.LiveBytes;
        long syncs = p.Gpu.Driver.SynchronizationCount;
        using (var scope = new TensorScope(p.Gpu))
        {
            var x = scope.Adopt(p.Gpu.FromHost<float>(RandomFloats(rng, 60, -1, 1), 12, 5));
            var ids = scope.Adopt(p.Gpu.FromHost<int>([3, 1, 3, 0, 11], 5));
            var y = scope.Adopt(p.Gpu.Allocate(DType.Float32, [5, 5]));
            p.Gpu.GatherRows(x, ids, y);
            p.Gpu.ScatterAddRows(y, ids, x);
            var (u, inv) = p.Gpu.UniqueIndices(ids);
            scope.Adopt(u);
            scope.Adopt(inv);
            var s = scope.Adopt(p.Gpu.Allocate(DType.Float32, [1]));
            p.Gpu.SumAll(x, 1f, s);
            Assert.Equal(syncs, p.Gpu.Driver.SynchronizationCount);
            _ = p.Gpu.ToHost<float>(s);
            Assert.Equal(syncs + 1, p.Gpu.Driver.SynchronizationCount);
        }
        Assert.Equal(live, p.Gpu.LiveAllocations);
        Assert.Equal(bytes, p.Gpu.LiveBytes);
    }

    [Theory]
    [InlineData(Emulated, MtfmConfig.DefaultTimeBuckets)]
    [InlineData(Gpu, MtfmConfig.DefaultTimeBuckets)]
    [InlineData(Emulated, 128)] // the largest bucket count the config allows (255 rab entries per head)
    public void MtfmModelLossAndGradientsMatchTheCpu(string kind, int timeBuckets)
    {
        using var p = Open(kind);
        var ds = SyntheticGenerator.Generate(SyntheticConfig.Tiny);
        var st = ds.Store;
        var agg = UserLevelAggregator.Aggregate(st, part: SplitPart.Train);
        var stats = st.ComputeNumericStats(st.Layout.Schema.Split!.ValidStart);
        var batch = new BatchBuilder(agg, stats).Batches(maxTokens: 160, shuffleSeed: 3).First();
        var config = MtfmConfig.Tiny with { DModel = 16, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 8, TowerWidth = 8, EmbeddingDim = 8, TokenizerHidden = 16, TimeBuckets = timeBuckets };
        using var mc = new MtfmModel(p.Cpu, config, st.Layout, 11);
        using var mg = new MtfmModel(p.Gpu, config, st.Layout, 11);
        long syncs = p.Gpu.Driver.SynchronizationCount;
        using var tc = new Tape(p.Cpu);
        using var tg = new Tape(p.Gpu);
        var oc = mc.Forward(tc, batch);
        var og = mg.Forward(tg, batch);
        tc.Backward(oc.Loss);
        tg.Backward(og.Loss);
        Assert.Equal(syncs, p.Gpu.Driver.SynchronizationCount); // a whole forward + backward without a host sync
        float lc = p.Cpu.ToHost<float>(oc.Loss.Value)[0], lg = p.Gpu.ToHost<float>(og.Loss.Value)[0];
        Assert.True(float.IsFinite(lc) && lc > 0, $"cpu loss {lc}");
        Assert.True(Math.Abs(lc - lg) <= 1e-5f + 1e-4f * Math.Abs(lc), $"loss cpu {lc:R} vs cuda {lg:R}");
        int compared = 0;
        for (int i = 0; i < mc.Parameters.Count; i++)
        {
            var pc = mc.Parameters[i];
            var pg = mg.Parameters[i];
            Assert.Equal(pc.Name, pg.Name);
            Assert.Equal(pc.Grad is null, pg.Grad is null);
            if (pc.Grad is not null)
            {
                var gc = p.Cpu.ToHost<float>(pc.Grad);
                float scale = gc.Length == 0 ? 0 : gc.Max(Math.Abs);
                AssertClose(gc, p.Gpu.ToHost<float>(pg.Grad!), 1e-3f, 1e-4f * scale + 1e-7f, $"dense grad of {pc.Name}");
                compared++;
            }
            Assert.Equal(pc.SparseGradient is null, pg.SparseGradient is null);
            if (pc.SparseGradient is { } sc)
            {
                var sg = pg.SparseGradient!;
                Assert.Equal(p.Cpu.ToHost<int>(sc.Indices), p.Gpu.ToHost<int>(sg.Indices));
                var vc = p.Cpu.ToHost<float>(sc.Values);
                float scale = vc.Length == 0 ? 0 : vc.Max(Math.Abs);
                AssertClose(vc, p.Gpu.ToHost<float>(sg.Values), 1e-3f, 1e-4f * scale + 1e-7f, $"sparse grad of {pc.Name}");
                compared++;
            }
        }
        Assert.True(compared > 20, $"only {compared} gradients compared");

        // Bitwise repeatable on the device: a second model from the same seed gives the same loss and gradients.
        using var mg2 = new MtfmModel(p.Gpu, config, st.Layout, 11);
        using var tg2 = new Tape(p.Gpu);
        var og2 = mg2.Forward(tg2, batch);
        tg2.Backward(og2.Loss);
        Assert.Equal(lg, p.Gpu.ToHost<float>(og2.Loss.Value)[0]);
        for (int i = 0; i < mg.Parameters.Count; i++)
        {
            if (mg.Parameters[i].Grad is { } a) Assert.Equal(p.Gpu.ToHost<float>(a), p.Gpu.ToHost<float>(mg2.Parameters[i].Grad!));
            if (mg.Parameters[i].SparseGradient is { } sa) Assert.Equal(p.Gpu.ToHost<float>(sa.Values), p.Gpu.ToHost<float>(mg2.Parameters[i].SparseGradient!.Values));
        }
    }
}
