using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;
using static Mtfm.Tests.Core.TestTensors;

namespace Mtfm.Tests.Core;

/// <summary>
/// <see cref="Tape.TryHandOffGrad"/> (issue 13): in a backward that frees activation gradients, the first gradient to
/// reach an activation is the output's gradient buffer itself instead of a copy; only then, and only when the shapes
/// agree and the target has no gradient yet. The ops that use it (Add, AddBias, LinearResidual on every row and on
/// listed rows, an input shared by two operands) give bit-identical gradients with and without it.
/// </summary>
public sealed class GradientHandOffTests : IDisposable
{
    private readonly CpuBackend _be = new(threads: 2);

    public void Dispose() => _be.Dispose();

    /// <summary>One recorded identity op y = x whose backward tries the hand-off; returns what it saw.</summary>
    private (bool Handed, bool SameBuffer, bool SourceCleared) HandOff(bool release, bool xHasGradFirst, bool reshape)
    {
        var rng = new Random(1);
        using var p = new Parameter("p", Tensor(_be, Randn(rng, 12), 4, 3));
        using var tape = new Tape(_be);
        var x = tape.Scale(p, 2f); // an activation that needs a gradient
        int[] shape = reshape ? [3, 4] : [4, 3];
        var y = tape.Output(tape.Allocate(shape));
        _be.Copy(x.Value, y.Value);
        (bool, bool, bool) seen = default;
        tape.Record([y], [x], () =>
        {
            if (xHasGradFirst) _ = tape.GradFor(x);
            var gy = y.Grad;
            bool handed = tape.TryHandOffGrad(y, x);
            seen = (handed, ReferenceEquals(x.Grad, gy), y.Grad is null);
            if (!handed && tape.GradFor(x) is { } dx) _be.Axpy(1f, gy!.Reshape(4, 3), dx);
        });
        tape.Backward(tape.Sum(y), releaseActivationGradients: release);
        Assert.Equal(Enumerable.Repeat(2f, 12), Read(p.Grad!)); // d(sum 2p)/dp, whichever way the gradient went
        return seen;
    }

    [Fact]
    public void TheFirstGradientTakesTheOutputsBufferOnlyWhenTheBackwardFreesGradients()
    {
        Assert.Equal((true, true, true), HandOff(release: true, xHasGradFirst: false, reshape: false));
        Assert.Equal((false, false, false), HandOff(release: false, xHasGradFirst: false, reshape: false));
        Assert.Equal((false, false, false), HandOff(release: true, xHasGradFirst: true, reshape: false));
        Assert.Equal((false, false, false), HandOff(release: true, xHasGradFirst: false, reshape: true));
    }

    [Fact]
    public void ParametersNeverTakeAnActivationsGradient()
    {
        using var p = new Parameter("p", Tensor(_be, Randn(new Random(2), 6), 2, 3));
        using var tape = new Tape(_be);
        var y = tape.Scale(p, 1f);
        bool? handed = null;
        var z = tape.Output(tape.Allocate([2, 3]));
        _be.Copy(y.Value, z.Value);
        tape.Record([z], [y], () =>
        {
            handed = tape.TryHandOffGrad(z, p); // p is a parameter: refused
            if (tape.GradFor(y) is { } dy) _be.Axpy(1f, z.Grad!, dy);
        });
        tape.Backward(tape.Sum(z), releaseActivationGradients: true);
        Assert.False(handed);
        Assert.Equal(Enumerable.Repeat(1f, 6), Read(p.Grad!));
    }

    [Fact]
    public void OpsThatHandOffGiveTheSameGradientsBitForBit()
    {
        var rng = new Random(5);
        float[] xs = Randn(rng, 24 * 16), w1 = Randn(rng, 16 * 16, 0.3), w2 = Randn(rng, 16 * 16, 0.3), bs = Randn(rng, 16), wy = Randn(rng, 24 * 16);
        int[] listed = [1, 4, 5, 9, 17, 23];
        (float[] Dw1, float[] Dw2, float[] Db, float[] Loss) Run(bool release)
        {
            using var w = new Parameter("w1", Tensor(_be, w1, 16, 16));
            using var v = new Parameter("w2", Tensor(_be, w2, 16, 16));
            using var b = new Parameter("b", Tensor(_be, bs, 16));
            using var rows = _be.Allocate(DType.Int32, [listed.Length]);
            _be.Upload<int>(listed, rows);
            using var tape = new Tape(_be);
            var x = tape.Input(xs, [24, 16]);
            var h = tape.Silu(tape.MatMul(x, w));                   // an activation that needs a gradient
            var s = tape.Add(h, h);                                 // one input on both sides
            var t = tape.Add(tape.AddBias(s, b), h);                // AddBias, then Add of two activations
            var r1 = tape.LinearResidual(t, h, v, b);               // every row
            var sel = tape.GatherRows(r1, rows);
            var r2 = tape.LinearResidual(r1, sel, v, b, rows);      // listed rows
            var r3 = tape.LinearResidual(r2, r2, v, b);             // x = a
            var loss = tape.Sum(tape.Mul(r3, tape.Input(wy, [24, 16])));
            tape.Backward(loss, releaseActivationGradients: release, releaseActivations: release);
            return (Read(w.Grad!), Read(v.Grad!), Read(b.Grad!), Read(loss.Value));
        }
        var kept = Run(false);
        var handed = Run(true);
        Assert.Equal(kept.Loss, handed.Loss);
        Assert.Equal(kept.Dw1, handed.Dw1);
        Assert.Equal(kept.Dw2, handed.Dw2);
        Assert.Equal(kept.Db, handed.Db);
        Assert.Contains(kept.Dw1, g => g != 0f);
    }
}
