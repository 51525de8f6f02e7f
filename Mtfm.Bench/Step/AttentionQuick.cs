using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
#if MTFM_TORCHSHARP
using TorchSharp;
using static TorchSharp.torch;
using TParameter = TorchSharp.Modules.Parameter;
#endif

namespace Mtfm.Bench.Step;

/// <summary>
/// <c>attn-quick</c>: attention forward + backward alone, at the shape of <c>step-quick</c> (<see cref="StepBatch"/>: by
/// default 32 instances of 256 H + 32 R + 64 T tokens; the preset's heads, kv heads and head widths), for a full layer
/// (every token queries) and a target layer (only T tokens query). The engine's fused jagged kernel
/// (<see cref="CpuHstuAttention"/>: visible pairs only, nothing saved by the forward) against LibTorch's dense-mask
/// formulation as <see cref="TorchStep"/> writes it (scores over all [Lq, L] pairs, SiLU, ⊙ mask/n(q), ·V; autograd
/// backward; kv heads repeated to the query heads), interleaved repetition by repetition, same thread count. The mask,
/// 1/n(q) and the bucket indices are built once outside the timed region, which flatters the peer. Before timing, O and
/// every gradient (dQ, dK, dV, dRab) of both are compared; the run stops when they differ by more than 1e-3 relative to
/// the largest magnitude. GFLOP/s count visible pairs only (as <c>step-quick</c>).
/// <code>
/// dotnet run -c Release --project Mtfm.Bench -p:MtfmTorchSharp=true -- attn-quick [--preset small] [--threads 2]
///     [--instances 32] [--h 256] [--r 32] [--t 64] [--warmup 10] [--reps 10]
/// </code>
/// </summary>
internal static unsafe class AttentionQuick
{
    public static int Run(string[] args)
    {
        string preset = StepQuick.Arg(args, "--preset", "small");
        int threads = StepQuick.IntArg(args, "--threads", 2), inst = StepQuick.IntArg(args, "--instances", 32);
        int lh = StepQuick.IntArg(args, "--h", 256), lr = StepQuick.IntArg(args, "--r", 32), lt = StepQuick.IntArg(args, "--t", 64);
        int warm = StepQuick.IntArg(args, "--warmup", 10), reps = StepQuick.IntArg(args, "--reps", 10);
        var c = MtfmConfig.Preset(preset);
        var layout = new DataLayout(SyntheticGenerator.Schema(SyntheticConfig.Default));
        var batch = StepBatch.Build(layout, inst, lh, lr, lt, seed: 7);
        Console.WriteLine($"attn-quick: preset {preset} (h = {c.Heads}, g = {c.KvHeads}, dqk = {c.Dqk}, dv = {c.Dv}), {threads} threads, " +
            $"{inst} instances of {lh} H + {lr} R + {lt} T = {batch.TokenCount:N0} tokens, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load average {StepQuick.LoadAverage()}");
        using var data = new EngineAttention(batch, c);
        using var pool = new CpuWorkerPool(threads);
        var rows = new List<string>();
        double engineBlock = 0, torchBlock = 0;
        int failed = 0;
#if MTFM_TORCHSHARP
        string? why = StepQuick.TorchLoads();
        if (why is not null) Console.WriteLine($"  TorchSharp peer skipped: LibTorch cannot load ({why})");
        else
        {
            torch.set_num_threads(threads);
            torch.set_num_interop_threads(1);
        }
#endif
        foreach (bool target in new[] { false, true })
        {
            string name = target ? "target layer (T queries)" : "full layer (all queries)";
            double flops = data.Flops(target);
            var engineTimes = new List<double>();
            var torchTimes = new List<double>();
            var fwdTimes = new List<double>();
            var bwdTimes = new List<double>();
            Action engineRep = () =>
            {
                long t0 = Stopwatch.GetTimestamp();
                data.Forward(pool, target);
                long t1 = Stopwatch.GetTimestamp();
                data.Backward(pool, target);
                fwdTimes.Add(Stopwatch.GetElapsedTime(t0, t1).TotalMilliseconds);
                bwdTimes.Add(Stopwatch.GetElapsedTime(t1).TotalMilliseconds);
            };
            Action? torchRep = null;
#if MTFM_TORCHSHARP
            TorchAttention? peer = null;
            if (why is null)
            {
                peer = new TorchAttention(data, batch, c, target);
                engineRep();
                peer.Run();
                double err = peer.MaxRelativeDifference(data);
                Console.WriteLine($"  {name}: engine vs LibTorch, largest |Δ| / max |x| over O, dQ, dK, dV, dRab: {err:E2}");
                if (!(err <= 1e-3))
                {
                    Console.WriteLine($"  ERROR: the engine's attention and LibTorch's differ by {err:E2} (> 1e-3); not timing.");
                    failed++;
                    peer.Dispose();
                    continue;
                }
                torchRep = peer.Run;
            }
#else
            Console.WriteLine("  TorchSharp peer skipped: built without -p:MtfmTorchSharp=true");
#endif
            for (int i = 0; i < warm; i++) { engineRep(); torchRep?.Invoke(); }
            for (int i = 0; i < reps; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                engineRep();
                engineTimes.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                if (torchRep is null) continue;
                long t1 = Stopwatch.GetTimestamp();
                torchRep();
                torchTimes.Add(Stopwatch.GetElapsedTime(t1).TotalMilliseconds);
            }
#if MTFM_TORCHSHARP
            peer?.Dispose();
#endif
            double em = StepQuick.Median(engineTimes);
            fwdTimes.RemoveRange(0, fwdTimes.Count - reps); // the timed repetitions only
            bwdTimes.RemoveRange(0, bwdTimes.Count - reps);
            Console.WriteLine($"  {name}, Mtfm fused kernel: forward {StepQuick.Median(fwdTimes):F2} ms, backward {StepQuick.Median(bwdTimes):F2} ms (medians)");
            int weight = target ? c.TargetLayersPerBlock : 1; // one HTA block: 1 full + K target layers
            engineBlock += weight * em;
            rows.Add($"| {name}, Mtfm fused kernel | {em:F2} ({engineTimes.Min():F2}–{engineTimes.Max():F2}) | {flops / em / 1e6:F1} | 1.00 |");
            if (torchTimes.Count > 0)
            {
                double tm = StepQuick.Median(torchTimes);
                torchBlock += weight * tm;
                rows.Add($"| {name}, LibTorch dense mask | {tm:F2} ({torchTimes.Min():F2}–{torchTimes.Max():F2}) | {flops / tm / 1e6:F1} | {tm / em:F2} |");
            }
        }
        Console.WriteLine();
        Console.WriteLine($"Attention forward + backward, median of {reps} interleaved repetitions (after {warm + 1} warm-up), {threads} threads each:");
        Console.WriteLine("| layer, implementation | median ms (min–max) | GFLOP/s (visible pairs) | engine speed-up |");
        Console.WriteLine("|---|---:|---:|---:|");
        foreach (var r in rows) Console.WriteLine(r);
        if (torchBlock > 0)
            Console.WriteLine($"One HTA block (1 full + {c.TargetLayersPerBlock} target layers): engine {engineBlock:F1} ms, LibTorch {torchBlock:F1} ms, " +
                $"engine speed-up {torchBlock / engineBlock:F2}×");
        return failed == 0 ? 0 : 1;
    }

    /// <summary>Q, K, V, rab and dO of one attention call in the engine's row layout (native memory), and its outputs.</summary>
    internal sealed class EngineAttention : IDisposable
    {
        private readonly List<nint> _blocks = new();
        public readonly int Instances, Tokens, Targets, Heads, KvHeads, Dqk, Dv, RabWidth;
        public readonly int* Offsets, TargetTokens;
        public readonly byte* Kind;
        public readonly long* Time;
        // Q rows: every token (full layer); QT: the T tokens' rows of Q (target layer); dO likewise.
        public readonly float* Q, QT, K, V, Rab, DO, DOT, O, DQ, DK, DV, DRab;

        public EngineAttention(JaggedBatch b, MtfmConfig c)
        {
            Instances = b.InstanceCount; Tokens = b.TokenCount; Targets = b.TargetCount;
            Heads = c.Heads; KvHeads = c.KvHeads; Dqk = c.Dqk; Dv = c.Dv;
            RabWidth = HstuAttentionTimeBucket.TableSize(c.TimeBuckets);
            if (c.TimeBuckets != HstuAttentionTimeBucket.DefaultNumBuckets)
                throw new ArgumentException($"attn-quick uses the default {HstuAttentionTimeBucket.DefaultNumBuckets} time buckets; the preset has {c.TimeBuckets}.");
            Offsets = (int*)Alloc((Instances + 1) * 4L);
            for (int i = 0; i <= Instances; i++) Offsets[i] = b.Offsets[i];
            TargetTokens = (int*)Alloc(Math.Max(1, Targets) * 4L);
            for (int j = 0; j < Targets; j++) TargetTokens[j] = b.TargetToken[j];
            Kind = (byte*)Alloc(Tokens);
            Time = (long*)Alloc(Tokens * 8L);
            for (int t = 0; t < Tokens; t++) { Kind[t] = b.Segment[t]; Time[t] = b.Time[t]; }
            var rng = new SplitMix64(11);
            Q = Rand(rng, (long)Tokens * Heads * Dqk);
            K = Rand(rng, (long)Tokens * KvHeads * Dqk);
            V = Rand(rng, (long)Tokens * KvHeads * Dv);
            Rab = Rand(rng, (long)Heads * RabWidth);
            DO = Rand(rng, (long)Tokens * Heads * Dv);
            QT = Gather(Q, Heads * Dqk);
            DOT = Gather(DO, Heads * Dv);
            O = Rand(rng, (long)Tokens * Heads * Dv);
            DQ = Rand(rng, (long)Tokens * Heads * Dqk);
            DK = Rand(rng, (long)Tokens * KvHeads * Dqk);
            DV = Rand(rng, (long)Tokens * KvHeads * Dv);
            DRab = Rand(rng, (long)Heads * RabWidth);
        }

        public HstuAttentionArgs Args(bool target) =>
            new(Instances, Offsets, Kind, Time, target ? TargetTokens : null, target ? Targets : Tokens, Heads, KvHeads, Dqk, Dv);

        public void Forward(CpuWorkerPool pool, bool target) =>
            CpuHstuAttention.Forward(pool, Args(target), target ? QT : Q, Heads * Dqk, K, KvHeads * Dqk, V, KvHeads * Dv, Rab, O, Heads * Dv);

        public void Backward(CpuWorkerPool pool, bool target) =>
            CpuHstuAttention.Backward(pool, Args(target), target ? QT : Q, Heads * Dqk, K, KvHeads * Dqk, V, KvHeads * Dv, Rab,
                target ? DOT : DO, Heads * Dv, DQ, Heads * Dqk, DK, KvHeads * Dqk, DV, KvHeads * Dv, DRab);

        /// <summary>Useful FLOPs of forward + backward over the visible pairs (2 per multiply-add; backward recomputes QKᵀ).</summary>
        public double Flops(bool target)
        {
            long pairs = CpuHstuAttention.CountVisiblePairs(Args(target));
            return 2.0 * pairs * Heads * (Dqk + Dv) + 2.0 * pairs * Heads * (3 * Dqk + 2 * Dv);
        }

        private float* Gather(float* src, int width)
        {
            var dst = (float*)Alloc((long)Math.Max(1, Targets) * width * 4);
            for (int j = 0; j < Targets; j++)
                new Span<float>(src + (long)TargetTokens[j] * width, width).CopyTo(new Span<float>(dst + (long)j * width, width));
            return dst;
        }

        private float* Rand(SplitMix64 rng, long n)
        {
            var p = (float*)Alloc(n * 4);
            for (long i = 0; i < n; i++) p[i] = (float)(rng.NextDouble() - 0.5);
            return p;
        }

        private void* Alloc(long bytes)
        {
            void* p = NativeMemory.AlignedAlloc((nuint)Math.Max(64, bytes), 64);
            _blocks.Add((nint)p);
            return p;
        }

        public void Dispose()
        {
            foreach (var p in _blocks) NativeMemory.AlignedFree((void*)p);
            _blocks.Clear();
        }
    }

#if MTFM_TORCHSHARP
    /// <summary>The same call in LibTorch: dense [B, h, Lq, L] scores, the formulation of <see cref="TorchStep.Attend"/>.</summary>
    private sealed class TorchAttention : IDisposable
    {
        private readonly TParameter _q, _k, _v, _rab;
        private readonly Tensor _do, _mask, _bkt;
        private readonly int _b, _len, _lq, _h, _g;
        private readonly float _alpha;
        private float[]? _o;

        public TorchAttention(EngineAttention e, JaggedBatch batch, MtfmConfig c, bool target)
        {
            _b = e.Instances; _len = batch.Offsets[1]; _h = e.Heads; _g = e.KvHeads;
            int lhr = 0;
            while (lhr < _len && batch.Segment[lhr] != 2) lhr++;
            _lq = target ? _len - lhr : _len;
            _alpha = 1f / MathF.Sqrt(e.Dqk);
            _q = Param(target ? e.QT : e.Q, _lq, _h, e.Dqk);
            _k = Param(e.K, _len, _g, e.Dqk);
            _v = Param(e.V, _len, _g, e.Dv);
            _rab = new TParameter(torch.tensor(new ReadOnlySpan<float>(e.Rab, _h * e.RabWidth).ToArray(), [_h, e.RabWidth]), requires_grad: true);
            _do = Heads(target ? e.DOT : e.DO, _lq, _h, e.Dv);
            (_mask, _bkt) = TorchStep.Pairs(batch, _b, _len, target ? lhr : 0, _lq, 0, _len, c.TimeBuckets, null);
        }

        /// <summary>[B·Lq rows, heads·d] engine layout → [B, heads, Lq, d].</summary>
        private Tensor Heads(float* rows, int lq, int heads, int d) =>
            torch.tensor(new ReadOnlySpan<float>(rows, _b * lq * heads * d).ToArray(), [_b, lq, heads, d]).transpose(1, 2).contiguous();

        private TParameter Param(float* rows, int lq, int heads, int d) => new(Heads(rows, lq, heads, d), requires_grad: true);

        /// <summary>Forward and backward of Σ O ⊙ dO (so that the gradient reaching O is dO).</summary>
        public void Run()
        {
            using var scope = torch.NewDisposeScope();
            foreach (var p in new[] { _q, _k, _v, _rab }) p.grad?.zero_();
            var k = _g != _h ? _k.repeat_interleave(_h / _g, 1) : _k;
            var v = _g != _h ? _v.repeat_interleave(_h / _g, 1) : _v;
            var o = TorchStep.Attend(_q, k, v, _rab, _mask, _bkt, _alpha);
            (o * _do).sum().backward();
            _o ??= Rows(o.detach());
        }

        /// <summary>[B, heads, L, d] → engine rows [B·L, heads·d].</summary>
        private static float[] Rows(Tensor t) => t.transpose(1, 2).contiguous().data<float>().ToArray();

        public double MaxRelativeDifference(EngineAttention e)
        {
            double worst = 0;
            int nq = _b * _lq, n = _b * _len;
            worst = Math.Max(worst, Rel(_o!, e.O, nq * _h * e.Dv));
            worst = Math.Max(worst, Rel(Rows(_q.grad!), e.DQ, nq * _h * e.Dqk));
            worst = Math.Max(worst, Rel(Rows(_k.grad!), e.DK, n * _g * e.Dqk));
            worst = Math.Max(worst, Rel(Rows(_v.grad!), e.DV, n * _g * e.Dv));
            worst = Math.Max(worst, Rel(_rab.grad!.data<float>().ToArray(), e.DRab, _h * e.RabWidth));
            return worst;
        }

        private static double Rel(float[] torchValues, float* engine, int count)
        {
            if (torchValues.Length != count) return double.PositiveInfinity;
            double maxAbs = 0, maxDiff = 0;
            for (int i = 0; i < count; i++)
            {
                maxAbs = Math.Max(maxAbs, Math.Abs(torchValues[i]));
                maxDiff = Math.Max(maxDiff, Math.Abs(torchValues[i] - engine[i]));
            }
            return maxDiff / Math.Max(maxAbs, 1e-30);
        }

        public void Dispose()
        {
            foreach (var t in new Tensor[] { _q, _k, _v, _rab, _do, _mask, _bkt }) t.Dispose();
        }
    }
#endif
}
