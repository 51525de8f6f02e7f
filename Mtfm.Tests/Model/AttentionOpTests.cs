using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;
using Mtfm.Tests.Attention;
using Mtfm.Tests.Core;

namespace Mtfm.Tests.Model;

/// <summary>The fused attention and row-assembly ops as autograd ops: gradients by finite differences.</summary>
public class AttentionOpTests
{
    [Theory]
    [InlineData(false, 2, 1)]
    [InlineData(true, 2, 1)]
    [InlineData(false, 2, 2)]
    [InlineData(true, 4, 2)]
    public void HstuAttentionOpGradientsMatchFiniteDifferences(bool targetLayer, int h, int g)
    {
        using var be = new CpuBackend(2);
        using var scope = new TensorScope(be);
        var tb = HstuTestBatch.Make(7, [(3, 2, 2), (0, 1, 1), (2, 0, 3)], h, g, 3, 2, targetLayer);
        using var layout = new AttentionLayout(tb.Offsets, tb.Kind, tb.Time);
        var rng = new Random(11);
        int rows = targetLayer ? layout.TargetTokens.Length : layout.TokenCount;
        var q = TestTensors.Leaf(be, scope, rng, "q", rows, h * 3);
        var k = TestTensors.Leaf(be, scope, rng, "k", layout.TokenCount, g * 3);
        var v = TestTensors.Leaf(be, scope, rng, "v", layout.TokenCount, g * 2);
        var rab = TestTensors.Leaf(be, scope, rng, "rab", h, layout.RabWidth);
        GradCheck.AssertGradients(be, [q, k, v, rab], tape => tape.HstuAttention(layout, targetLayer, h, g, q, k, v, rab));
    }

    [Fact]
    public void AssembleRowsPlacesPartsAndRoutesGradients()
    {
        using var be = new CpuBackend(1);
        using var scope = new TensorScope(be);
        var rng = new Random(3);
        var a = TestTensors.Leaf(be, scope, rng, "a", 2, 3);
        var b = TestTensors.Leaf(be, scope, rng, "b", 3, 3);
        var ia = scope.Adopt(TestTensors.Ints(be, [4, 0], 2));
        var ib = scope.Adopt(TestTensors.Ints(be, [1, 5, 2], 3));
        using (var tape = new Tape(be))
        {
            var y = TestTensors.Read(tape.AssembleRows(7, [a, b], [ia, ib]).Value);
            var av = TestTensors.Read(a.Value);
            var bv = TestTensors.Read(b.Value);
            Assert.Equal(av[3..6], y[0..3]);
            Assert.Equal(bv[0..3], y[3..6]);
            Assert.Equal(new float[3], y[9..12]); // row 3: no part
            Assert.Equal(av[0..3], y[12..15]);
        }
        GradCheck.AssertGradients(be, [a, b], tape => tape.AssembleRows(7, [a, b], [ia, ib]));
    }

    [Fact]
    public void AttentionRejectsMisShapedInputsNamingThem()
    {
        using var be = new CpuBackend(1);
        using var scope = new TensorScope(be);
        using var layout = new AttentionLayout([0, 3], [0, 1, 2], [1, 5, 9]);
        var rng = new Random(1);
        var q = TestTensors.Leaf(be, scope, rng, "q", 3, 4);
        var k = TestTensors.Leaf(be, scope, rng, "k", 2, 2); // 2 rows for 3 tokens
        var v = TestTensors.Leaf(be, scope, rng, "v", 3, 2);
        var rab = TestTensors.Leaf(be, scope, rng, "rab", 2, layout.RabWidth);
        using var tape = new Tape(be);
        var ex = Assert.Throws<ArgumentException>(() => tape.HstuAttention(layout, false, 2, 1, q, k, v, rab));
        Assert.Equal("k", ex.ParamName);
        Assert.Contains("[2, 2]", ex.Message);
    }
}
