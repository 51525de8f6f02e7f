using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Native;
using Mtfm.Engine.Tensors;
using static Mtfm.Tests.Cuda.CudaTestDevice;

namespace Mtfm.Tests.Cuda;

/// <summary>
/// What the op table (<see cref="Mtfm.Tests.Backends.OpTable"/>, which compares every <see cref="IBackend"/> op of
/// every backend with <see cref="CpuBackend"/>(1)) does not cover for <see cref="CudaBackend"/>: every time-bucket
/// count, times at the ends of the 64-bit range, the bounded attention-layout caches, no host synchronisation, and
/// the whole model's loss and gradients against the CPU's.
/// </summary>
public sealed class CudaBackendTests
{
    private sealed class Pair : IDisposable
    {
        public required CpuBackend Cpu;
        public required CudaBackend Gpu;

        public (Tensor C, Tensor G) Both(float[] data, params int[] shape) => (Cpu.FromHost<float>(data, shape), Gpu.FromHost<float>(data, shape));

        public (Tensor C, Tensor G) BothI(int[] data, params int[] shape) => (Cpu.FromHost<int>(data, shape), Gpu.FromHost<int>(data, shape));

        public (Tensor C, Tensor G) BothL(long[] data, params int[] shape) => (Cpu.FromHost<long>(data, shape), Gpu.FromHost<long>(data, shape));

        public (Tensor C, Tensor G) Random(Random rng, float lo, float hi, params int[] shape)
        {
            long n = 1;
            foreach (var d in shape) n *= d;
            return Both(RandomFloats(rng, (int)n, lo, hi), shape);
        }

        public void Same((Tensor C, Tensor G) t, float rtol, float atol, string what) =>
            AssertClose(Cpu.ToHost<float>(t.C), Gpu.ToHost<float>(t.G), rtol, atol, what);

        public void Exact((Tensor C, Tensor G) t, string what) => Assert.Equal(Cpu.ToHost<float>(t.C), Gpu.ToHost<float>(t.G));

        public void Dispose()
        {
            Gpu.Dispose();
            Cpu.Dispose();
        }
    }

    private static Pair Open(string kind) => new() { Gpu = OpenBackend(kind), Cpu = new CpuBackend(1) }; // GPU first: it may skip

    /// <summary>
    /// Every bucket count MtfmConfig.TimeBuckets allows: NB = 33 and 128 (2·NB − 1 = 65 and 255 bucket sums per
    /// tile, the latter more than the backward's 128 threads per block). Times spread over ~10⁶ s at unit 1 s and H
    /// queries seeing later H keys (dt &lt; 0) put pairs into buckets up to NB − 1 + 20.
    /// </summary>
    [Theory]
    [InlineData(Emulated, 33)]
    [InlineData(Emulated, 128)]
    [InlineData(Gpu, 128)]
    public void HstuAttentionBackwardMatchesTheCpuForEveryBucketCount(string kind, int nb)
    {
        using var p = Open(kind);
        var rng = new Random(nb);
        int h = 2, g = 1, dqk = 4, dv = 3;
        var offsets = new List<int> { 0 };
        var kinds = new List<byte>();
        var time = new List<long>();
        foreach (var (nh, nr, nt) in new[] { (20, 6, 3), (0, 2, 1), (35, 0, 2) })
        {
            foreach (var t in Enumerable.Range(0, nh).Select(_ => 1_000_000L - rng.Next(0, 999_000)).Order()) { kinds.Add(0); time.Add(t); }
            long tt = 1_000_000;
            for (int i = 0; i < nr; i++) { kinds.Add(1); tt += rng.Next(0, 50); time.Add(tt); }
            foreach (var t in Enumerable.Range(0, nt).Select(_ => tt + rng.Next(0, 50)).Order()) { kinds.Add(2); time.Add(t); }
            offsets.Add(kinds.Count);
        }
        using var layout = new AttentionLayout([.. offsets], [.. kinds], [.. time], nb, 1);
        int n = layout.TokenCount;
        foreach (var target in new[] { false, true })
        {
            int rows = target ? layout.TargetTokens.Length : n;
            var q = p.Random(rng, -1, 1, rows, h * dqk);
            var k = p.Random(rng, -1, 1, n, g * dqk);
            var v = p.Random(rng, -1, 1, n, g * dv);
            var rab = p.Random(rng, -0.5f, 0.5f, h, layout.RabWidth);
            var dO = p.Random(rng, -1, 1, rows, h * dv);
            var dq = p.Random(rng, -1, 1, rows, h * dqk);
            var dk = p.Random(rng, -1, 1, n, g * dqk);
            var dvv = p.Random(rng, -1, 1, n, g * dv);
            var drab = p.Random(rng, 0, 0, h, layout.RabWidth);
            p.Cpu.HstuAttentionBackward(layout, target, h, g, q.C, k.C, v.C, rab.C, dO.C, dq.C, dk.C, dvv.C, drab.C);
            p.Gpu.HstuAttentionBackward(layout, target, h, g, q.G, k.G, v.G, rab.G, dO.G, dq.G, dk.G, dvv.G, drab.G);
            p.Same(dq, 1e-4f, 1e-5f, $"NB={nb} target={target} dq");
            p.Same(dk, 1e-4f, 1e-5f, $"NB={nb} target={target} dk");
            p.Same(dvv, 1e-4f, 1e-5f, $"NB={nb} target={target} dv");
            p.Same(drab, 1e-4f, 1e-5f, $"NB={nb} target={target} drab");
            var cpuDrab = p.Cpu.ToHost<float>(drab.C);
            // H queries see later H keys (dt < 0): buckets NB − 1 + m are reached, for NB = 128 beyond the 128 threads
            int high = Math.Min(nb, 128);
            if (!target) Assert.Contains(Enumerable.Range(high, layout.RabWidth - high), b => cpuDrab[b] != 0f);
        }
    }

    /// <summary>
    /// Times at the ends of the 64-bit range: |dt| reaches 2^64 − 1, where a signed difference overflows. The kernels form
    /// |dt| in unsigned arithmetic like the CPU, so forward, backward and the rab gradient's buckets match it (with
    /// NB = 128 the saturating bucket 1 + 64 and its dt &lt; 0 twin are reached; with a signed difference they were not).
    /// </summary>
    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void AttentionTimeBucketsAreExactAtTheEndsOfTheTimeRange(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(64);
        int h = 2, g = 1, dqk = 4, dv = 3, nb = 128;
        // one instance: H at the minimum time and just above it, R/T at the maximum (dt ≥ 2^63 between them)
        byte[] kinds = [0, 0, 0, 1, 1, 2, 2];
        long[] time = [long.MinValue, long.MinValue + 1, 0, long.MaxValue - 1, long.MaxValue - 1, long.MaxValue, long.MaxValue];
        using var layout = new AttentionLayout([0, kinds.Length], kinds, time, nb, 1);
        int n = layout.TokenCount;
        foreach (var target in new[] { false, true })
        {
            int rows = target ? layout.TargetTokens.Length : n;
            var q = p.Random(rng, -1, 1, rows, h * dqk);
            var k = p.Random(rng, -1, 1, n, g * dqk);
            var v = p.Random(rng, -1, 1, n, g * dv);
            var rab = p.Random(rng, -0.5f, 0.5f, h, layout.RabWidth);
            var o = p.Random(rng, 0, 0, rows, h * dv);
            p.Cpu.HstuAttention(layout, target, h, g, q.C, k.C, v.C, rab.C, o.C);
            p.Gpu.HstuAttention(layout, target, h, g, q.G, k.G, v.G, rab.G, o.G);
            p.Same(o, 1e-4f, 1e-5f, $"extreme times target={target} o");
            var dO = p.Random(rng, -1, 1, rows, h * dv);
            var dq = p.Random(rng, 0, 0, rows, h * dqk);
            var dk = p.Random(rng, 0, 0, n, g * dqk);
            var dvv = p.Random(rng, 0, 0, n, g * dv);
            var drab = p.Random(rng, 0, 0, h, layout.RabWidth);
            p.Cpu.HstuAttentionBackward(layout, target, h, g, q.C, k.C, v.C, rab.C, dO.C, dq.C, dk.C, dvv.C, drab.C);
            p.Gpu.HstuAttentionBackward(layout, target, h, g, q.G, k.G, v.G, rab.G, dO.G, dq.G, dk.G, dvv.G, drab.G);
            p.Same(dq, 1e-4f, 1e-5f, $"extreme times target={target} dq");
            p.Same(dk, 1e-4f, 1e-5f, $"extreme times target={target} dk");
            p.Same(drab, 1e-4f, 1e-5f, $"extreme times target={target} drab");
            var cpuDrab = p.Cpu.ToHost<float>(drab.C);
            Assert.NotEqual(0f, cpuDrab[1 + 64]); // T/R queries at 2^63 − 1 seeing H keys at −2^63: |dt| = 2^64 − 1
            if (!target) Assert.NotEqual(0f, cpuDrab[nb - 1 + 64]); // H at −2^63 seeing the H key at 0: |dt| = 2^63, dt < 0
        }
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void AttentionLayoutCachesAreBoundedAndReturnTheirMemory(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(9);
        long rentedBefore = p.Gpu.Pool.RentedBytes;
        var layouts = new List<AttentionLayout>();
        for (int i = 0; i < CudaBackend.MaxLayoutCaches + 4; i++)
        {
            var layout = Mtfm.Tests.Backends.OpTable.AttentionLayoutFor(rng, [(2, 3, 1), (1, 2, 2)]);
            layouts.Add(layout);
            int n = layout.TokenCount;
            using var q = p.Gpu.FromHost<float>(RandomFloats(rng, n * 4, -1, 1), n, 4);
            using var rab = p.Gpu.FromHost<float>(new float[2 * layout.RabWidth], 2, layout.RabWidth);
            using var o = p.Gpu.Allocate(DType.Float32, [n, 4]);
            p.Gpu.HstuAttention(layout, false, 2, 2, q, q, q, rab, o);
        }
        Assert.Equal(CudaBackend.MaxLayoutCaches, p.Gpu.LayoutCacheCount);
        Assert.Null(layouts[0].DeviceCache);  // evicted (and detached): a later use rebuilds it
        Assert.NotNull(layouts[^1].DeviceCache);
        foreach (var l in layouts) l.Dispose();
        Assert.Equal(0, p.Gpu.LayoutCacheCount);
        Assert.Equal(rentedBefore, p.Gpu.Pool.RentedBytes);
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void NoOpSynchronisesExceptDownloadAndMemoryReturns(string kind)
    {
        using var p = Open(kind);
        var rng = new Random(8);
        long live = p.Gpu.LiveAllocations, bytes = p.Gpu.LiveBytes;
        long syncs = p.Gpu.Driver.SynchronizationCount;
        using (var scope = new TensorScope(p.Gpu))
        {
            var x = scope.Adopt(p.Gpu.FromHost<float>(RandomFloats(rng, 60, -1, 1), 12, 5));
            var ids = scope.Adopt(p.Gpu.FromHost<int>([3, 1, 3, 0, 11], 5));
            var y = scope.Adopt(p.Gpu.Allocate(DType.Float32, [5, 5]));
            p.Gpu.GatherRows(x, ids, y);
            p.Gpu.ScatterAddRows(y, ids, x);
            var (u, inv) = p.Gpu.UniqueIndices(ids);
            scope.Adopt(u);
            scope.Adopt(inv);
            var s = scope.Adopt(p.Gpu.Allocate(DType.Float32, [1]));
            p.Gpu.SumAll(x, 1f, s);
            Assert.Equal(syncs, p.Gpu.Driver.SynchronizationCount);
            _ = p.Gpu.ToHost<float>(s);
            Assert.Equal(syncs + 1, p.Gpu.Driver.SynchronizationCount);
        }
        Assert.Equal(live, p.Gpu.LiveAllocations);
        Assert.Equal(bytes, p.Gpu.LiveBytes);
    }

    [Theory]
    [InlineData(Emulated, MtfmConfig.DefaultTimeBuckets)]
    [InlineData(Gpu, MtfmConfig.DefaultTimeBuckets)]
    [InlineData(Emulated, 128)] // the largest bucket count the config allows (255 rab entries per head)
    public void MtfmModelLossAndGradientsMatchTheCpu(string kind, int timeBuckets)
    {
        using var p = Open(kind);
        var ds = SyntheticGenerator.Generate(SyntheticConfig.Tiny);
        var st = ds.Store;
        var agg = UserLevelAggregator.Aggregate(st, part: SplitPart.Train);
        var stats = st.ComputeNumericStats(st.Layout.Schema.Split!.ValidStart);
        var batch = new BatchBuilder(agg, stats).Batches(maxTokens: 160, shuffleSeed: 3).First();
        var config = MtfmConfig.Tiny with { DModel = 16, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 8, TowerWidth = 8, EmbeddingDim = 8, TokenizerHidden = 16, TimeBuckets = timeBuckets };
        using var mc = new MtfmModel(p.Cpu, config, st.Layout, 11);
        using var mg = new MtfmModel(p.Gpu, config, st.Layout, 11);
        long syncs = p.Gpu.Driver.SynchronizationCount;
        using var tc = new Tape(p.Cpu);
        using var tg = new Tape(p.Gpu);
        var oc = mc.Forward(tc, batch);
        var og = mg.Forward(tg, batch);
        tc.Backward(oc.Loss);
        tg.Backward(og.Loss);
        Assert.Equal(syncs, p.Gpu.Driver.SynchronizationCount); // a whole forward + backward without a host sync
        float lc = p.Cpu.ToHost<float>(oc.Loss.Value)[0], lg = p.Gpu.ToHost<float>(og.Loss.Value)[0];
        Assert.True(float.IsFinite(lc) && lc > 0, $"cpu loss {lc}");
        Assert.True(Math.Abs(lc - lg) <= 1e-5f + 1e-4f * Math.Abs(lc), $"loss cpu {lc:R} vs cuda {lg:R}");
        int compared = 0;
        for (int i = 0; i < mc.Parameters.Count; i++)
        {
            var pc = mc.Parameters[i];
            var pg = mg.Parameters[i];
            Assert.Equal(pc.Name, pg.Name);
            Assert.Equal(pc.Grad is null, pg.Grad is null);
            if (pc.Grad is not null)
            {
                var gc = p.Cpu.ToHost<float>(pc.Grad);
                float scale = gc.Length == 0 ? 0 : gc.Max(Math.Abs);
                AssertClose(gc, p.Gpu.ToHost<float>(pg.Grad!), 1e-3f, 1e-4f * scale + 1e-7f, $"dense grad of {pc.Name}");
                compared++;
            }
            Assert.Equal(pc.SparseGradient is null, pg.SparseGradient is null);
            if (pc.SparseGradient is { } sc)
            {
                var sg = pg.SparseGradient!;
                Assert.Equal(p.Cpu.ToHost<int>(sc.Indices), p.Gpu.ToHost<int>(sg.Indices));
                var vc = p.Cpu.ToHost<float>(sc.Values);
                float scale = vc.Length == 0 ? 0 : vc.Max(Math.Abs);
                AssertClose(vc, p.Gpu.ToHost<float>(sg.Values), 1e-3f, 1e-4f * scale + 1e-7f, $"sparse grad of {pc.Name}");
                compared++;
            }
        }
        Assert.True(compared > 20, $"only {compared} gradients compared");

        // Bitwise repeatable on the device: a second model from the same seed gives the same loss and gradients.
        using var mg2 = new MtfmModel(p.Gpu, config, st.Layout, 11);
        using var tg2 = new Tape(p.Gpu);
        var og2 = mg2.Forward(tg2, batch);
        tg2.Backward(og2.Loss);
        Assert.Equal(lg, p.Gpu.ToHost<float>(og2.Loss.Value)[0]);
        for (int i = 0; i < mg.Parameters.Count; i++)
        {
            if (mg.Parameters[i].Grad is { } a) Assert.Equal(p.Gpu.ToHost<float>(a), p.Gpu.ToHost<float>(mg2.Parameters[i].Grad!));
            if (mg.Parameters[i].SparseGradient is { } sa) Assert.Equal(p.Gpu.ToHost<float>(sa.Values), p.Gpu.ToHost<float>(mg2.Parameters[i].SparseGradient!.Values));
        }
    }
}
