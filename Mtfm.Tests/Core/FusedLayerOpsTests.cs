using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;
using static Mtfm.Tests.Core.TestTensors;

namespace Mtfm.Tests.Core;

/// <summary>
/// The HSTU layer's fused ops that keep fewer activations (issue 13 item 4): <c>GroupNormLinear</c> (GLN output
/// recomputed in backward), <c>LayerNormMul</c> (LN(O) recomputed) and <c>LinearResidual</c> (projection and updated
/// rows not kept) give values and gradients bit-identical to the op chains they replace, with the inputs themselves op
/// outputs (so the first-gradient "write" paths run) and used by other ops too (so accumulation order matters).
/// </summary>
public sealed class FusedLayerOpsTests : IDisposable
{
    private readonly CpuBackend _be = new(threads: 2);

    public void Dispose() => _be.Dispose();

    /// <summary>Draws distinct row indices in [0, n).</summary>
    private static int[] Rows(Random rng, int n, int m) => Enumerable.Range(0, n).OrderBy(_ => rng.Next()).Take(m).ToArray();

    [Theory]
    [InlineData(true, true)]
    [InlineData(true, false)]
    [InlineData(false, false)]
    public void GroupNormLinearIsBitIdenticalToGlnThenLinears(bool second, bool secondOnRows)
    {
        const int n = 29, d = 12, groups = 3, o0 = 10, o1 = 14;
        var rng = new Random(11);
        float[] xs = Randn(rng, n * d, 3), gs = Randn(rng, groups * d), bs = Randn(rng, groups * d), w0 = Randn(rng, d * o0), b0 = Randn(rng, o0),
            w1 = Randn(rng, d * o1), b1 = Randn(rng, o1), other = Randn(rng, n * d);
        int[] gid = Enumerable.Range(0, n).Select(_ => rng.Next(groups)).ToArray();
        int[] rows = Rows(rng, n, 9);
        int m1 = secondOnRows ? rows.Length : n;
        float[] r0 = Randn(rng, n * o0), r1 = Randn(rng, m1 * o1);
        List<float[]> Run(bool fused)
        {
            using var xp = new Parameter("x", Tensor(_be, xs, n, d));
            using var gamma = new Parameter("g", Tensor(_be, gs, groups, d));
            using var beta = new Parameter("b", Tensor(_be, bs, groups, d));
            using var wa = new Parameter("w0", Tensor(_be, w0, d, o0));
            using var ba = new Parameter("b0", Tensor(_be, b0, o0));
            using var wb = new Parameter("w1", Tensor(_be, w1, d, o1));
            using var bb = new Parameter("b1", Tensor(_be, b1, o1));
            using var groupIds = Ints(_be, gid, n);
            using var rowIds = Ints(_be, rows, rows.Length);
            using var tape = new Tape(_be);
            var x = tape.Mul(xp, tape.Input(Enumerable.Repeat(1f, n * d).ToArray(), [n, d])); // an op output
            var loss = tape.Sum(tape.Mul(x, tape.Input(other, [n, d]))); // x has another consumer, recorded first
            Variable[] ys;
            var rowsOrAll = secondOnRows ? rowIds : null;
            if (fused)
            {
                ys = second
                    ? tape.GroupNormLinear(x, gamma, beta, groupIds, new NormProjection(wa, ba), new NormProjection(wb, bb, rowsOrAll))
                    : tape.GroupNormLinear(x, gamma, beta, groupIds, new NormProjection(wa, ba));
            }
            else
            {
                var xn = tape.GroupLayerNorm(x, gamma, beta, groupIds);
                var y0 = tape.Linear(xn, wa, ba);
                ys = second ? [y0, tape.Linear(rowsOrAll is null ? xn : tape.GatherRows(xn, rowsOrAll), wb, bb)] : [y0];
            }
            loss = tape.Add(loss, tape.Sum(tape.Mul(ys[0], tape.Input(r0, [n, o0]))));
            if (second) loss = tape.Add(loss, tape.Sum(tape.Mul(ys[1], tape.Input(r1, [m1, o1]))));
            var result = ys.Select(y => Read(y.Value)).ToList();
            tape.Backward(loss);
            result.AddRange([Read(xp.Grad!), Read(gamma.Grad!), Read(beta.Grad!), Read(wa.Grad!), Read(ba.Grad!)]);
            if (second) result.AddRange([Read(wb.Grad!), Read(bb.Grad!)]);
            return result;
        }
        var f = Run(true);
        var r = Run(false);
        Assert.Equal(r.Count, f.Count);
        for (int i = 0; i < r.Count; i++) Assert.Equal(r[i], f[i]);
        Assert.Contains(f[^1], v => v != 0f);
    }

    [Fact]
    public void LayerNormMulIsBitIdenticalToLayerNormThenMul()
    {
        const int n = 23, w = 16;
        var rng = new Random(13);
        float[] os = Randn(rng, n * w, 2), us = Randn(rng, n * w), r = Randn(rng, n * w), other = Randn(rng, n * w);
        List<float[]> Run(bool fused)
        {
            using var op = new Parameter("o", Tensor(_be, os, n, w));
            using var up = new Parameter("u", Tensor(_be, us, n, w));
            using var tape = new Tape(_be);
            var ones = tape.Input(Enumerable.Repeat(1f, n * w).ToArray(), [n, w]);
            var o = tape.Mul(op, ones);
            var u = tape.Mul(up, ones);
            var loss = tape.Sum(tape.Mul(u, tape.Input(other, [n, w]))); // u has another consumer, recorded first
            var z = fused ? tape.LayerNormMul(o, u) : tape.Mul(tape.LayerNorm(o, null, null), u);
            var zv = Read(z.Value);
            tape.Backward(tape.Add(loss, tape.Sum(tape.Mul(z, tape.Input(r, [n, w])))));
            return [zv, Read(op.Grad!), Read(up.Grad!)];
        }
        var f = Run(true);
        var e = Run(false);
        for (int i = 0; i < e.Count; i++) Assert.Equal(e[i], f[i]);
    }

    /// <summary>
    /// <paramref name="otherFirst"/>: x's other consumer is recorded before the residual (the residual's backward is then the
    /// first gradient to reach x and writes it in place) or after it (x's gradient exists already and is added to).
    /// </summary>
    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(true, false)]
    public void LinearResidualIsBitIdenticalToLinearThenAddOrRowUpdate(bool onRows, bool otherFirst)
    {
        const int n = 31, k = 7, width = 10;
        var rng = new Random(17);
        int[] rows = Rows(rng, n, 8);
        int m = onRows ? rows.Length : n;
        float[] xs = Randn(rng, n * width), a = Randn(rng, m * k), ws = Randn(rng, k * width), bs = Randn(rng, width), r = Randn(rng, n * width),
            other = Randn(rng, n * width);
        List<float[]> Run(bool fused)
        {
            using var xp = new Parameter("x", Tensor(_be, xs, n, width));
            using var ap = new Parameter("a", Tensor(_be, a, m, k));
            using var w = new Parameter("w", Tensor(_be, ws, k, width));
            using var b = new Parameter("b", Tensor(_be, bs, width));
            using var rowIds = Ints(_be, rows, rows.Length);
            using var tape = new Tape(_be);
            var x = tape.Mul(xp, tape.Input(Enumerable.Repeat(1f, n * width).ToArray(), [n, width]));
            var av = tape.Mul(ap, tape.Input(Enumerable.Repeat(1f, m * k).ToArray(), [m, k]));
            Variable? loss = otherFirst ? tape.Sum(tape.Mul(x, tape.Input(other, [n, width]))) : null; // x's other consumer
            Variable output;
            if (fused) output = tape.LinearResidual(x, av, w, b, onRows ? rowIds : null);
            else
            {
                var y = tape.Linear(av, w, b);
                output = onRows ? tape.ScatterRows(x, rowIds, tape.Add(tape.GatherRows(x, rowIds), y)) : tape.Add(x, y);
            }
            var ov = Read(output.Value);
            loss ??= tape.Sum(tape.Mul(x, tape.Input(other, [n, width])));
            tape.Backward(tape.Add(loss, tape.Sum(tape.Mul(output, tape.Input(r, [n, width])))));
            return [ov, Read(xp.Grad!), Read(ap.Grad!), Read(w.Grad!), Read(b.Grad!)];
        }
        var f = Run(true);
        var e = Run(false);
        for (int i = 0; i < e.Count; i++) Assert.Equal(e[i], f[i]);
        using var tape2 = new Tape(_be);
        using var x2 = new Parameter("x", Tensor(_be, xs, n, width));
        using var a2 = new Parameter("a", Tensor(_be, a, m, k));
        using var w2 = new Parameter("w", Tensor(_be, ws, k, width));
        using var b2 = new Parameter("b", Tensor(_be, bs, width));
        using var wrongRows = Ints(_be, rows, rows.Length);
        Assert.Throws<ArgumentException>(() => tape2.LinearResidual(x2, a2, w2, b2, onRows ? null : wrongRows)); // one row of a per updated row
    }

    [Theory]
    [InlineData(false, 2, 1)]
    [InlineData(true, 4, 2)]
    public void HstuGatedAttentionIsBitIdenticalToSiluSplitsAttentionAndLayerNormMul(bool targetLayer, int h, int g)
    {
        const int dqk = 3, dv = 2;
        var tb = Mtfm.Tests.Attention.HstuTestBatch.Make(7, [(3, 2, 2), (0, 1, 1), (2, 0, 3)], h, g, dqk, dv, targetLayer);
        using var layout = new Engine.Backends.AttentionLayout(tb.Offsets, tb.Kind, tb.Time);
        int nq = targetLayer ? layout.TargetTokens.Length : layout.TokenCount, n = layout.TokenCount;
        int uqw = h * (dv + dqk), kvw = g * (dqk + dv);
        var rng = new Random(19);
        float[] uqs = Randn(rng, nq * uqw), kvs = Randn(rng, n * kvw), rabs = Randn(rng, h * layout.RabWidth, 0.3), r = Randn(rng, nq * h * dv);
        List<float[]> Run(bool fused)
        {
            using var uqp = new Parameter("uq", Tensor(_be, uqs, nq, uqw));
            using var kvp = new Parameter("kv", Tensor(_be, kvs, n, kvw));
            using var rab = new Parameter("rab", Tensor(_be, rabs, h, layout.RabWidth));
            using var tape = new Tape(_be);
            var uq = tape.Mul(uqp, tape.Input(Enumerable.Repeat(1f, nq * uqw).ToArray(), [nq, uqw]));
            var kv = tape.Mul(kvp, tape.Input(Enumerable.Repeat(1f, n * kvw).ToArray(), [n, kvw]));
            Variable z;
            if (fused) z = tape.HstuGatedAttention(layout, targetLayer, h, g, dqk, dv, uq, kv, rab);
            else
            {
                var kvParts = tape.SiluSplit(kv, g * dqk, g * dv);
                var uqParts = tape.SiluSplit(uq, h * dv, h * dqk);
                var o = tape.HstuAttention(layout, targetLayer, h, g, uqParts[1], kvParts[0], kvParts[1], rab);
                z = tape.LayerNormMul(o, uqParts[0]);
            }
            var zv = Read(z.Value);
            tape.Backward(tape.Sum(tape.Mul(z, tape.Input(r, [nq, h * dv]))));
            return [zv, Read(uqp.Grad!), Read(kvp.Grad!), Read(rab.Grad!)];
        }
        var f = Run(true);
        var e = Run(false);
        for (int i = 0; i < e.Count; i++) Assert.Equal(e[i], f[i]);
        Assert.Contains(f[3], v => v != 0f);
    }
}
