using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;
using static Mtfm.Tests.Core.TestTensors;

namespace Mtfm.Tests.Core;

/// <summary>Tensors, views, scopes and deterministic memory release.</summary>
public sealed class TensorMemoryTests : IDisposable
{
    private readonly CpuBackend _be = new(threads: 2);

    public void Dispose() => _be.Dispose();

    [Fact]
    public unsafe void AllocationsAre64ByteAligned()
    {
        foreach (var n in new[] { 1, 3, 17, 1000 })
        {
            using var t = _be.Allocate(DType.Float32, [n]);
            Assert.Equal(0, (long)t.Storage.Handle % 64);
        }
    }

    [Fact]
    public void RowViewsShareStorage()
    {
        using var t = Tensor(_be, Enumerable.Range(0, 12).Select(i => (float)i).ToArray(), 4, 3);
        var v = t.Rows(1, 2);
        Assert.Same(t.Storage, v.Storage);
        Assert.False(v.OwnsStorage);
        Assert.Equal(new[] { 2, 3 }, v.Shape.ToArray());
        Assert.Equal([3f, 4f, 5f, 6f, 7f, 8f], Read(v));
        _be.Upload<float>([-1f, -2f, -3f], v.Rows(1, 1));  // a write through a view of a view is visible in the owner
        Assert.Equal(-2f, Read(t)[7]);
        long live = _be.LiveAllocations;
        v.Dispose();                                        // disposing a view frees nothing
        Assert.Equal(live, _be.LiveAllocations);
        Assert.Equal(new[] { 3, 4 }, t.Reshape(3, -1).Shape.ToArray());
        Assert.Same(t.Storage, t.Reshape(12).Storage);
    }

    [Fact]
    public void JaggedBatchIsRowsOfOneTensorPlusOffsets()
    {
        int[] offsets = [0, 3, 4, 8];
        using var tokens = Tensor(_be, Randn(new Random(1), 8 * 5), 8, 5);
        var all = Read(tokens);
        for (int b = 0; b < 3; b++)
        {
            var seq = tokens.Rows(offsets[b], offsets[b + 1] - offsets[b]);
            Assert.Equal(all.AsSpan(offsets[b] * 5, (offsets[b + 1] - offsets[b]) * 5).ToArray(), Read(seq));
        }
    }

    [Fact]
    public void DisposalReturnsEveryAllocation()
    {
        long allocations = _be.LiveAllocations, bytes = _be.LiveBytes;
        var t = _be.Allocate(DType.Float32, [5, 7]);
        Assert.Equal(allocations + 1, _be.LiveAllocations);
        Assert.Equal(bytes + 5 * 7 * 4, _be.LiveBytes);
        t.Dispose();
        t.Dispose(); // idempotent
        Assert.Equal(allocations, _be.LiveAllocations);
        Assert.Equal(bytes, _be.LiveBytes);

        using (var scope = new TensorScope(_be))
        {
            for (int i = 0; i < 10; i++) scope.Allocate(DType.Int64, [i + 1]);
            Assert.Equal(allocations + 10, _be.LiveAllocations);
        }
        Assert.Equal(allocations, _be.LiveAllocations);

        using var w = new Parameter("w", Tensor(_be, Randn(new Random(2), 6 * 4), 6, 4), sparseGrad: true);
        using (var tape = new Tape(_be))
        {
            var x = tape.Input(Randn(new Random(3), 4 * 3), [4, 3], requiresGrad: true);
            var h = tape.Concat(tape.Embedding(w, tape.Ids([1, 5, 1, 2], [4])), x);
            tape.Backward(tape.BceWithLogits(tape.SumLastAxis(h), tape.Input([1, 0, 1, 1], [4]).Value, tape.Input([1, 1, 0, 1], [4]).Value));
        }
        w.ZeroGrad();
        Assert.Equal(allocations + 1, _be.LiveAllocations);   // only w's value remains
        w.Dispose();
        Assert.Equal(allocations, _be.LiveAllocations);
        Assert.Equal(bytes, _be.LiveBytes);
    }

    [Fact]
    public void UseAfterFreeThrows()
    {
        var t = _be.Allocate(DType.Float32, [3]);
        var v = t.Rows(0, 2);
        t.Dispose();
        Assert.Throws<ObjectDisposedException>(() => Read(v));
        Assert.Throws<ObjectDisposedException>(() => t.Rows(0, 1));
    }

    [Fact]
    public void HostRoundTripForEveryDType()
    {
        using var f = _be.Allocate(DType.Float32, [2]);
        using var i = _be.Allocate(DType.Int32, [2]);
        using var l = _be.Allocate(DType.Int64, [2]);
        _be.Upload<float>([1.5f, -2f], f);
        _be.Upload<int>([7, -8], i);
        _be.Upload<long>([1L << 40, -3], l);
        var lf = new float[2]; var li = new int[2]; var ll = new long[2];
        _be.Download<float>(f, lf);
        _be.Download<int>(i, li);
        _be.Download<long>(l, ll);
        Assert.Equal([1.5f, -2f], lf);
        Assert.Equal([7, -8], li);
        Assert.Equal([1L << 40, -3], ll);
        var ex = Assert.Throws<ArgumentException>(() => _be.Upload<float>([1f], i));
        Assert.Contains("Int32", ex.Message);
    }

    [Fact]
    public void FromHostAndToHost()
    {
        long live = _be.LiveAllocations;
        using (var t = _be.FromHost<long>([1L, 2L, 3L, 4L, 5L, 6L], 2, 3))
        {
            Assert.Equal(DType.Int64, t.DType);
            Assert.Equal(new[] { 2, 3 }, t.Shape.ToArray());
            Assert.Equal([4L, 5L, 6L], _be.ToHost<long>(t.Rows(1, 1)));
        }
        var ex = Assert.Throws<ArgumentException>(() => _be.FromHost<float>([1f, 2f], 3));
        Assert.Equal("src", ex.ParamName);
        Assert.Equal(live, _be.LiveAllocations); // the failed upload freed its tensor
    }
}
