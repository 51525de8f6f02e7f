using System.Globalization;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Native;
using Mtfm.Engine.Tensors;

namespace Mtfm.Bench.Cuda;

/// <summary>
/// The CUDA issue's kernels under BenchmarkDotNet, GPU only (the same figures as <see cref="CudaQuick"/>, full sizes):
/// device-to-device copy (1 GiB), cuBLAS bf16 and fp32 GEMM (8192³), the embedding gather kernel (256 Ki random ids of
/// a 1 Mi × 128 fp32 table), the fused HSTU attention forward at MTFM <c>base</c> head shapes (full and target layer,
/// one row per <see cref="CudaQuick.AttentionVariants"/> entry). Each invocation enqueues the operation
/// <see cref="Ops"/> times and waits for the stream once; the Rate column divides the work (bytes read + written, or
/// flops) by the mean time per operation. Without a GPU, [GlobalSetup] throws "CUDA not available: …" and BenchmarkDotNet
/// reports that for each case. The suite's job is a short run with the in-process toolchain (the GPU machine has no .NET
/// SDK to build BenchmarkDotNet's child process), so no flag is needed: <c>Mtfm.Bench --filter '*CudaBenchmarks*'</c>
/// (the self-contained publish of scripts/gpu-pack.sh, or <c>dotnet run -c Release --project Mtfm.Bench -- …</c>).
/// </summary>
[Config(typeof(RateConfig))]
public unsafe class CudaBenchmarks
{
    private const int Ops = 10;
    private const long CopyBytes = 1L << 30;
    private const int GemmN = 8192, TableRows = 1 << 20, EmbDim = 128, Ids = 256 << 10;

    private CudaBackend? _be;
    private nint _cublas, _marker;
    private ulong _src, _dst, _a16, _b16, _c16, _a32, _b32, _c32;
    private Tensor? _table, _ids, _gathered, _qFull, _qTarget, _k, _v, _rab, _oFull, _oTarget;
    private AttentionLayout? _layout;
    private AttentionBatch? _batch;

    /// <summary>Attention precision variant (names of <see cref="CudaQuick.AttentionVariants"/>).</summary>
    [ParamsSource(nameof(Variants))]
    public string Variant { get; set; } = "fp32";

    /// <summary>The attention variants.</summary>
    public static IEnumerable<string> Variants => CudaQuick.AttentionVariants.Select(v => v.Name);

    /// <summary>Opens the GPU and fills every buffer with random data; throws "CUDA not available: …" without one.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _be = CudaBackend.OpenDevice(); // CudaNotAvailableException("CUDA not available: …") without a GPU
        if (!_be.UsesCublas) throw new InvalidOperationException("CUDA is available but cuBLAS did not load (libcublas); the GEMM ceilings need it.");
        var d = _be.Driver;
        _marker = d.CreateEvent();
        _cublas = Cublas.Create();
        Cublas.SetStream(_cublas, _be.Stream);
        _src = d.Allocate(CopyBytes); _dst = d.Allocate(CopyBytes);
        DeviceFill.Floats(d, _src, CopyBytes / 4, 1);
        DeviceFill.Floats(d, _dst, CopyBytes / 4, 2);
        long e = (long)GemmN * GemmN;
        _a16 = d.Allocate(2 * e); _b16 = d.Allocate(2 * e); _c16 = d.Allocate(2 * e);
        DeviceFill.Bf16(d, _a16, e, 3); DeviceFill.Bf16(d, _b16, e, 4); DeviceFill.Bf16(d, _c16, e, 5);
        _a32 = d.Allocate(4 * e); _b32 = d.Allocate(4 * e); _c32 = d.Allocate(4 * e);
        DeviceFill.Floats(d, _a32, e, 6); DeviceFill.Floats(d, _b32, e, 7); DeviceFill.Floats(d, _c32, e, 8);
        _table = Rand([TableRows, EmbDim], 9);
        _gathered = Rand([Ids, EmbDim], 10);
        _ids = _be.Allocate(DType.Int32, [Ids]);
        var rng = new Random(11);
        _be.Upload<int>(Enumerable.Range(0, Ids).Select(_ => rng.Next(TableRows)).ToArray(), _ids);
        var s = CudaQuick.Sizes.Full;
        int h = s.Model.Heads, g = s.Model.KvHeads, dqk = s.Model.Dqk, dv = s.Model.Dv;
        _batch = new AttentionBatch(s.AttnInstances, s.AttnH, s.AttnR, s.AttnT);
        _layout = _batch.Layout();
        int n = _batch.Tokens, nt = _batch.Targets.Length;
        _qFull = Rand([n, h * dqk], 12); _qTarget = Rand([nt, h * dqk], 13);
        _k = Rand([n, g * dqk], 14); _v = Rand([n, g * dv], 15);
        _rab = Rand([h, _layout.RabWidth], 16, 0.1f);
        _oFull = Rand([n, h * dv], 17); _oTarget = Rand([nt, h * dv], 18);
        CudaQuick.AttentionVariants.First(v => v.Name == Variant).Select(_be);
        _be.Synchronize();

        Tensor Rand(int[] shape, ulong seed, float scale = 1f)
        {
            var t = _be!.Allocate(DType.Float32, shape);
            DeviceFill.Floats(_be.Driver, _be.DevicePointer(t), t.Length, seed, scale);
            return t;
        }
    }

    /// <summary>Frees everything.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        if (_be is null) return;
        foreach (var t in new[] { _table, _ids, _gathered, _qFull, _qTarget, _k, _v, _rab, _oFull, _oTarget }) t?.Dispose();
        _layout?.Dispose();
        foreach (var p in new[] { _src, _dst, _a16, _b16, _c16, _a32, _b32, _c32 }) if (p != 0) _be.Driver.Free(p);
        if (_cublas != 0) Cublas.Destroy(_cublas);
        if (_marker != 0) _be.Driver.DestroyEvent(_marker);
        _be.Dispose();
        _be = null;
    }

    private void Repeat(Action op)
    {
        // Driver calls make the device's context current on the calling thread; cuBLAS and raw driver-API calls need
        // that too, should BenchmarkDotNet run the workload on another thread than [GlobalSetup].
        _be!.Driver.RecordEvent(_marker, _be.Stream);
        for (int i = 0; i < Ops; i++) op();
        _be!.Synchronize();
    }

    /// <summary>cuMemcpyDtoDAsync of 1 GiB (the bandwidth ceiling).</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void CopyDeviceToDevice() => Repeat(() => _be!.Driver.CopyDeviceToDeviceAsync(_dst, _src, CopyBytes, _be.Stream));

    /// <summary>cuBLAS bf16 GEMM 8192³, fp32 accumulation (the matrix-rate ceiling).</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void GemmBf16() => Repeat(() => Cublas.GemmBf16(_cublas, false, false, GemmN, GemmN, GemmN, 1f, _a16, GemmN, _b16, GemmN, 0f, _c16, GemmN));

    /// <summary>cuBLAS fp32 GEMM 8192³ (CUBLAS_COMPUTE_32F, the engine's setting).</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void GemmFp32() => Repeat(() => Cublas.Sgemm(_cublas, false, false, GemmN, GemmN, GemmN, 1f, _a32, GemmN, _b32, GemmN, 0f, _c32, GemmN));

    /// <summary>The engine's gather kernel (what CudaBackend.GatherRows launches), 256 Ki ids × 128 floats.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void EmbeddingGather() => Repeat(() => _be!.Ops.GatherRows(_be.DevicePointer(_table!), _be.DevicePointer(_ids!), false,
        _be.DevicePointer(_gathered!), Ids, EmbDim, _be.Stream));

    /// <summary>HSTU attention forward, full layer, base head shapes.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void AttentionForwardFull() => Repeat(() => Attention(false));

    /// <summary>HSTU attention forward, target layer, base head shapes.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public void AttentionForwardTarget() => Repeat(() => Attention(true));

    private void Attention(bool target)
    {
        var m = CudaQuick.Sizes.Full.Model;
        _be!.HstuAttention(_layout!, target, m.Heads, m.KvHeads, target ? _qTarget! : _qFull!, _k!, _v!, _rab!, target ? _oTarget! : _oFull!);
    }

    /// <summary>Work of one operation: (amount, unit) — bytes moved or flops.</summary>
    internal static (double Work, string Unit) WorkOf(string method)
    {
        var m = CudaQuick.Sizes.Full.Model;
        double AttnFlops(bool target)
        {
            var s = CudaQuick.Sizes.Full;
            var b = new AttentionBatch(s.AttnInstances, s.AttnH, s.AttnR, s.AttnT);
            return AttentionBatch.ForwardFlops(b.VisiblePairs(target, m.Heads, m.KvHeads, m.Dqk, m.Dv), m.Heads, m.Dqk, m.Dv);
        }
        return method switch
        {
            nameof(CopyDeviceToDevice) => (2.0 * CopyBytes, "GB/s"),
            nameof(GemmBf16) or nameof(GemmFp32) => (2.0 * GemmN * GemmN * (double)GemmN, "TFLOP/s"),
            nameof(EmbeddingGather) => (2.0 * Ids * EmbDim * sizeof(float) + 4.0 * Ids, "GB/s"),
            nameof(AttentionForwardFull) => (AttnFlops(false), "TFLOP/s"),
            nameof(AttentionForwardTarget) => (AttnFlops(true), "TFLOP/s"),
            _ => (double.NaN, ""),
        };
    }

    private sealed class RateConfig : ManualConfig
    {
        public RateConfig()
        {
            // In-process (the GPU machine has no SDK to build BenchmarkDotNet's usual child process); short run.
            AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance).WithId("ShortRun-InProcess"));
            AddColumn(new RateColumn());
        }
    }

    /// <summary>GB/s (bytes read + written) or TFLOP/s from the mean time per operation.</summary>
    private sealed class RateColumn : IColumn
    {
        private readonly Dictionary<string, (double, string)> _cache = new();

        public string Id => "Rate";
        public string ColumnName => "Rate";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 0;
        public bool IsNumeric => false;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => "work per operation (bytes read + written, or 2 flops per multiply-add) / mean time";
        public bool IsAvailable(Summary summary) => true;
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            var report = summary[benchmarkCase];
            if (report?.ResultStatistics is null) return "-";
            string method = benchmarkCase.Descriptor.WorkloadMethod.Name;
            if (!_cache.TryGetValue(method, out var w)) _cache[method] = w = WorkOf(method);
            double seconds = report.ResultStatistics.Mean * 1e-9;
            double rate = w.Item2 == "GB/s" ? w.Item1 / seconds / 1e9 : w.Item1 / seconds / 1e12;
            return rate.ToString("F1", CultureInfo.InvariantCulture) + " " + w.Item2;
        }
    }
}
