using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Bench.Cuda;

/// <summary>
/// A jagged MTFM-like attention batch (the distribution of <see cref="AttentionBenchmarks"/>): per instance (user-window)
/// H, R and T tokens drawn uniformly from the given ranges, H times up to 180 days before the window, R times with gaps
/// of 0–30 min, half of the T times equal to an R time. Visible (query, key) pairs counted exactly
/// (<see cref="CpuHstuAttention.CountVisiblePairs"/>, the visibility rule of spec §4).
/// </summary>
internal sealed unsafe class AttentionBatch
{
    public AttentionBatch(int instances, (int Lo, int Hi) h, (int Lo, int Hi) r, (int Lo, int Hi) t, int seed = 42)
    {
        var rng = new Random(seed);
        var kinds = new List<byte>();
        var times = new List<long>();
        var offs = new List<int> { 0 };
        for (int b = 0; b < instances; b++)
        {
            int nh = rng.Next(h.Lo, h.Hi + 1), nr = rng.Next(r.Lo, r.Hi + 1), nt = rng.Next(t.Lo, t.Hi + 1);
            long w = 1_700_000_000 + b * 86400L;
            for (int i = 0; i < nh; i++) { kinds.Add(0); times.Add(w - 1 - rng.NextInt64(0, 180L * 86400)); }
            long now = w;
            var rt = new List<long>();
            for (int i = 0; i < nr; i++) { now += rng.Next(0, 1800); rt.Add(now); kinds.Add(1); times.Add(now); }
            var tt = Enumerable.Range(0, nt)
                .Select(_ => rng.Next(2) == 0 && rt.Count > 0 ? rt[rng.Next(rt.Count)] : w + rng.NextInt64(0, 86400)).Order().ToList();
            foreach (long x in tt) { kinds.Add(2); times.Add(x); }
            offs.Add(kinds.Count);
        }
        Offsets = offs.ToArray();
        Kind = kinds.ToArray();
        Times = times.ToArray();
        Targets = Enumerable.Range(0, Kind.Length).Where(i => Kind[i] == 2).ToArray();
    }

    public int[] Offsets { get; }
    public byte[] Kind { get; }
    public long[] Times { get; }
    public int[] Targets { get; }
    public int Instances => Offsets.Length - 1;
    public int Tokens => Kind.Length;

    /// <summary>A fresh layout over the batch (the backend caches its device copy on it).</summary>
    public AttentionLayout Layout() => new(Offsets, Kind, Times);

    /// <summary>Visible (query, key) pairs of the full (all tokens query) or target (T tokens query) form.</summary>
    public long VisiblePairs(bool target, int heads, int kvHeads, int dqk, int dv)
    {
        fixed (int* off = Offsets)
        fixed (byte* kind = Kind)
        fixed (long* time = Times)
        fixed (int* tq = Targets)
            return CpuHstuAttention.CountVisiblePairs(new HstuAttentionArgs(Instances, off, kind, time, target ? tq : null,
                target ? Targets.Length : Tokens, heads, kvHeads, dqk, dv));
    }

    /// <summary>Forward flops: 2 per multiply-add of QKᵀ and AV over the visible pairs, per query head (as FlopCounter).</summary>
    public static double ForwardFlops(long pairs, int heads, int dqk, int dv) => 2.0 * pairs * heads * (dqk + dv);

    public override string ToString() =>
        $"{Instances} instances, {Tokens} tokens ({Targets.Length} T), mean {Tokens / (double)Math.Max(1, Instances):F0} tokens/instance";
}
