using BenchmarkDotNet.Attributes;
using Mtfm.Engine.Evaluation;
using Mtfm.Engine.Training;

namespace Mtfm.Bench.Training;

/// <summary>AdamW (SIMD vs scalar kernel), row-sparse Adam, and exact AUC on 1M exposures.</summary>
[ShortRunJob]
[MemoryDiagnoser]
public class OptimizerBenchmarks
{
    private const int N = 1 << 20;
    private float[] _p = [], _g = [], _m = [], _v = [], _table = [], _rowGrads = [], _scores = [], _labels = [];
    private int[] _rows = [];
    private RowSparseAdamState _sparse = null!;
    private readonly AdamOptions _opt = new() { WeightDecay = 0.01f };

    [GlobalSetup]
    public void Setup()
    {
        var r = new Random(1);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() - 0.5)).ToArray();
        _p = Rand(N); _g = Rand(N); _m = new float[N]; _v = new float[N];
        _table = Rand(100_000 * 16);
        _sparse = new RowSparseAdamState(100_000, 16);
        _rows = Enumerable.Range(0, 100_000).OrderBy(_ => r.Next()).Take(4096).ToArray();
        _rowGrads = Rand(4096 * 16);
        _scores = Rand(N);
        _labels = _scores.Select(s => r.NextDouble() < 0.5 + s ? 1f : 0f).ToArray();
    }

    /// <summary>1M-parameter AdamW step, SIMD kernel.</summary>
    [Benchmark(Baseline = true)]
    public void AdamW1M() => AdamW.Step(_p, _g, _m, _v, 10, 1e-3f, _opt);

    /// <summary>Same update, scalar kernel.</summary>
    [Benchmark]
    public void AdamW1MScalar() => AdamW.ScalarKernel(_p, _g, _m, _v, AdamW.Coefficients.For(10, 1e-3f, _opt));

    /// <summary>Row-sparse Adam: 4096 distinct rows of a 100k×16 table.</summary>
    [Benchmark]
    public void RowSparseAdam4096Rows() => _sparse.Update(_table, _rows, _rowGrads, 1e-3f, _opt);

    /// <summary>Exact AUC of 1M exposures.</summary>
    [Benchmark]
    public double Auc1M() => Auc.Compute(_scores, _labels);
}
