using BenchmarkDotNet.Attributes;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;

namespace Mtfm.Bench;

/// <summary>CPU backend kernels of the engine core on a [tokens, d] activation (GLN, SiLU, embedding scatter-add).</summary>
[ShortRunJob]
[MemoryDiagnoser]
public class CoreKernelBench : IDisposable
{
    private CpuBackend _be = null!;
    private Tensor _x = null!, _y = null!, _dx = null!, _gamma = null!, _beta = null!, _dg = null!, _db = null!;
    private Tensor _mean = null!, _rstd = null!, _groups = null!, _ids = null!, _table = null!;

    /// <summary>Tokens in the batch.</summary>
    [Params(8192)]
    public int Tokens { get; set; }

    /// <summary>Model width.</summary>
    [Params(256)]
    public int D { get; set; }

    /// <summary>Worker threads.</summary>
    [Params(2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _be = new CpuBackend(Threads);
        var rng = new Random(1);
        Tensor Rand(params int[] shape)
        {
            var t = _be.Allocate(DType.Float32, shape);
            var h = new float[t.Length];
            for (int i = 0; i < h.Length; i++) h[i] = (float)(rng.NextDouble() * 2 - 1);
            _be.Upload<float>(h, t);
            return t;
        }
        _x = Rand(Tokens, D);
        _y = Rand(Tokens, D);
        _dx = Rand(Tokens, D);
        _gamma = Rand(8, D);
        _beta = Rand(8, D);
        _dg = Rand(8, D);
        _db = Rand(8, D);
        _mean = Rand(Tokens);
        _rstd = Rand(Tokens);
        _table = Rand(4096, D);
        _groups = _be.Allocate(DType.Int32, [Tokens]);
        _be.Upload<int>(Enumerable.Range(0, Tokens).Select(i => i % 8).ToArray(), _groups);
        _ids = _be.Allocate(DType.Int32, [Tokens]);
        _be.Upload<int>(Enumerable.Range(0, Tokens).Select(_ => rng.Next(4096)).ToArray(), _ids);
    }

    /// <summary>Group LayerNorm forward.</summary>
    [Benchmark]
    public void GroupLayerNormForward() => _be.LayerNorm(_x, _gamma, _beta, _groups, 1e-5f, _y, _mean, _rstd);

    /// <summary>Group LayerNorm backward (dx, dgamma, dbeta).</summary>
    [Benchmark]
    public void GroupLayerNormBackward() => _be.LayerNormBackward(_x, _mean, _rstd, _gamma, _groups, _y, _dx, _dg, _db);

    /// <summary>SiLU forward.</summary>
    [Benchmark]
    public void SiluForward() => _be.Silu(_x, _y);

    /// <summary>Embedding gather.</summary>
    [Benchmark]
    public void EmbeddingGather() => _be.GatherRows(_table, _ids, _y);

    /// <summary>Embedding backward as a deterministic scatter-add.</summary>
    [Benchmark]
    public void EmbeddingScatterAdd() => _be.ScatterAddRows(_y, _ids, _table);

    [GlobalCleanup]
    public void Dispose()
    {
        foreach (var t in new[] { _x, _y, _dx, _gamma, _beta, _dg, _db, _mean, _rstd, _groups, _ids, _table }) t?.Dispose();
        _be?.Dispose();
        GC.SuppressFinalize(this);
    }
}
