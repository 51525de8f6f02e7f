using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;
using static Mtfm.Tests.Core.TestTensors;

namespace Mtfm.Tests.Core;

/// <summary>Tape semantics: accumulation, NoGrad, parameters vs activations, row-sparse gradients.</summary>
public sealed class AutogradTests : IDisposable
{
    private readonly CpuBackend _be = new(threads: 2);

    public void Dispose() => _be.Dispose();

    [Fact]
    public void VariableUsedTwiceGetsBothContributions()
    {
        float[] xs = [0.5f, -1.25f, 2f];
        using var x = new Parameter("x", Tensor(_be, xs, 3));
        using (var tape = new Tape(_be))
        {
            // y = Σ (x⊙x + 3x): dy/dx = 2x + 3 (x used three times).
            var y = tape.Sum(tape.Add(tape.Mul(x, x), tape.Scale(x, 3f)));
            tape.Backward(y);
        }
        var g = Read(x.Grad!);
        for (int i = 0; i < 3; i++) Assert.Equal(2 * xs[i] + 3, g[i], 6);
    }

    [Fact]
    public void ParameterGradientsAccumulateAcrossTapesUntilZeroGrad()
    {
        using var w = new Parameter("w", Tensor(_be, [1f, 2f], 2));
        for (int step = 0; step < 2; step++)
        {
            using var tape = new Tape(_be);
            tape.Backward(tape.Sum(tape.Scale(w, 5f)));
        }
        Assert.Equal([10f, 10f], Read(w.Grad!));
        w.ZeroGrad();
        Assert.Equal([0f, 0f], Read(w.Grad!));
    }

    [Fact]
    public void NoGradRecordsNothingAndAllocatesNoGradients()
    {
        using var w = new Parameter("w", Tensor(_be, [1f, 2f, 3f], 3));
        using var tape = new Tape(_be);
        Variable y;
        using (tape.NoGrad())
        {
            Assert.False(tape.IsRecording);
            y = tape.Sum(tape.Silu(tape.Mul(w, w)));
        }
        Assert.True(tape.IsRecording);
        Assert.Equal(0, tape.NodeCount);
        Assert.False(y.RequiresGrad);
        Assert.Null(w.Grad);
        Assert.Throws<ArgumentException>(() => tape.Backward(y));
        Assert.Null(w.Grad);

        using var inference = new Tape(_be, gradEnabled: false);
        var z = inference.Silu(w);
        Assert.Equal(0, inference.NodeCount);
        Assert.False(z.RequiresGrad);
    }

    [Fact]
    public void OpsOnConstantsRecordNothing()
    {
        using var tape = new Tape(_be);
        var a = tape.Input([1f, 2f], [2]);
        var y = tape.Silu(tape.Add(a, a));
        Assert.Equal(0, tape.NodeCount);
        Assert.False(y.RequiresGrad);
    }

    [Fact]
    public void ActivationGradientsAreFreedWithTheTapeParameterGradientsPersist()
    {
        using var w = new Parameter("w", Tensor(_be, [1f, -2f, 3f, 0.5f], 2, 2));
        long baseline = _be.LiveAllocations;
        var x = new Variable(Tensor(_be, [0.3f, 0.7f, -0.1f, 0.2f], 2, 2), requiresGrad: true);
        Variable h;
        using (var tape = new Tape(_be))
        {
            h = tape.Silu(tape.MatMul(x, w));
            tape.Backward(tape.Mean(h));
            Assert.NotNull(h.Grad);
            Assert.NotNull(x.Grad);
            Assert.True(_be.LiveAllocations > baseline + 1);
        }
        Assert.Null(h.Grad);
        Assert.Null(x.Grad);
        Assert.NotNull(w.Grad);                       // the parameter's gradient survives the step
        Assert.True(h.Value.Storage.IsDisposed);      // activations are gone
        Assert.Throws<ObjectDisposedException>(() => Read(h.Value));
        x.Value.Dispose();
        Assert.Equal(baseline + 1, _be.LiveAllocations); // + w's gradient buffer
    }

    [Fact]
    public void BackwardRunsOncePerTape()
    {
        using var w = new Parameter("w", Tensor(_be, [1f], 1));
        using var tape = new Tape(_be);
        var y = tape.Sum(tape.Scale(w, 2f));
        tape.Backward(y);
        Assert.Throws<InvalidOperationException>(() => tape.Backward(y));
    }

    [Fact]
    public void RowSparseEmbeddingGradientHoldsExactlyTheTouchedRowsSummed()
    {
        const int vocab = 10, dim = 3;
        var tableData = Randn(new Random(3), vocab * dim);
        using var table = new Parameter("item_id", Tensor(_be, tableData, vocab, dim), sparseGrad: true);
        int[] ids = [7, 2, 7, 9, 2, 7];
        var dy = Randn(new Random(4), ids.Length * dim);
        using (var tape = new Tape(_be))
        {
            var y = tape.Embedding(table, tape.Ids(ids, [ids.Length]));
            Assert.Equal(tableData.AsSpan(7 * dim, dim).ToArray(), Read(y.Value).AsSpan(0, dim).ToArray());
            var seed = tape.Allocate(ids.Length, dim);
            _be.Upload<float>(dy, seed);
            tape.Backward(y, seed);
        }
        Assert.Null(table.Grad); // no dense buffer for a sparse table
        var sg = table.SparseGradient!;
        Assert.Equal([2, 7, 9], ReadInts(sg.Indices));
        Assert.Equal(new[] { 3, dim }, sg.Values.Shape.ToArray());
        var values = Read(sg.Values);
        int[][] positions = [[1, 4], [0, 2, 5], [3]];
        for (int r = 0; r < 3; r++)
            for (int j = 0; j < dim; j++)
            {
                float expected = 0f;
                foreach (var p in positions[r]) expected += dy[p * dim + j];
                Assert.Equal(expected, values[r * dim + j]);
            }

        // A second step before ZeroGrad merges: rows stay distinct and sorted, values add.
        using (var tape = new Tape(_be))
        {
            var y = tape.Embedding(table, tape.Ids([0, 9], [2]));
            tape.Backward(tape.Sum(y));
        }
        Assert.Equal([0, 2, 7, 9], ReadInts(table.SparseGradient!.Indices));
        var merged = Read(table.SparseGradient!.Values);
        for (int j = 0; j < dim; j++)
        {
            Assert.Equal(1f, merged[j]);
            Assert.Equal(dy[3 * dim + j] + 1f, merged[3 * dim + j]);
        }
        table.ZeroGrad();
        Assert.Null(table.SparseGradient);
    }

    [Fact]
    public void CustomOpThroughRecordReceivesOutputGradient()
    {
        using var w = new Parameter("w", Tensor(_be, [1f, 2f, 3f], 3));
        using var tape = new Tape(_be);
        // Custom op y = 2w, written as a lead would wire an external kernel.
        var y = tape.Output(tape.Allocate(3));
        _be.Scale(w.Value, 2f, y.Value);
        bool called = false;
        Assert.True(tape.Record([y], [w], () =>
        {
            called = true;
            _be.Axpy(2f, tape.GradOf(y)!, tape.GradFor(w)!);
        }));
        tape.Backward(tape.Sum(y));
        Assert.True(called);
        Assert.Equal([2f, 2f, 2f], Read(w.Grad!));
    }

    [Fact]
    public void UnreachedNodesDoNotRun()
    {
        using var w = new Parameter("w", Tensor(_be, [1f, 2f], 2));
        using var tape = new Tape(_be);
        var unused = tape.Silu(w);
        bool ran = false;
        tape.Record([unused], [w], () => ran = true);
        tape.Backward(tape.Sum(tape.Scale(w, 1f)));
        Assert.False(ran);
    }

    [Fact]
    public void Int64IdsWorkForEmbeddingAndGather()
    {
        using var table = new Parameter("t", Tensor(_be, Randn(new Random(5), 6 * 2), 6, 2), sparseGrad: true);
        for (int step = 0; step < 2; step++)
        {
            using var tape = new Tape(_be);
            var ids = tape.Allocate(DType.Int64, [3]);
            _be.Upload<long>([5L, 1L, 5L], ids);
            var y = tape.GatherRows(tape.Embedding(table, ids), tape.Ids([2, 0], [2]));
            tape.Backward(tape.Sum(y));
        }
        // Row 1 was looked up (touched) but not gathered afterwards: present, with a zero gradient.
        Assert.Equal([1, 5], ReadInts(table.SparseGradient!.Indices));
        Assert.Equal([0f, 0f, 4f, 4f], Read(table.SparseGradient!.Values));
    }

    [Fact]
    public void ReleasingActivationGradientsKeepsResultsAndFreesMemory()
    {
        float[] Run(bool release, out long liveAfterBackward, out bool hGradAlive)
        {
            using var w = new Parameter("w", Tensor(_be, Randn(new Random(8), 5 * 7), 5, 7));
            var x = new Variable(Tensor(_be, Randn(new Random(9), 3 * 5), 3, 5), requiresGrad: true);
            using var tape = new Tape(_be);
            var h = tape.Silu(tape.MatMul(x, w));
            tape.Backward(tape.Mean(tape.Mul(h, h)), release);
            liveAfterBackward = _be.LiveAllocations;
            hGradAlive = h.Grad is not null;
            var g = Read(w.Grad!).Concat(Read(x.Grad!)).ToArray();
            x.Value.Dispose();
            return g;
        }
        var kept = Run(false, out long liveKept, out bool keptAlive);
        var released = Run(true, out long liveReleased, out bool releasedAlive);
        Assert.Equal(kept, released);
        Assert.True(keptAlive);
        Assert.False(releasedAlive);
        Assert.True(liveReleased < liveKept, $"{liveReleased} live allocations with release vs {liveKept} without");
    }
}
