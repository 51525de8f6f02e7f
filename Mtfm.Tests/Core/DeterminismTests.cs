using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;
using static Mtfm.Tests.Core.TestTensors;

namespace Mtfm.Tests.Core;

/// <summary>Bit-for-bit reproducibility of a forward+backward pass on the CPU backend.</summary>
public sealed class DeterminismTests
{
    /// <summary>
    /// Runs a composite step large enough to use every worker (thousands of rows, many duplicate ids and groups) and
    /// returns every gradient as raw bits.
    /// </summary>
    private static List<float[]> Step(int threads, bool includeGemm)
    {
        using var be = new CpuBackend(threads);
        var rng = new Random(2024);
        const int n = 3000, d = 24, vocab = 50, groups = 5;
        using var table = new Parameter("emb", Tensor(be, Randn(rng, vocab * d), vocab, d), sparseGrad: true);
        using var denseTable = new Parameter("dense", Tensor(be, Randn(rng, vocab * d), vocab, d));
        using var gamma = new Parameter("gamma", Tensor(be, Randn(rng, groups * d), groups, d));
        using var beta = new Parameter("beta", Tensor(be, Randn(rng, groups * d), groups, d));
        using var w = new Parameter("w", Tensor(be, Randn(rng, d * d, 0.2), d, d));
        using var bias = new Parameter("bias", Tensor(be, Randn(rng, d), d));
        var ids = Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();
        var gids = Enumerable.Range(0, n).Select(_ => rng.Next(groups)).ToArray();
        var labels = Enumerable.Range(0, n).Select(_ => (float)rng.Next(2)).ToArray();
        var mask = Enumerable.Range(0, n).Select(_ => rng.Next(4) == 0 ? 0f : 1f).ToArray();
        using (var tape = new Tape(be))
        {
            var idT = tape.Ids(ids, [n]);
            var h = tape.Add(tape.Embedding(table, idT), tape.Embedding(denseTable, idT));
            h = tape.GroupLayerNorm(h, gamma, beta, tape.Ids(gids, [n]));
            h = includeGemm ? tape.Linear(h, w, bias) : tape.AddBias(h, bias);
            h = tape.Softmax(tape.Silu(h));
            var logits = tape.SumLastAxis(tape.Mul(h, h));
            var loss = tape.Add(tape.BceWithLogits(logits, tape.Input(labels, [n]).Value, tape.Input(mask, [n]).Value), tape.Mean(h));
            tape.Backward(loss);
        }
        var result = new List<float[]>
        {
            Read(table.SparseGradient!.Values), Read(denseTable.Grad!), Read(gamma.Grad!), Read(beta.Grad!), Read(bias.Grad!),
        };
        if (includeGemm) result.Add(Read(w.Grad!));
        return result;
    }

    private static void AssertBitwiseEqual(List<float[]> a, List<float[]> b)
    {
        Assert.Equal(a.Count, b.Count);
        for (int i = 0; i < a.Count; i++)
        {
            Assert.Equal(a[i].Length, b[i].Length);
            for (int j = 0; j < a[i].Length; j++)
                Assert.True(BitConverter.SingleToInt32Bits(a[i][j]) == BitConverter.SingleToInt32Bits(b[i][j]), $"gradient {i} element {j}: {a[i][j]:R} vs {b[i][j]:R}");
        }
    }

    [Fact]
    public void RepeatedRunsWithTheSameThreadCountAreBitwiseEqual()
        => AssertBitwiseEqual(Step(3, includeGemm: true), Step(3, includeGemm: true));

    [Fact]
    public void NonGemmKernelsDoNotDependOnTheThreadCount()
        => AssertBitwiseEqual(Step(1, includeGemm: false), Step(4, includeGemm: false));
}
