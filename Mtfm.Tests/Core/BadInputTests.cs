using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;
using static Mtfm.Tests.Core.TestTensors;

namespace Mtfm.Tests.Core;

/// <summary>Bad shapes, sizes and ids are rejected with messages naming the argument and the value.</summary>
public sealed class BadInputTests : IDisposable
{
    private readonly CpuBackend _be = new(threads: 2);
    private readonly Tape _tape;

    public BadInputTests() => _tape = new Tape(_be);

    public void Dispose()
    {
        _tape.Dispose();
        _be.Dispose();
    }

    private Variable V(params int[] shape)
    {
        int n = 1;
        foreach (var d in shape) n *= d;
        return _tape.Input(Randn(new Random(n), n), shape);
    }

    [Fact]
    public void EmbeddingIdOutOfRangeNamesIdsValueAndPosition()
    {
        var table = V(5, 3);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => _tape.Embedding(table, _tape.Ids([0, 4, 5, 1], [4])));
        Assert.Equal("ids", ex.ParamName);
        Assert.Equal(5L, ex.ActualValue);
        Assert.Contains("ids[2] = 5", ex.Message);
        Assert.Contains("[0, 5)", ex.Message);
        var neg = Assert.Throws<ArgumentOutOfRangeException>(() => _tape.Embedding(table, _tape.Ids([-1], [1])));
        Assert.Contains("ids[0] = -1", neg.Message);
    }

    [Fact]
    public void GroupIdOutOfRangeNamesGroupIds()
    {
        var x = V(4, 3);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => _tape.GroupLayerNorm(x, V(2, 3), V(2, 3), _tape.Ids([0, 1, 2, 0], [4])));
        Assert.Equal("groupIds", ex.ParamName);
        Assert.Contains("groupIds[2] = 2", ex.Message);
    }

    [Fact]
    public void GatherAndScatterIndexChecks()
    {
        var x = V(4, 3);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => _tape.GatherRows(x, _tape.Ids([3, 9], [2])));
        Assert.Equal("index", ex.ParamName);
        Assert.Contains("index[1] = 9", ex.Message);
        var dup = Assert.Throws<ArgumentException>(() => _tape.ScatterRows(x, _tape.Ids([1, 1], [2]), V(2, 3)));
        Assert.Equal("index", dup.ParamName);
        Assert.Contains("index[1] = 1", dup.Message);
    }

    [Fact]
    public void MatMulShapeMismatchNamesBothShapes()
    {
        var ex = Assert.Throws<ArgumentException>(() => _tape.MatMul(V(3, 7), V(5, 13)));
        Assert.Equal("b", ex.ParamName);
        Assert.Contains("[3, 7]", ex.Message);
        Assert.Contains("[5, 13]", ex.Message);
        Assert.Throws<ArgumentException>(() => _tape.MatMul(V(3, 7, 1), V(7, 2)));
    }

    [Fact]
    public void ElementwiseAndBiasMismatch()
    {
        var ex = Assert.Throws<ArgumentException>(() => _tape.Add(V(3, 7), V(7, 3)));
        Assert.Equal("b", ex.ParamName);
        Assert.Contains("[7, 3]", ex.Message);
        var bias = Assert.Throws<ArgumentException>(() => _tape.AddBias(V(3, 7), V(6)));
        Assert.Equal("bias", bias.ParamName);
        Assert.Contains("7", bias.Message);
        var ln = Assert.Throws<ArgumentException>(() => _tape.LayerNorm(V(3, 7), V(6), V(6)));
        Assert.Equal("gamma", ln.ParamName);
    }

    [Fact]
    public void ConcatSplitMismatch()
    {
        var ex = Assert.Throws<ArgumentException>(() => _tape.Concat(V(3, 2), V(4, 2)));
        Assert.Contains("parts[1]", ex.Message);
        var sp = Assert.Throws<ArgumentException>(() => _tape.Split(V(3, 7), 3, 3));
        Assert.Equal("widths", sp.ParamName);
        Assert.Contains("sum to 6", sp.Message);
    }

    [Fact]
    public void BceRejectsNonBinaryMaskAndBadLabels()
    {
        var z = V(3);
        var labels = _tape.Input([1, 0, 1], [3]).Value;
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => _tape.BceWithLogits(z, labels, _tape.Input([1, 0.5f, 1], [3]).Value));
        Assert.Equal("mask", ex.ParamName);
        Assert.Contains("mask[1] = 0.5", ex.Message);
        var lab = Assert.Throws<ArgumentOutOfRangeException>(() => _tape.BceWithLogits(z, _tape.Input([1, 0, 2], [3]).Value, _tape.Input([1, 1, 1], [3]).Value));
        Assert.Equal("labels", lab.ParamName);
        Assert.Contains("labels[2] = 2", lab.Message);
        var len = Assert.Throws<ArgumentException>(() => _tape.BceWithLogits(z, _tape.Input([1, 0], [2]).Value, labels));
        Assert.Equal("labels", len.ParamName);
    }

    [Fact]
    public void TensorViewAndShapeErrors()
    {
        using var t = _be.Allocate(DType.Float32, [4, 3]);
        var rows = Assert.Throws<ArgumentOutOfRangeException>(() => t.Rows(2, 3));
        Assert.Equal("count", rows.ParamName);
        Assert.Contains("[2, 5)", rows.Message);
        var rs = Assert.Throws<ArgumentException>(() => t.Reshape(5, 2));
        Assert.Contains("[5, 2]", rs.Message);
        var neg = Assert.Throws<ArgumentOutOfRangeException>(() => _be.Allocate(DType.Float32, [3, -2]));
        Assert.Equal(-2, neg.ActualValue);
        var up = Assert.Throws<ArgumentException>(() => _be.Upload<float>([1f, 2f], t));
        Assert.Equal("src", up.ParamName);
        Assert.Contains("12", up.Message);
    }

    [Fact]
    public void TensorsFromAnotherBackendAreRejected()
    {
        using var other = new CpuBackend(1);
        using var foreign = other.Allocate(DType.Float32, [3]);
        using var mine = _be.Allocate(DType.Float32, [3]);
        var ex = Assert.Throws<ArgumentException>(() => _be.Add(mine, foreign, mine));
        Assert.Equal("b", ex.ParamName);
    }
}
