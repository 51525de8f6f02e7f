using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;

namespace Mtfm.Tests.Core;

/// <summary>The checker itself: it must fail on a wrong backward, and custom ops recorded with Tape.Record work.</summary>
public sealed class GradCheckTests : IDisposable
{
    private readonly CpuBackend _be = new(threads: 2);
    private readonly TensorScope _scope;
    private readonly Random _rng = new(7);

    public GradCheckTests() => _scope = new TensorScope(_be);

    public void Dispose()
    {
        _scope.Dispose();
        _be.Dispose();
    }

    /// <summary>y = SiLU(x) as a custom op whose backward is scaled by <paramref name="factor"/> (1 = correct).</summary>
    private static Variable CustomSilu(Tape tape, Variable x, float factor)
    {
        var be = tape.Backend;
        var y = tape.Output(tape.Allocate(x.Shape));
        be.Silu(x.Value, y.Value);
        tape.Record([y], [x], () =>
        {
            if (tape.GradFor(x) is not { } dx) return;
            var tmp = be.Allocate(DType.Float32, x.Shape, zero: true);
            be.SiluBackward(x.Value, tape.GradOf(y)!, tmp);
            be.Axpy(factor, tmp, dx);
            tmp.Dispose();
        });
        return y;
    }

    [Fact]
    public void CustomOpWithCorrectBackwardPasses()
    {
        var x = TestTensors.Leaf(_be, _scope, _rng, "x", 5, 13);
        GradCheck.AssertGradients(_be, [x], t => CustomSilu(t, x, 1f));
    }

    [Theory]
    [InlineData(1.05f)]
    [InlineData(0.9f)]
    [InlineData(-1f)]
    public void CheckerFailsOnWrongBackward(float factor)
    {
        var x = TestTensors.Leaf(_be, _scope, _rng, "x", 5, 13);
        var r = GradCheck.Run(_be, [x], t => CustomSilu(t, x, factor));
        Assert.False(r.Passed, "A backward scaled by " + factor + " passed the gradient check: " + r.Report);
        Assert.True(r.Failures > 0);
    }

    [Fact]
    public void CheckerFailsOnMissingContribution()
    {
        // Backward that forgets the second use of x (a classic accumulation bug).
        var x = TestTensors.Leaf(_be, _scope, _rng, "x", 3, 7);
        var r = GradCheck.Run(_be, [x], t =>
        {
            var be = t.Backend;
            var y = t.Output(t.Allocate(x.Shape));
            be.Mul(x.Value, x.Value, y.Value);
            t.Record([y], [x], () => be.MulAccumulate(t.GradOf(y)!, x.Value, t.GradFor(x)!)); // should be 2·x·dy
            return y;
        });
        Assert.False(r.Passed, r.Report);
    }
}
