using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;
using static Mtfm.Tests.Core.TestTensors;

namespace Mtfm.Tests.Core;

/// <summary>
/// The step's memory-saving forms (issue 13): the one-op <c>Linear</c> with bias and <c>SiluSplit</c> give bit-identical
/// values and gradients to the op chains they replace, and a backward with <c>releaseActivations</c> frees the
/// activations while giving the same parameter gradients.
/// </summary>
public sealed class StepMemoryOpsTests : IDisposable
{
    private readonly CpuBackend _be = new(threads: 2);

    public void Dispose() => _be.Dispose();

    [Fact]
    public void LinearWithBiasIsBitIdenticalToMatMulThenAddBias()
    {
        var rng = new Random(3);
        float[] xs = Randn(rng, 37 * 19), ws = Randn(rng, 19 * 23), bs = Randn(rng, 23), wy = Randn(rng, 37 * 23);
        (float[] Y, float[] Dx, float[] Dw, float[] Db) Run(bool fused)
        {
            using var x = new Parameter("x", Tensor(_be, xs, 37, 19));
            using var w = new Parameter("w", Tensor(_be, ws, 19, 23));
            using var b = new Parameter("b", Tensor(_be, bs, 23));
            using var tape = new Tape(_be);
            var y = fused ? tape.Linear(x, w, b) : tape.AddBias(tape.MatMul(x, w), b);
            var yv = Read(y.Value);
            tape.Backward(tape.Sum(tape.Mul(y, tape.Input(wy, [37, 23]))));
            return (yv, Read(x.Grad!), Read(w.Grad!), Read(b.Grad!));
        }
        var f = Run(true);
        var r = Run(false);
        Assert.Equal(r.Y, f.Y);
        Assert.Equal(r.Dx, f.Dx);
        Assert.Equal(r.Dw, f.Dw);
        Assert.Equal(r.Db, f.Db);
        Assert.Contains(f.Db, v => v != 0f);
    }

    [Fact]
    public void SiluSplitIsBitIdenticalToSplitOfSilu()
    {
        var rng = new Random(5);
        float[] xs = Randn(rng, 41 * 24), w0 = Randn(rng, 41 * 8), w1 = Randn(rng, 41 * 16);
        (float[] P0, float[] P1, float[] Dx) Run(bool fused)
        {
            using var x = new Parameter("x", Tensor(_be, xs, 41, 24));
            using var tape = new Tape(_be);
            var parts = fused ? tape.SiluSplit(x, 8, 16) : tape.Split(tape.Silu(x), 8, 16);
            var p0 = Read(parts[0].Value);
            var p1 = Read(parts[1].Value);
            var loss = tape.Add(tape.Sum(tape.Mul(parts[0], tape.Input(w0, [41, 8]))), tape.Sum(tape.Mul(parts[1], tape.Input(w1, [41, 16]))));
            tape.Backward(loss);
            return (p0, p1, Read(x.Grad!));
        }
        var f = Run(true);
        var r = Run(false);
        Assert.Equal(r.P0, f.P0);
        Assert.Equal(r.P1, f.P1);
        Assert.Equal(r.Dx, f.Dx);
        Assert.Throws<ArgumentException>(() =>
        {
            using var tape = new Tape(_be);
            using var x = new Parameter("x", Tensor(_be, xs, 41, 24));
            tape.SiluSplit(x, 8, 8);
        });
    }

    [Fact]
    public void ReleasingActivationsFreesThemAndKeepsGradientsAndTheLoss()
    {
        var rng = new Random(7);
        float[] xs = Randn(rng, 64 * 32), w1 = Randn(rng, 32 * 48, 0.2), w2 = Randn(rng, 24 * 32, 0.2);
        (float[] G1, float[] G2, float Loss, long LiveAfter) Run(bool release)
        {
            using var w = new Parameter("w1", Tensor(_be, w1, 32, 48));
            using var b = new Parameter("b1", Tensor(_be, new float[48], 48));
            using var v = new Parameter("w2", Tensor(_be, w2, 24, 32));
            using var tape = new Tape(_be);
            var x = tape.Input(xs, [64, 32]);
            var parts = tape.SiluSplit(tape.Linear(x, w, b), 24, 24);
            var y = tape.Mul(tape.LayerNorm(tape.MatMul(parts[0], v), null, null), tape.MatMul(parts[1], v));
            var loss = tape.Sum(y);
            long before = _be.LiveBytes;
            tape.Backward(loss, releaseActivationGradients: release, releaseActivations: release);
            var l = Read(loss.Value)[0]; // the loss itself stays readable
            return (Read(w.Grad!), Read(v.Grad!), l, _be.LiveBytes - before);
        }
        var kept = Run(false);
        var freed = Run(true);
        Assert.Equal(kept.G1, freed.G1);
        Assert.Equal(kept.G2, freed.G2);
        Assert.Equal(kept.Loss, freed.Loss);
        // Without release the backward adds every activation gradient; with it, activations and gradients are freed:
        // at least the five [64, ·] op outputs (Linear, two parts, two MatMuls, LN, Mul) are gone.
        Assert.True(freed.LiveAfter < 0, $"live bytes changed by {freed.LiveAfter} with release");
        Assert.True(kept.LiveAfter > 0, $"live bytes changed by {kept.LiveAfter} without release");
    }
}
