using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Bench;

/// <summary>
/// Fused jagged HSTU attention (<see cref="CpuHstuAttention"/>) on an MTFM-like batch: 32 user-windows of ~200 H,
/// ~50 R and ~20 T tokens, h = 4 query heads, g kv heads, dqk = dv = 32; Q/K/V are column slices of one wider
/// projection output [N, h·dv + h·dqk + g·dqk + g·dv] (U first), as the layer produces them. Full layer: every token
/// queries; target layer: only T tokens. GFLOP/s counts 2 flops per multiply-add over the visible (query, key) pairs
/// (<see cref="CpuHstuAttention.CountVisiblePairs"/>): forward QK + AV = 2·pairs·h·(dqk + dv); backward QK (recomputed),
/// dO·Vᵀ, dV, dQ, dK = 2·pairs·h·(3·dqk + 2·dv).
/// </summary>
[ShortRunJob]
[Config(typeof(GflopsConfig))]
public unsafe class AttentionBenchmarks
{
    private const int Heads = 4, Dqk = 32, Dv = 32, Instances = 32;

    /// <summary>Key/value heads (GQA).</summary>
    [Params(1, 2)]
    public int KvHeads { get; set; }

    /// <summary>Worker threads.</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    private Data? _d;
    private CpuWorkerPool? _pool;

    /// <summary>Builds the batch.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _d = new Data(KvHeads);
        _pool = new CpuWorkerPool(Threads);
    }

    /// <summary>Releases the batch.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _pool?.Dispose();
        _d?.Dispose();
    }

    /// <summary>Full-layer forward.</summary>
    [Benchmark]
    public void ForwardFull() => _d!.Forward(_pool, target: false);

    /// <summary>Full-layer backward.</summary>
    [Benchmark]
    public void BackwardFull() => _d!.Backward(_pool, target: false);

    /// <summary>Target-layer forward.</summary>
    [Benchmark]
    public void ForwardTarget() => _d!.Forward(_pool, target: true);

    /// <summary>Target-layer backward.</summary>
    [Benchmark]
    public void BackwardTarget() => _d!.Backward(_pool, target: true);

    /// <summary>Flops of one call of <paramref name="method"/> with <paramref name="kvHeads"/> kv heads.</summary>
    public static double Flops(string method, int kvHeads)
    {
        using var d = new Data(kvHeads);
        bool target = method.EndsWith("Target", StringComparison.Ordinal);
        long pairs = CpuHstuAttention.CountVisiblePairs(d.Args(target));
        return method.StartsWith("Forward", StringComparison.Ordinal)
            ? 2.0 * pairs * Heads * (Dqk + Dv)
            : 2.0 * pairs * Heads * (3 * Dqk + 2 * Dv);
    }

    /// <summary>The batch in native memory.</summary>
    private sealed class Data : IDisposable
    {
        private readonly int _g, _n, _nt, _ld;
        private readonly int* _off, _tq;
        private readonly byte* _kind;
        private readonly long* _time;
        private readonly float* _x, _qt, _rab, _o, _do, _dq, _dk, _dv, _drab;

        public Data(int g)
        {
            _g = g;
            var rng = new Random(42);
            var kinds = new List<byte>();
            var times = new List<long>();
            var offs = new List<int> { 0 };
            for (int b = 0; b < Instances; b++)
            {
                int nh = rng.Next(160, 241), nr = rng.Next(30, 71), nt = rng.Next(10, 31);
                long w = 1_700_000_000 + b * 86400L;
                for (int i = 0; i < nh; i++) { kinds.Add(0); times.Add(w - 1 - rng.NextInt64(0, 180L * 86400)); }
                long t = w;
                var rt = new List<long>();
                for (int i = 0; i < nr; i++) { t += rng.Next(0, 1800); rt.Add(t); kinds.Add(1); times.Add(t); }
                var tt = Enumerable.Range(0, nt).Select(_ => rng.Next(2) == 0 ? rt[rng.Next(rt.Count)] : w + rng.NextInt64(0, 86400)).Order().ToList();
                foreach (long x in tt) { kinds.Add(2); times.Add(x); }
                offs.Add(kinds.Count);
            }
            _n = kinds.Count;
            var tq = Enumerable.Range(0, _n).Where(i => kinds[i] == 2).ToArray();
            _nt = tq.Length;
            _ld = Heads * Dv + Heads * Dqk + g * Dqk + g * Dv;
            _off = Copy(offs.ToArray());
            _tq = Copy(tq);
            _kind = (byte*)NativeMemory.Alloc((nuint)_n);
            for (int i = 0; i < _n; i++) _kind[i] = kinds[i];
            _time = (long*)NativeMemory.Alloc((nuint)(_n * sizeof(long)));
            for (int i = 0; i < _n; i++) _time[i] = times[i];
            _x = Rand(rng, (long)_n * _ld);
            _qt = Rand(rng, (long)_nt * Heads * Dqk);
            _rab = Rand(rng, Heads * (2 * 32 - 1));
            _o = Rand(rng, (long)_n * Heads * Dv);
            _do = Rand(rng, (long)_n * Heads * Dv);
            _dq = Rand(rng, (long)_n * Heads * Dqk);
            _dk = Rand(rng, (long)_n * g * Dqk);
            _dv = Rand(rng, (long)_n * g * Dv);
            _drab = Rand(rng, Heads * (2 * 32 - 1));
        }

        private static int* Copy(int[] a)
        {
            int* p = (int*)NativeMemory.Alloc((nuint)(Math.Max(1, a.Length) * sizeof(int)));
            for (int i = 0; i < a.Length; i++) p[i] = a[i];
            return p;
        }

        private static float* Rand(Random rng, long n)
        {
            float* p = (float*)NativeMemory.AlignedAlloc((nuint)(n * sizeof(float)), 64);
            for (long i = 0; i < n; i++) p[i] = (float)(rng.NextDouble() - 0.5);
            return p;
        }

        public HstuAttentionArgs Args(bool target)
            => new(Instances, _off, _kind, _time, target ? _tq : null, target ? _nt : _n, Heads, _g, Dqk, Dv);

        // Row layout of _x: [U | Q | K | V].
        private float* QPtr(bool target, out int ldq)
        {
            ldq = target ? Heads * Dqk : _ld;
            return target ? _qt : _x + Heads * Dv;
        }

        private float* K => _x + Heads * Dv + Heads * Dqk;
        private float* V => _x + Heads * Dv + Heads * Dqk + _g * Dqk;

        public void Forward(CpuWorkerPool? pool, bool target)
        {
            float* q = QPtr(target, out int ldq);
            CpuHstuAttention.Forward(pool, Args(target), q, ldq, K, _ld, V, _ld, _rab, _o, Heads * Dv);
        }

        public void Backward(CpuWorkerPool? pool, bool target)
        {
            float* q = QPtr(target, out int ldq);
            CpuHstuAttention.Backward(pool, Args(target), q, ldq, K, _ld, V, _ld, _rab,
                _do, Heads * Dv, _dq, Heads * Dqk, _dk, _g * Dqk, _dv, _g * Dv, _drab);
        }

        public void Dispose()
        {
            NativeMemory.Free(_off); NativeMemory.Free(_tq); NativeMemory.Free(_kind); NativeMemory.Free(_time);
            foreach (var p in new[] { (nint)_x, (nint)_qt, (nint)_rab, (nint)_o, (nint)_do, (nint)_dq, (nint)_dk, (nint)_dv, (nint)_drab })
                NativeMemory.AlignedFree((void*)p);
        }
    }

    private sealed class GflopsConfig : ManualConfig
    {
        public GflopsConfig() => AddColumn(new GflopsColumn());
    }

    /// <summary>GFLOP/s from the mean time and <see cref="Flops"/>.</summary>
    private sealed class GflopsColumn : IColumn
    {
        private readonly Dictionary<(string, int), double> _cache = new();

        public string Id => "GFLOPs";
        public string ColumnName => "GFLOP/s";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 0;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => "2 flops per multiply-add over the visible (query, key) pairs, divided by the mean time";
        public bool IsAvailable(Summary summary) => true;
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            var report = summary[benchmarkCase];
            if (report?.ResultStatistics is null) return "-";
            string method = benchmarkCase.Descriptor.WorkloadMethod.Name;
            int g = (int)benchmarkCase.Parameters["KvHeads"]!;
            if (!_cache.TryGetValue((method, g), out double flops)) _cache[(method, g)] = flops = Flops(method, g);
            return (flops / report.ResultStatistics.Mean).ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
        }
    }
}
