using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Tests.Attention;

/// <summary>A jagged test batch with its tensors, laid out with row strides larger than the widths (pads = NaN).</summary>
internal sealed class HstuTestBatch
{
    public int[] Offsets = [];
    public byte[] Kind = [];
    public long[] Time = [];
    public int[]? Queries; // null = full layer
    public int H, G, Dqk, Dv, NumBuckets = 32;
    public long Unit = 1;
    public int Ldq, Ldk, Ldv, Ldo;
    public float[] Q = [], K = [], V = [], Rab = [], DO = [];

    public int Batch => Offsets.Length - 1;
    public int N => Offsets[^1];
    public int NumQueries => Queries?.Length ?? N;
    public int QueryToken(int i) => Queries is null ? i : Queries[i];
    public int RabWidth => 2 * NumBuckets - 1;

    /// <summary>Instance specs (nH, nR, nT); times with deliberate ties (R = R, R = T).</summary>
    public static HstuTestBatch Make(int seed, (int nH, int nR, int nT)[] specs, int h, int g, int dqk, int dv,
        bool targetLayer, int numBuckets = 32, long unit = 1, int extraLd = 3, bool hInsideWindow = false)
    {
        var rng = new Random(seed);
        var offsets = new List<int> { 0 };
        var kind = new List<byte>();
        var time = new List<long>();
        foreach (var (nH, nR, nT) in specs)
        {
            long window = 1_700_000_000 + rng.Next(0, 1000) * 86400L;
            // H: several concatenated sequences, each time-ordered, all before the window.
            for (int i = 0; i < nH; i++)
            {
                kind.Add(0);
                // hInsideWindow: H times overlap the R times (not produced by the aggregator, but the rule must hold).
                time.Add(hInsideWindow ? window + rng.NextInt64(-600, 40000) : window - 1 - rng.NextInt64(0, 400L * 86400));
            }
            var rTimes = new List<long>();
            long t = window;
            for (int i = 0; i < nR; i++)
            {
                int pick = rng.Next(6);
                t += pick switch { 0 => 0, 1 => 0, 2 => 1, 3 => rng.Next(2, 60), 4 => rng.Next(60, 3600), _ => rng.Next(3600, 40000) };
                rTimes.Add(t);
                kind.Add(1);
                time.Add(t);
            }
            var tTimes = new List<long>();
            for (int i = 0; i < nT; i++)
            {
                int pick = rng.Next(4);
                if (rTimes.Count > 0 && pick < 2) tTimes.Add(rTimes[rng.Next(rTimes.Count)]); // equal to an R event
                else if (pick == 2 && tTimes.Count > 0) tTimes.Add(tTimes[^1]);               // equal to another T
                else tTimes.Add(window + rng.NextInt64(0, 86400));
            }
            tTimes.Sort();
            foreach (long tt in tTimes)
            {
                kind.Add(2);
                time.Add(tt);
            }
            offsets.Add(kind.Count);
        }
        var bt = new HstuTestBatch
        {
            Offsets = offsets.ToArray(),
            Kind = kind.ToArray(),
            Time = time.ToArray(),
            H = h,
            G = g,
            Dqk = dqk,
            Dv = dv,
            NumBuckets = numBuckets,
            Unit = unit,
        };
        if (targetLayer) bt.Queries = Enumerable.Range(0, bt.N).Where(i => bt.Kind[i] == 2).ToArray();
        bt.Ldq = h * dqk + extraLd; bt.Ldk = g * dqk + extraLd + 1; bt.Ldv = g * dv + extraLd + 2; bt.Ldo = h * dv + extraLd;
        bt.Q = Fill(rng, bt.NumQueries, h * dqk, bt.Ldq, 1.0);
        bt.K = Fill(rng, bt.N, g * dqk, bt.Ldk, 1.0);
        bt.V = Fill(rng, bt.N, g * dv, bt.Ldv, 1.0);
        bt.DO = Fill(rng, bt.NumQueries, h * dv, bt.Ldo, 1.0);
        bt.Rab = new float[h * bt.RabWidth];
        for (int i = 0; i < bt.Rab.Length; i++) bt.Rab[i] = (float)(rng.NextDouble() * 1.6 - 0.8);
        return bt;
    }

    /// <summary>[rows, ld] with the first <paramref name="width"/> columns random in ±scale and the pad columns NaN.</summary>
    public static float[] Fill(Random rng, int rows, int width, int ld, double scale)
    {
        var a = new float[rows * ld];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < ld; c++)
                a[r * ld + c] = c < width ? (float)((rng.NextDouble() * 2 - 1) * scale) : float.NaN;
        return a;
    }

    public const float Sentinel = -12345.5f;

    public unsafe float[] Forward(CpuWorkerPool? pool)
    {
        var o = new float[NumQueries * Ldo];
        Array.Fill(o, Sentinel);
        fixed (int* off = Offsets) fixed (byte* kd = Kind) fixed (long* tm = Time) fixed (int* qt = Queries)
        fixed (float* q = Q, k = K, v = V, rab = Rab, op = o)
        {
            var args = Args(off, kd, tm, qt);
            CpuHstuAttention.Forward(pool, args, q, Ldq, k, Ldk, v, Ldv, rab, op, Ldo);
        }
        return o;
    }

    public unsafe (float[] dQ, float[] dK, float[] dV, float[] dRab) Backward(CpuWorkerPool? pool)
    {
        var dq = new float[NumQueries * Ldq];
        var dk = new float[N * Ldk];
        var dv = new float[N * Ldv];
        var dr = new float[Rab.Length];
        Array.Fill(dq, Sentinel); Array.Fill(dk, Sentinel); Array.Fill(dv, Sentinel); Array.Fill(dr, Sentinel);
        fixed (int* off = Offsets) fixed (byte* kd = Kind) fixed (long* tm = Time) fixed (int* qt = Queries)
        fixed (float* q = Q, k = K, v = V, rab = Rab, dO = DO, dqp = dq, dkp = dk, dvp = dv, drp = dr)
        {
            var args = Args(off, kd, tm, qt);
            CpuHstuAttention.Backward(pool, args, q, Ldq, k, Ldk, v, Ldv, rab, dO, Ldo, dqp, Ldq, dkp, Ldk, dvp, Ldv, drp);
        }
        return (dq, dk, dv, dr);
    }

    public unsafe HstuAttentionArgs Args(int* off, byte* kd, long* tm, int* qt)
        => new(Batch, off, kd, tm, qt, NumQueries, H, G, Dqk, Dv) { NumBuckets = NumBuckets, UnitSeconds = Unit };
}
