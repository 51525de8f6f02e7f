using Mtfm.Engine.Backends.Cuda;
using static Mtfm.Tests.Cuda.CudaTestDevice;

namespace Mtfm.Tests.Cuda;

/// <summary>
/// The bf16 tensor-core attention forward (<c>hstu_attention_bf16.cu</c>) against a direct fp64 reference of spec
/// §4–5. bf16 operands (8 significant bits) put the relative-norm error ‖out − ref‖ / ‖ref‖ between about 1e-3 and
/// 1e-2 (measured on the emulation: 2–4e-3), so the bound is 1.5e-2; the output must also differ from the fp32 kernel's
/// (the bf16 path really ran) and every element must be written (the output is NaN-poisoned before the launch).
/// </summary>
public sealed class HstuAttentionBf16KernelTests(ITestOutputHelper output)
{
    /// <summary>fp64 reference (inputs are the fp32 values; nothing rounded to bf16).</summary>
    internal static double[] Reference(AttentionTestBatch b, int[] queryTokens, float[] q, float[] k, float[] v, float[]? rab, int h,
        int g, int dqk, int dv, int nb, long unit, double alpha)
    {
        var outp = new double[queryTokens.Length * h * dv];
        for (var r = 0; r < queryTokens.Length; r++)
        {
            var qt = queryTokens[r];
            var inst = 0;
            while (b.Offsets[inst + 1] <= qt)
                inst++;
            for (var hd = 0; hd < h; hd++)
            {
                var kv = hd / (h / g);
                var n = 0;
                var acc = new double[dv];
                for (var kt = b.Offsets[inst]; kt < b.Offsets[inst + 1]; kt++)
                {
                    if (!b.Visible(qt, kt))
                        continue;
                    n++;
                    var dot = 0.0;
                    for (var c = 0; c < dqk; c++)
                        dot += (double)q[(r * h + hd) * dqk + c] * k[(kt * g + kv) * dqk + c];
                    var s = alpha * dot + (rab is null ? 0 : rab[hd * (2 * nb - 1) + AttentionTestBatch.Bucket(b.Times[qt] - b.Times[kt], nb, unit)]);
                    var a = s / (1 + Math.Exp(-s));
                    for (var c = 0; c < dv; c++)
                        acc[c] += a * v[(kt * g + kv) * dv + c];
                }
                for (var c = 0; c < dv; c++)
                    outp[(r * h + hd) * dv + c] = acc[c] / Math.Max(n, 1);
            }
        }
        return outp;
    }

    internal static double RelativeNormError(float[] got, double[] want)
    {
        double num = 0, den = 0;
        for (var i = 0; i < want.Length; i++)
        {
            num += (got[i] - want[i]) * (got[i] - want[i]);
            den += want[i] * want[i];
        }
        return den == 0 ? (num == 0 ? 0 : double.PositiveInfinity) : Math.Sqrt(num / den);
    }

    private sealed class Case(CudaTestDevice dev, AttentionTestBatch batch, bool targetOnly, int h, int g, int dqk, int dv, float[]? rab,
        float[] q, float[] k, float[] v)
    {
        public const int Nb = 8;
        public const long Unit = 2;
        public readonly int[] QueryTokens = targetOnly
            ? Enumerable.Range(0, batch.Kinds.Length).Where(t => batch.Kinds[t] == 2).ToArray()
            : Enumerable.Range(0, batch.Kinds.Length).ToArray();
        public int OutLength => QueryTokens.Length * h * dv;
        public float Alpha => 1f / MathF.Sqrt(dqk);

        public double[] Reference() =>
            HstuAttentionBf16KernelTests.Reference(batch, QueryTokens, q, k, v, rab, h, g, dqk, dv, Nb, Unit, Alpha);

        /// <summary>Runs the bf16 (or the fp32) forward on a NaN-poisoned output and returns it.</summary>
        public float[] Run(bool bf16)
        {
            var plan = HstuAttentionPlan.Build(batch.Offsets, targetOnly ? QueryTokens : null,
                bf16 ? CudaOps.HstuAttentionBf16TileSize : CudaOps.HstuAttentionTileSize(dqk, dv));
            ulong pq = dev.Up(q), pk = dev.Up(k), pv = dev.Up(v), prab = rab is null ? 0 : dev.Up(rab),
                pkinds = dev.Up(batch.Kinds), ptimes = dev.Up(batch.Times), pqt = dev.Up(QueryTokens),
                ptiles = dev.Up(plan.Tiles), pout = dev.Up(Enumerable.Repeat(float.NaN, Math.Max(1, OutLength)).ToArray());
            if (bf16)
                dev.Ops.HstuAttentionForwardBf16(pq, pk, pv, prab, pkinds, ptimes, targetOnly ? pqt : 0, ptiles, plan, pout,
                    h, g, dqk, dv, Nb, Unit, Alpha, dev.Stream);
            else
                dev.Ops.HstuAttentionForward(pq, pk, pv, prab, pkinds, ptimes, targetOnly ? pqt : 0, ptiles, plan, pout,
                    h, g, dqk, dv, Nb, Unit, Alpha, dev.Stream);
            var r = dev.Down<float>(pout, OutLength);
            foreach (var p in new[] { pq, pk, pv, prab, pkinds, ptimes, pqt, ptiles, pout })
                if (p != 0)
                    dev.Driver.Free(p);
            return r;
        }
    }

    private static Case RandomCase(CudaTestDevice dev, Random rng, AttentionTestBatch batch, bool targetOnly, int h, int g, int dqk,
        int dv, bool withRab)
    {
        var nq = targetOnly ? batch.Kinds.Count(x => x == 2) : batch.Kinds.Length;
        var tokens = batch.Kinds.Length;
        return new Case(dev, batch, targetOnly, h, g, dqk, dv,
            withRab ? RandomFloats(rng, h * (2 * Case.Nb - 1), -0.5f, 0.5f) : null,
            RandomFloats(rng, nq * h * dqk, -1, 1), RandomFloats(rng, tokens * g * dqk, -1, 1),
            RandomFloats(rng, tokens * g * dv, -1, 1));
    }

    // instance sizes that are multiples of no tile, empty instances, one of 97 tokens (two query tiles, several key tiles)
    private static readonly (int, int, int)[] Counts = [(5, 7, 9), (0, 0, 0), (40, 3, 37), (1, 0, 1), (0, 6, 2), (30, 20, 47), (3, 2, 0), (0, 0, 0)];

    [Theory]
    [InlineData(Emulated, false, 3, 1, 16, 16, true)]
    [InlineData(Emulated, true, 3, 1, 16, 16, true)]
    [InlineData(Emulated, false, 4, 2, 24, 20, true)]
    [InlineData(Emulated, true, 4, 4, 32, 32, false)]
    [InlineData(Emulated, false, 2, 1, 64, 64, true)]
    [InlineData(Emulated, true, 4, 2, 9, 7, true)]
    [InlineData(Emulated, false, 2, 2, 200, 150, true)]
    [InlineData(Emulated, true, 2, 1, 64, 130, true)]
    [InlineData(Emulated, true, 2, 1, 224, 128, true)]
    [InlineData(Gpu, false, 3, 1, 16, 16, true)]
    [InlineData(Gpu, true, 3, 1, 16, 16, true)]
    [InlineData(Gpu, false, 4, 2, 24, 20, true)]
    [InlineData(Gpu, true, 4, 4, 32, 32, false)]
    [InlineData(Gpu, false, 2, 1, 64, 64, true)]
    [InlineData(Gpu, true, 4, 2, 9, 7, true)]
    [InlineData(Gpu, false, 2, 2, 200, 150, true)]
    [InlineData(Gpu, true, 2, 1, 64, 130, true)]
    // 64-key tile: 48,128 B of dynamic shared memory + the static arrays > 48 KiB: the driver must opt in
    [InlineData(Gpu, true, 2, 1, 224, 128, true)]
    public void MatchesTheFp64ReferenceWithinTheBf16Range(string kind, bool targetOnly, int h, int g, int dqk, int dv, bool withRab)
    {
        using var dev = Open(kind);
        var rng = new Random(31 + h * 7 + dqk + dv);
        var c = RandomCase(dev, rng, AttentionTestBatch.Make(rng, Counts), targetOnly, h, g, dqk, dv, withRab);
        var want = c.Reference();
        var got = c.Run(bf16: true);
        Assert.All(got, x => Assert.True(float.IsFinite(x), "an output element was not written (NaN poison) or is not finite"));
        var err = RelativeNormError(got, want);
        output.WriteLine($"{kind} target={targetOnly} h={h} g={g} dqk={dqk} dv={dv}: rel-norm error bf16 {err:E3}, fp32 kernel {RelativeNormError(c.Run(bf16: false), want):E3}");
        Assert.True(err < 1.5e-2, $"relative-norm error {err:E3} is above the bf16 bound 1.5e-2");
        Assert.NotEqual(c.Run(bf16: false), got); // the bf16 path really ran
        Assert.True(err > 1e-5, $"relative-norm error {err:E3} is fp32-like: did the bf16 path run?");
    }

    [Theory]
    [InlineData(Emulated, 32, 32)]
    [InlineData(Emulated, 256, 130)]
    [InlineData(Gpu, 32, 32)]
    [InlineData(Gpu, 256, 130)]
    public void InvisibleKeyTilesAreSkippedUnread(string kind, int dqk, int dv)
    {
        // Target layer. Instance 0: 10 H, 54 early R, 64 R later than every T, 5 T; instance 1: 3 H, 40 late R, 2 T.
        // With key tiles of 64 (dqk 32) or 32 (dqk 256) from each instance's start, the late-R tiles of instance 0 are
        // invisible to every query: their K and V are NaN and reading them would make outputs NaN (0·NaN).
        using var dev = Open(kind);
        var offsets = new List<int> { 0 };
        var kinds = new List<int>();
        var times = new List<long>();
        void Add(int k, int n, long t0)
        {
            for (var i = 0; i < n; i++)
            {
                kinds.Add(k);
                times.Add(t0 + i);
            }
        }
        Add(0, 10, 100); Add(1, 54, 1000); Add(1, 64, 9000); Add(2, 5, 2000); offsets.Add(kinds.Count);
        Add(0, 3, 100); Add(1, 40, 9000); Add(2, 2, 2000); offsets.Add(kinds.Count);
        var batch = new AttentionTestBatch([.. offsets], [.. kinds], [.. times]);
        const int h = 2, g = 1;
        var bk = CudaOps.HstuAttentionBf16KeyTile(dqk, dv);
        Assert.Equal(dqk == 32 ? 64 : 32, bk);
        var rng = new Random(5);
        var q = RandomFloats(rng, 7 * h * dqk, -1, 1);
        var kk = RandomFloats(rng, kinds.Count * g * dqk, -1, 1);
        var vv = RandomFloats(rng, kinds.Count * g * dv, -1, 1);
        for (var t = 64; t < 128; t++)
        {
            Array.Fill(kk, float.NaN, t * g * dqk, g * dqk);
            Array.Fill(vv, float.NaN, t * g * dv, g * dv);
        }
        var poisoned = new Case(dev, batch, true, h, g, dqk, dv, RandomFloats(rng, h * (2 * Case.Nb - 1), -0.5f, 0.5f), q, kk, vv);
        var got = poisoned.Run(bf16: true);
        Assert.All(got, x => Assert.True(float.IsFinite(x), "a NaN key of an invisible tile was read (or an output was not written)"));
        var err = RelativeNormError(got, poisoned.Reference());
        output.WriteLine($"{kind} invisible NaN tiles, dqk={dqk}: rel-norm error {err:E3}");
        Assert.True(err < 1.5e-2, $"relative-norm error {err:E3}");
    }

    [Fact]
    public void BitwiseIdenticalAcrossEmulationSchedules()
    {
        using var dev = Open(Emulated);
        var emu = (EmulatedCudaDriver)dev.Driver;
        var rng = new Random(77);
        var c = RandomCase(dev, rng, AttentionTestBatch.Make(rng, Counts), false, 2, 1, 24, 20, true);
        float[] forward, reverse, random;
        lock (CudaDriverTests.ScheduleLock)
        {
            try
            {
                emu.SetSchedule(EmulatedSchedule.Forward);
                forward = c.Run(bf16: true);
                emu.SetSchedule(EmulatedSchedule.Reverse);
                reverse = c.Run(bf16: true);
                emu.SetSchedule(EmulatedSchedule.Random, 99);
                random = c.Run(bf16: true);
            }
            finally
            {
                emu.SetSchedule(EmulatedSchedule.Forward);
            }
        }
        Assert.Equal(forward, reverse);
        Assert.Equal(forward, random);
        Assert.Equal(forward, c.Run(bf16: true));
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void EmptyWorkLaunchesNothingAndBadArgumentsAreRejected(string kind)
    {
        using var dev = Open(kind);
        var empty = HstuAttentionPlan.Build([0, 0, 0], null, CudaOps.HstuAttentionBf16TileSize);
        Assert.Equal(0, empty.NumTiles);
        var pout = dev.Up(new[] { 3f });
        dev.Ops.HstuAttentionForwardBf16(0, 0, 0, 0, 0, 0, 0, 0, empty, pout, 2, 1, 16, 16, 8, 1, 0.25f, dev.Stream);
        Assert.Equal(3f, dev.Down<float>(pout, 1)[0]);

        var plan = HstuAttentionPlan.Build([0, 5], null, CudaOps.HstuAttentionBf16TileSize);
        var e = Assert.Throws<NotSupportedException>(() =>
            dev.Ops.HstuAttentionForwardBf16(0, 0, 0, 0, 0, 0, 0, 0, plan, pout, 1, 1, 300, 16, 8, 1, 0.1f, dev.Stream));
        Assert.Contains("dqk = 300", e.Message);
        var wrongTile = HstuAttentionPlan.Build([0, 5], null, 32);
        var e2 = Assert.Throws<ArgumentException>(() =>
            dev.Ops.HstuAttentionForwardBf16(0, 0, 0, 0, 0, 0, 0, 0, wrongTile, pout, 1, 1, 16, 16, 8, 1, 0.25f, dev.Stream));
        Assert.Equal("plan", e2.ParamName);
        Assert.Throws<ArgumentException>(() =>
            dev.Ops.HstuAttentionForwardBf16(0, 0, 0, 0, 0, 0, 0, 0, plan, pout, 3, 2, 16, 16, 8, 1, 0.25f, dev.Stream));
        Assert.Throws<ArgumentOutOfRangeException>(() => HstuAttentionPlan.Build([0, 5], null, 65));
    }

    [Theory]
    [InlineData(16, 16, 64)]
    [InlineData(64, 64, 64)]
    [InlineData(128, 128, 64)]
    [InlineData(200, 150, 64)]
    [InlineData(256, 130, 32)]
    [InlineData(256, 256, 32)]
    public void KeyTileAndSharedMemoryFitTheDefault48KiB(int dqk, int dv, int keyTile)
    {
        Assert.Equal(keyTile, CudaOps.HstuAttentionBf16KeyTile(dqk, dv));
        Assert.True(CudaOps.HstuAttentionBf16SharedBytes(keyTile, dqk, dv) <= 48 * 1024);
        Assert.True(CudaOps.HstuAttentionBf16Supports(dqk, dv));
        Assert.False(CudaOps.HstuAttentionBf16Supports(257, dv));
    }
}
