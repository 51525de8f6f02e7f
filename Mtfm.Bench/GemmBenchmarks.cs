using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Bench;

/// <summary>
/// The packed CPU SGEMM against a <see cref="TensorPrimitives.Dot(ReadOnlySpan{float}, ReadOnlySpan{float})"/> baseline
/// (one dot product per element of C, B pre-transposed so both rows are contiguous, rows split over the same pool),
/// at MTFM-typical sizes, reporting GFLOP/s (2·m·n·k per op) and the ratio to the baseline.
/// <c>dotnet run -c Release --project Mtfm.Bench -- --filter '*Gemm*'</c>
/// </summary>
[Config(typeof(GemmBenchConfig))]
public unsafe class GemmBenchmarks
{
    private float* _a, _b, _bt, _c;
    private CpuWorkerPool _pool = null!;
#if MTFM_TORCHSHARP
    private TorchSharp.torch.Tensor _ta = null!, _tb = null!;
#endif

    /// <summary>Problem sizes.</summary>
    public static IEnumerable<GemmShape> Shapes => GemmShape.All;

    /// <summary>The problem.</summary>
    [ParamsSource(nameof(Shapes))]
    public GemmShape Shape { get; set; }

    /// <summary>Threads in the worker pool (the caller included).</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>Allocates and fills the operands.</summary>
    [GlobalSetup]
    public void Setup()
    {
        var s = Shape;
        _a = GemmQuick.Alloc((long)s.M * s.K);
        _b = GemmQuick.Alloc((long)s.K * s.N);
        _bt = GemmQuick.Alloc((long)s.K * s.N);
        _c = GemmQuick.Alloc((long)s.M * s.N);
        _pool = new CpuWorkerPool(Threads);
#if MTFM_TORCHSHARP
        GemmTorchSharpPatch.Apply();
        TorchSharp.torch.set_num_threads(Threads);
        // Same shapes and storage orders as the CpuGemm call: a transposed operand is a transposed view (mm passes it to
        // BLAS as a transpose flag).
        _ta = s.TransA ? TorchSharp.torch.randn(s.K, s.M).t() : TorchSharp.torch.randn(s.M, s.K);
        _tb = s.TransB ? TorchSharp.torch.randn(s.N, s.K).t() : TorchSharp.torch.randn(s.K, s.N);
#endif
    }

    /// <summary>Frees the operands.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_a); NativeMemory.AlignedFree(_b); NativeMemory.AlignedFree(_bt); NativeMemory.AlignedFree(_c);
        _pool.Dispose();
    }

    /// <summary>Mtfm's packed, register-blocked SGEMM.</summary>
    [Benchmark]
    public void CpuGemmSgemm()
    {
        var s = Shape;
        CpuGemm.Sgemm(_pool, s.TransA, s.TransB, s.M, s.N, s.K, 1f, _a, s.TransA ? s.M : s.K, _b, s.TransB ? s.K : s.N, 0f, _c, s.N);
    }

#if MTFM_TORCHSHARP
    /// <summary>Peer: TorchSharp-cpu 0.107.0 (LibTorch 2.10 CPU) <c>torch.mm</c> at the same thread count.</summary>
    [Benchmark]
    public void TorchSharpMm()
    {
        using var c = TorchSharp.torch.mm(_ta, _tb);
    }
#endif

    /// <summary>Baseline: C[i,j] = TensorPrimitives.Dot(A[i,:], Bᵀ[j,:]), rows of C split over the pool.</summary>
    [Benchmark(Baseline = true)]
    public void TensorPrimitivesDot()
    {
        var s = Shape;
        var body = new DotBody { A = _a, Bt = _bt, C = _c, N = s.N, K = s.K };
        _pool.For(s.M, ref body);
    }

    private struct DotBody : IRangeBody
    {
        public float* A, Bt, C;
        public int N, K;

        public readonly void Run(int start, int end)
        {
            for (int i = start; i < end; i++)
            {
                var ai = new ReadOnlySpan<float>(A + (long)i * K, K);
                for (int j = 0; j < N; j++)
                    C[(long)i * N + j] = TensorPrimitives.Dot(ai, new ReadOnlySpan<float>(Bt + (long)j * K, K));
            }
        }
    }
}

/// <summary>Short runs (the machine is shared) plus a GFLOP/s column.</summary>
public sealed class GemmBenchConfig : ManualConfig
{
    /// <summary>Creates the config.</summary>
    public GemmBenchConfig()
    {
#if MTFM_TORCHSHARP
        // BenchmarkDotNet rebuilds the benchmark in a generated project; pass the opt-in switch on to it.
        AddJob(Job.ShortRun.WithArguments([new BenchmarkDotNet.Jobs.MsBuildArgument("/p:MtfmTorchSharp=true")]));
#else
        AddJob(Job.ShortRun);
#endif
        AddColumn(StatisticColumn.Min, new GflopsColumn(best: false), new GflopsColumn(best: true));
    }
}

/// <summary>
/// GFLOP/s = 2·M·N·K / time, from the benchmark's <see cref="GemmShape"/> parameter, over the mean time or (on a shared,
/// noisy machine the steadier figure) the best iteration.
/// </summary>
public sealed class GflopsColumn(bool best) : IColumn
{
    /// <inheritdoc/>
    public string Id => best ? "GFLOP/s best" : "GFLOP/s";
    /// <inheritdoc/>
    public string ColumnName => Id;
    /// <inheritdoc/>
    public bool AlwaysShow => true;
    /// <inheritdoc/>
    public ColumnCategory Category => ColumnCategory.Custom;
    /// <inheritdoc/>
    public int PriorityInCategory => best ? 1 : 0;
    /// <inheritdoc/>
    public bool IsNumeric => true;
    /// <inheritdoc/>
    public UnitType UnitType => UnitType.Dimensionless;
    /// <inheritdoc/>
    public string Legend => best
        ? "Billions of floating-point operations per second, 2·M·N·K / Min (fastest iteration)"
        : "Billions of floating-point operations per second, 2·M·N·K / Mean";

    /// <inheritdoc/>
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    /// <inheritdoc/>
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } stats || benchmarkCase.Parameters["Shape"] is not GemmShape s) return "-";
        double flops = 2.0 * s.M * s.N * s.K;
        return (flops / (best ? stats.Min : stats.Mean)).ToString("F1", System.Globalization.CultureInfo.InvariantCulture); // flop per ns = GFLOP/s
    }
}
