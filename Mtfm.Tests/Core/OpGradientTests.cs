using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;
using static Mtfm.Tests.Core.TestTensors;

namespace Mtfm.Tests.Core;

/// <summary>Every op's backward against central finite differences, random inputs, odd sizes.</summary>
public sealed class OpGradientTests : IDisposable
{
    private readonly CpuBackend _be = new(threads: 2);
    private readonly TensorScope _scope;
    private readonly Random _rng = new(12345);

    public OpGradientTests() => _scope = new TensorScope(_be);

    public void Dispose()
    {
        _scope.Dispose();
        _be.Dispose();
    }

    private Variable Leaf(string name, params int[] shape) => TestTensors.Leaf(_be, _scope, _rng, name, shape);

    private Tensor Ids(params int[] ids) => _scope.Adopt(Ints(_be, ids));

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void MatMul(bool transA, bool transB)
    {
        int m = 3, k = 7, n = 5;
        var a = transA ? Leaf("a", k, m) : Leaf("a", m, k);
        var b = transB ? Leaf("b", n, k) : Leaf("b", k, n);
        GradCheck.AssertGradients(_be, [a, b], t => t.MatMul(a, b, transA, transB));
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void BatchedMatMul(bool transA, bool transB)
    {
        int bt = 2, m = 3, k = 5, n = 4;
        var a = transA ? Leaf("a", bt, k, m) : Leaf("a", bt, m, k);
        var b = transB ? Leaf("b", bt, n, k) : Leaf("b", bt, k, n);
        GradCheck.AssertGradients(_be, [a, b], t => t.BatchedMatMul(a, b, transA, transB));
    }

    [Fact]
    public void LinearWithBias()
    {
        var x = Leaf("x", 5, 3);
        var w = Leaf("w", 3, 7);
        var b = Leaf("b", 7);
        GradCheck.AssertGradients(_be, [x, w, b], t => t.Linear(x, w, b));
    }

    [Fact]
    public void AddBias()
    {
        var x = Leaf("x", 5, 13);
        var b = Leaf("b", 13);
        GradCheck.AssertGradients(_be, [x, b], t => t.AddBias(x, b));
    }

    [Fact]
    public void AddMulScale()
    {
        var a = Leaf("a", 3, 7);
        var b = Leaf("b", 3, 7);
        GradCheck.AssertGradients(_be, [a, b], t => t.Scale(t.Mul(t.Add(a, b), b), -1.7f));
    }

    [Fact]
    public void Silu()
    {
        var x = Leaf("x", 5, 13);
        GradCheck.AssertGradients(_be, [x], t => t.Silu(x));
    }

    [Fact]
    public void SumAndMean()
    {
        var x = Leaf("x", 3, 7);
        GradCheck.AssertGradients(_be, [x], t => t.Sum(t.Mul(x, x)));
        GradCheck.AssertGradients(_be, [x], t => t.Mean(t.Mul(x, x)));
    }

    [Fact]
    public void SumAndMeanLastAxis()
    {
        var x = Leaf("x", 5, 13);
        GradCheck.AssertGradients(_be, [x], t => t.SumLastAxis(t.Mul(x, x)));
        GradCheck.AssertGradients(_be, [x], t => t.MeanLastAxis(t.Mul(x, x)));
    }

    [Fact]
    public void LayerNormAffine()
    {
        var x = Leaf("x", 5, 13);
        var g = Leaf("gamma", 13);
        var b = Leaf("beta", 13);
        GradCheck.AssertGradients(_be, [x, g, b], t => t.LayerNorm(x, g, b));
    }

    [Fact]
    public void LayerNormPlain()
    {
        var x = Leaf("x", 3, 7);
        GradCheck.AssertGradients(_be, [x], t => t.LayerNorm(x, null, null));
    }

    [Fact]
    public void GroupLayerNorm()
    {
        var x = Leaf("x", 13, 7);
        var g = Leaf("gamma", 3, 7);
        var b = Leaf("beta", 3, 7);
        var groups = Ids(2, 0, 1, 1, 2, 0, 0, 2, 1, 2, 2, 0, 1);
        GradCheck.AssertGradients(_be, [x, g, b], t => t.GroupLayerNorm(x, g, b, groups));
    }

    [Fact]
    public void EmbeddingDense()
    {
        var table = Leaf("table", 7, 5);
        var ids = Ids(3, 0, 6, 3, 3, 1);
        GradCheck.AssertGradients(_be, [table], t => t.Embedding(table, ids));
    }

    [Fact]
    public void EmbeddingRowSparse()
    {
        using var table = new Parameter("table", Tensor(_be, Randn(_rng, 9 * 5), 9, 5), sparseGrad: true);
        var ids = _scope.Adopt(Ints(_be, [4, 8, 4, 0, 2, 4, 8], 7));
        var x = Leaf("x", 7, 5);
        // The table's gradient is row-sparse; the checker densifies it. x makes the output depend on more than the table.
        GradCheck.AssertGradients(_be, [table, x], t => t.Mul(t.Embedding(table, ids), x));
    }

    [Fact]
    public void ConcatAndSplit()
    {
        var a = Leaf("a", 3, 2);
        var b = Leaf("b", 3, 5);
        var c = Leaf("c", 3, 1);
        GradCheck.AssertGradients(_be, [a, b, c], t => t.Concat(a, t.Silu(b), c));
        var x = Leaf("x", 5, 13);
        // Parts used unequally (one unused) so that each column's gradient differs.
        GradCheck.AssertGradients(_be, [x], t =>
        {
            var parts = t.Split(x, 4, 6, 3);
            return t.Concat(t.Mul(parts[2], parts[2]), parts[0]);
        });
    }

    [Fact]
    public void GatherRowsWithRepeats()
    {
        var x = Leaf("x", 5, 7);
        var index = Ids(4, 1, 1, 0, 4, 4);
        GradCheck.AssertGradients(_be, [x], t => t.GatherRows(x, index));
    }

    [Fact]
    public void ScatterRows()
    {
        var x = Leaf("x", 7, 3);
        var src = Leaf("src", 3, 3);
        var index = Ids(5, 0, 2);
        GradCheck.AssertGradients(_be, [x, src], t => t.ScatterRows(x, index, t.Silu(src)));
    }

    [Fact]
    public void RowsViewAndReshape()
    {
        var x = Leaf("x", 7, 3);
        GradCheck.AssertGradients(_be, [x], t => t.Add(t.Rows(x, 1, 3), t.Silu(t.Rows(x, 4, 3))));
        GradCheck.AssertGradients(_be, [x], t => t.Silu(t.Reshape(x, 3, 7)));
    }

    [Fact]
    public void Softmax()
    {
        var x = Leaf("x", 5, 13);
        GradCheck.AssertGradients(_be, [x], t => t.Softmax(x));
    }

    [Fact]
    public void BceWithLogitsMasked()
    {
        var z = Leaf("logits", 5, 3);
        var labels = _scope.Adopt(Tensor(_be, [1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0], 5, 3));
        var mask = _scope.Adopt(Tensor(_be, [1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0], 5, 3));
        GradCheck.AssertGradients(_be, [z], t => t.BceWithLogits(t.Scale(z, 3f), labels, mask));
    }

    [Fact]
    public void SmallMlpComposite()
    {
        // A tokenizer-like chain: embedding ‖ numeric → Linear → SiLU → Linear → GLN → softmax gate.
        using var table = new Parameter("emb", Tensor(_be, Randn(_rng, 6 * 4), 6, 4), sparseGrad: true);
        var num = Leaf("num", 5, 3);
        var w1 = Leaf("w1", 7, 9);
        var b1 = Leaf("b1", 9);
        var w2 = Leaf("w2", 9, 5);
        var g = Leaf("gamma", 2, 5);
        var be = Leaf("beta", 2, 5);
        var ids = Ids(1, 5, 1, 0, 3);
        var groups = Ids(0, 1, 1, 0, 1);
        GradCheck.AssertGradients(_be, [table, num, w1, b1, w2, g, be], t =>
        {
            var h = t.Concat(t.Embedding(table, ids), num);
            h = t.Linear(t.Silu(t.Linear(h, w1, b1)), w2);
            return t.Softmax(t.GroupLayerNorm(h, g, be, groups));
        });
    }
}
