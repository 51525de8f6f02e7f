using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// Fused jagged HSTU attention on the CPU (spec §4–5): pointwise SiLU attention with the MTFM visibility rule computed
/// on the fly from token metadata, a relative-time bias per query head and time bucket, grouped-query heads, forward
/// and backward. No N×N mask or score matrix is ever built: each query iterates only its visible keys.
/// </summary>
/// <remarks>
/// <para><b>Semantics.</b> For query row i (token t = query token i) and query head hd (kv head kh = hd / (h/g)),
/// with alpha = 1/sqrt(dqk), T = 2·NB − 1:</para>
/// <code>
/// S[i,hd,k] = alpha · Q[i, hd·dqk .. +dqk) · K[k, kh·dqk .. +dqk) + rab[hd·T + bucket(time[t] − time[k])]
/// A[i,hd,k] = SiLU(S) · visible(t,k) / n(t)          SiLU(x) = x·sigmoid(x)
/// O[i, hd·dv .. +dv) = Σ_k A[i,hd,k] · V[k, kh·dv .. +dv)
/// </code>
/// <para>visible(t,k) holds only within t's instance: k in H → true; k in R → k = t or time[k] &lt; time[t] (strict);
/// k in T → k = t. n(t) = number of visible keys (t itself included, so ≥ 1). bucket: <see cref="HstuAttentionTimeBucket"/>.</para>
/// <para><b>Layouts</b> (row-major float32, every row stride may exceed the row width, e.g. column slices of one wider
/// projection output): Q and dQ [NumQueries rows, h·dqk]; O and dO [NumQueries, h·dv]; K and dK [N tokens, g·dqk];
/// V and dV [N, g·dv]; rab and dRab [h, 2·NB − 1] contiguous. Heads are head-major inside a row. Columns beyond the
/// row width are never read or written.</para>
/// <para><b>Threads and determinism.</b> The forward is split over (instance, query block) items, the backward over
/// instances (dK/dV rows belong to one instance, so no two workers touch one row; the rab gradient is accumulated per
/// instance in double and summed in instance order). Every output element is produced by the same sequence of
/// operations whatever the partition, so results are bit-for-bit identical for any thread count, including
/// <c>pool = null</c> (single-threaded). Inside a query block, keys a query does not see but another query of the block does
/// (later R events) get an attention weight and score gradient of exactly 0 that is still multiplied with their V row
/// (for O) and K row (for dQ), so a NaN/∞ in the K or V row of such an R token can reach the query as NaN; finite inputs, as produced
/// by the SiLU projection, are unaffected. K/V rows of T tokens are only ever read by the token itself.</para>
/// </remarks>
internal static unsafe class CpuHstuAttention
{
    private const int Pad = 16;

    /// <summary>
    /// Forward: writes O [NumQueries, h·dv] (row stride <paramref name="ldo"/>; every row of every query is overwritten).
    /// </summary>
    /// <param name="pool">Worker pool, or null to run on the calling thread. The result does not depend on it.</param>
    /// <param name="args">Batch metadata, query list and head geometry; validated first (ArgumentException).</param>
    /// <param name="q">Q [NumQueries, h·dqk], row i belongs to query i (token i in the full layer).</param>
    /// <param name="ldq">Row stride of Q in floats (≥ h·dqk).</param>
    /// <param name="k">K [N, g·dqk], row = token.</param>
    /// <param name="ldk">Row stride of K (≥ g·dqk).</param>
    /// <param name="v">V [N, g·dv], row = token.</param>
    /// <param name="ldv">Row stride of V (≥ g·dv).</param>
    /// <param name="rab">Relative time bias [h, 2·NB − 1], contiguous.</param>
    /// <param name="o">Output O [NumQueries, h·dv].</param>
    /// <param name="ldo">Row stride of O (≥ h·dv).</param>
    public static void Forward(CpuWorkerPool? pool, in HstuAttentionArgs args,
        float* q, int ldq, float* k, int ldk, float* v, int ldv, float* rab, float* o, int ldo)
    {
        args.Validate();
        CheckBuffers(args, q, ldq, k, ldk, v, ldv, rab);
        HstuAttentionArgs.CheckLd(ldo, args.Heads * args.Dv, "ldo");
        HstuAttentionArgs.CheckPtr(o, args.NumQueries, "o");
        using var plan = new HstuAttentionPlan(args);
        if (plan.NumItems == 0) return;
        int parts = pool is null ? 1 : Math.Min(pool.ThreadCount, plan.NumItems);
        int* bounds = stackalloc int[parts + 1];
        HstuAttentionPlan.Split(plan.ItemCostPrefix, plan.NumItems, parts, bounds);
        var body = new Body
        {
            A = args,
            Plan = plan,
            Bounds = bounds,
            Backward = false,
            Q = q,
            Ldq = ldq,
            K = k,
            Ldk = ldk,
            V = v,
            Ldv = ldv,
            Rab = rab,
            O = o,
            Ldo = ldo,
        };
        if (parts == 1) body.Run(0, 1);
        else pool!.For(parts, 1, ref body);
    }

    /// <summary>
    /// Backward: from dO produces dQ (same layout as Q, every query row overwritten), dK and dV (every token row of all
    /// instances overwritten; rows of keys no query sees become 0) and dRab [h, 2·NB − 1] (overwritten). S and A are
    /// recomputed from Q, K, V and rab (nothing is saved by the forward).
    /// </summary>
    /// <param name="pool">Worker pool, or null to run on the calling thread. The result does not depend on it.</param>
    /// <param name="args">The same metadata as the forward call.</param>
    /// <param name="q">Q as in the forward.</param>
    /// <param name="ldq">Row stride of Q.</param>
    /// <param name="k">K as in the forward.</param>
    /// <param name="ldk">Row stride of K.</param>
    /// <param name="v">V as in the forward.</param>
    /// <param name="ldv">Row stride of V.</param>
    /// <param name="rab">rab as in the forward.</param>
    /// <param name="dO">Gradient of the loss with respect to O, [NumQueries, h·dv].</param>
    /// <param name="lddO">Row stride of dO (≥ h·dv).</param>
    /// <param name="dQ">Output dQ [NumQueries, h·dqk].</param>
    /// <param name="lddQ">Row stride of dQ (≥ h·dqk).</param>
    /// <param name="dK">Output dK [N, g·dqk].</param>
    /// <param name="lddK">Row stride of dK (≥ g·dqk).</param>
    /// <param name="dV">Output dV [N, g·dv].</param>
    /// <param name="lddV">Row stride of dV (≥ g·dv).</param>
    /// <param name="dRab">Output dRab [h, 2·NB − 1], contiguous.</param>
    public static void Backward(CpuWorkerPool? pool, in HstuAttentionArgs args,
        float* q, int ldq, float* k, int ldk, float* v, int ldv, float* rab,
        float* dO, int lddO, float* dQ, int lddQ, float* dK, int lddK, float* dV, int lddV, float* dRab)
    {
        args.Validate();
        CheckBuffers(args, q, ldq, k, ldk, v, ldv, rab);
        int n = args.TotalTokens;
        HstuAttentionArgs.CheckLd(lddO, args.Heads * args.Dv, "lddO");
        HstuAttentionArgs.CheckLd(lddQ, args.Heads * args.Dqk, "lddQ");
        HstuAttentionArgs.CheckLd(lddK, args.KvHeads * args.Dqk, "lddK");
        HstuAttentionArgs.CheckLd(lddV, args.KvHeads * args.Dv, "lddV");
        HstuAttentionArgs.CheckPtr(dO, args.NumQueries, "dO");
        HstuAttentionArgs.CheckPtr(dQ, args.NumQueries, "dQ");
        HstuAttentionArgs.CheckPtr(dK, n, "dK");
        HstuAttentionArgs.CheckPtr(dV, n, "dV");
        HstuAttentionArgs.CheckPtr(dRab, 1, "dRab");
        using var plan = new HstuAttentionPlan(args);
        int tw = args.RabWidth, rabLen = args.Heads * tw;
        double* part = (double*)plan.Alloc((long)Math.Max(1, args.Batch) * rabLen * sizeof(double));
        if (args.Batch > 0)
        {
            // Cost per instance ≈ its query blocks' cost; instances with no query still zero their dK/dV rows.
            long* prefix = (long*)plan.Alloc((args.Batch + 1L) * sizeof(long));
            prefix[0] = 0;
            int item = 0;
            for (int b = 0; b < args.Batch; b++)
            {
                long c = args.Offsets[b + 1] - args.Offsets[b] + 16;
                while (item < plan.NumItems && plan.ItemInst[item] == b)
                {
                    c += plan.ItemCostPrefix[item + 1] - plan.ItemCostPrefix[item];
                    item++;
                }
                prefix[b + 1] = prefix[b] + c;
            }
            int parts = pool is null ? 1 : Math.Min(pool.ThreadCount, args.Batch);
            int* bounds = stackalloc int[parts + 1];
            HstuAttentionPlan.Split(prefix, args.Batch, parts, bounds);
            var body = new Body
            {
                A = args,
                Plan = plan,
                Bounds = bounds,
                Backward = true,
                Q = q,
                Ldq = ldq,
                K = k,
                Ldk = ldk,
                V = v,
                Ldv = ldv,
                Rab = rab,
                DO = dO,
                LddO = lddO,
                DQ = dQ,
                LddQ = lddQ,
                DK = dK,
                LddK = lddK,
                DV = dV,
                LddV = lddV,
                RabPart = part,
            };
            if (parts == 1) body.Run(0, 1);
            else pool!.For(parts, 1, ref body);
        }
        for (int i = 0; i < rabLen; i++)
        {
            double acc = 0;
            for (int b = 0; b < args.Batch; b++) acc += part[(long)b * rabLen + i];
            dRab[i] = (float)acc;
        }
    }

    /// <summary>
    /// Number of visible (query, key) pairs Σ_q n(q) of a call (per head); flops of the forward are
    /// 2·pairs·h·(dqk + dv), of the backward 2·pairs·h·(3·dqk + 2·dv) (QK recomputed, dO·Vᵀ, dV, dQ, dK).
    /// </summary>
    public static long CountVisiblePairs(in HstuAttentionArgs args)
    {
        args.Validate();
        using var plan = new HstuAttentionPlan(args);
        return plan.VisiblePairs;
    }

    private static void CheckBuffers(in HstuAttentionArgs a, float* q, int ldq, float* k, int ldk, float* v, int ldv, float* rab)
    {
        int n = a.TotalTokens;
        HstuAttentionArgs.CheckLd(ldq, a.Heads * a.Dqk, "ldq");
        HstuAttentionArgs.CheckLd(ldk, a.KvHeads * a.Dqk, "ldk");
        HstuAttentionArgs.CheckLd(ldv, a.KvHeads * a.Dv, "ldv");
        HstuAttentionArgs.CheckPtr(q, a.NumQueries, "q");
        HstuAttentionArgs.CheckPtr(k, n, "k");
        HstuAttentionArgs.CheckPtr(v, n, "v");
        HstuAttentionArgs.CheckPtr(rab, 1, "rab");
    }

    private static int RoundUp(int x) => (x + Pad - 1) / Pad * Pad;

    /// <summary>One worker's share: forward items or backward instances in [Bounds[part], Bounds[part + 1]).</summary>
    private struct Body : IRangeBody
    {
        public HstuAttentionArgs A;
        public HstuAttentionPlan Plan;
        public int* Bounds;
        public bool Backward;
        public float* Q, K, V, Rab, O, DO, DQ, DK, DV;
        public int Ldq, Ldk, Ldv, Ldo, LddO, LddQ, LddK, LddV;
        public double* RabPart;

        public void Run(int start, int end)
        {
            var w = new Worker(A, Plan, this);
            try
            {
                for (int part = start; part < end; part++)
                {
                    for (int i = Bounds[part]; i < Bounds[part + 1]; i++)
                    {
                        if (Backward) w.BackwardInstance(i);
                        else w.ForwardItem(Plan.ItemInst[i], Plan.ItemQa[i], Plan.ItemQb[i]);
                    }
                }
            }
            finally { w.Free(); }
        }
    }

    /// <summary>Per-worker scratch and the block routines.</summary>
    private struct Worker
    {
        private readonly HstuAttentionArgs _a;
        private readonly HstuAttentionPlan _p;
        private readonly Body _io;
        private readonly int _hg, _lc, _rows, _tw;
        private readonly float _alpha;
        private readonly float* _kt, _vt, _qr, _dor, _s, _pm, _da, _d, _sig, _acc;
        private readonly int* _bk, _runStart, _runBucket, _runCount;
        private readonly void* _mem;
        private int _cachedInst;

        public Worker(in HstuAttentionArgs a, HstuAttentionPlan p, in Body io)
        {
            _a = a; _p = p; _io = io;
            _hg = a.Heads / a.KvHeads;
            _lc = Math.Max(Pad, RoundUp(p.MaxKeyLen));
            _rows = p.QueryBlock * _hg;
            _tw = a.RabWidth;
            _alpha = 1f / MathF.Sqrt(a.Dqk);
            int g = a.KvHeads, dqk = a.Dqk, dv = a.Dv;
            long lc = _lc, rows = _rows;
            long floats = g * dqk * lc + (io.Backward ? g * dv * lc : 0) + rows * dqk + rows * dv
                + rows * lc * (io.Backward ? 4 : 2) + (io.Backward ? Pad : 0) + lc + rows * Math.Max(dqk, dv);
            long ints = p.QueryBlock * lc + (io.Backward ? p.QueryBlock * (2 * lc + 2) : 0);
            long bytes = (floats + ints) * sizeof(float) + 64 * 16;
            _mem = NativeMemory.AlignedAlloc((nuint)bytes, 64);
            byte* cur = (byte*)_mem;
            float* Take(long n)
            {
                float* r = (float*)cur;
                cur += (n * sizeof(float) + 63) / 64 * 64;
                return r;
            }
            _kt = Take(g * dqk * lc);
            _vt = io.Backward ? Take(g * dv * lc) : null;
            _qr = Take(rows * dqk);
            _dor = Take(rows * dv);
            _s = Take(rows * lc);
            _pm = Take(rows * lc);
            _da = io.Backward ? Take(rows * lc) : null;
            _d = io.Backward ? Take(rows * lc + Pad) : null; // + Pad: a run's last vector may read past the last row
            _sig = Take(lc);
            _acc = Take(rows * Math.Max(dqk, dv));
            _bk = (int*)Take(p.QueryBlock * lc);
            if (io.Backward)
            {
                _runStart = (int*)Take(p.QueryBlock * (lc + 1));
                _runBucket = (int*)Take(p.QueryBlock * lc);
                _runCount = (int*)Take(p.QueryBlock);
            }
            _cachedInst = -1;
        }

        public readonly void Free() => NativeMemory.AlignedFree(_mem);

        private readonly int Token(int qi) => _a.QueryTokens == null ? qi : _a.QueryTokens[qi];

        /// <summary>Transposes K (and V) rows [s, s + len) of every kv head into kt[kh·dqk + d][j] (stride lc), zero-padded.</summary>
        private readonly void Transpose(float* src, int ld, int width, float* dst, int s, int len)
        {
            int lp = RoundUp(len);
            for (int kh = 0; kh < _a.KvHeads; kh++)
            {
                float* basePtr = dst + (long)kh * width * _lc;
                for (int j = 0; j < len; j++)
                {
                    float* row = src + (long)(s + j) * ld + kh * width;
                    for (int d = 0; d < width; d++) basePtr[(long)d * _lc + j] = row[d];
                }
                for (int d = 0; d < width; d++)
                    for (int j = len; j < lp; j++) basePtr[(long)d * _lc + j] = 0f;
            }
        }

        /// <summary>
        /// Buckets of (query qi, key s0 + j) for j below the query's key end; in the backward also the runs of equal
        /// buckets along j (start, bucket), which the rab gradient sums run by run. Keys in time order (the usual case)
        /// give at most 2·NB − 1 runs per query; any order is still exact, with more, shorter runs.
        /// </summary>
        private readonly void Buckets(int qa, int qb, int s0)
        {
            long* time = _a.Time;
            int nb = _a.NumBuckets;
            long unit = _a.UnitSeconds;
            for (int qi = qa; qi < qb; qi++)
            {
                int ql = qi - qa, e = _p.KeyEnd[qi] - s0;
                int* brow = _bk + (long)ql * _lc;
                HstuAttentionTimeBucket.BucketRow(time[Token(qi)], time + s0, e, nb, unit, brow);
                if (_runStart == null) continue;
                int* rs = _runStart + (long)ql * (_lc + 1);
                int* rb = _runBucket + (long)ql * _lc;
                int nr = 0, j = 1;
                if (e > 0)
                {
                    rs[0] = 0;
                    rb[0] = brow[0];
                    nr = 1;
                }
                if (Vector512.IsHardwareAccelerated)
                {
                    // A run starts wherever a bucket differs from its left neighbour: 16 comparisons at a time.
                    for (; j + 16 <= e; j += 16)
                    {
                        ulong starts = (~Vector512.Equals(Vector512.Load(brow + j), Vector512.Load(brow + j - 1))).ExtractMostSignificantBits();
                        for (; starts != 0; starts &= starts - 1)
                        {
                            int at = j + BitOperations.TrailingZeroCount(starts);
                            rs[nr] = at;
                            rb[nr] = brow[at];
                            nr++;
                        }
                    }
                }
                for (; j < e; j++)
                {
                    if (brow[j] == brow[j - 1]) continue;
                    rs[nr] = j;
                    rb[nr] = brow[j];
                    nr++;
                }
                rs[nr] = e;
                _runCount[ql] = nr;
            }
        }

        /// <summary>
        /// Σ x[j] for j in [a, b), b &gt; a: a plain ascending sum for runs of at most 4, otherwise one vector accumulator
        /// over whole vectors from a, the last partial vector masked, then the vector's sum. The operations depend only on
        /// the run's values and length. May read (and ignore) up to one vector past b.
        /// </summary>
        private static float RunSum(float* x, int a, int b)
        {
            int n = b - a;
            if (n <= 4)
            {
                float s = x[a];
                for (int j = a + 1; j < b; j++) s += x[j];
                return s;
            }
            int i = a;
            if (Vector512.IsHardwareAccelerated)
            {
                var acc = Vector512<float>.Zero;
                for (; i + 16 <= b; i += 16) acc += Vector512.Load(x + i);
                if (i < b)
                {
                    var keep = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(b - i)).AsSingle();
                    acc += Vector512.ConditionalSelect(keep, Vector512.Load(x + i), Vector512<float>.Zero);
                }
                return Vector512.Sum(acc);
            }
            if (Vector256.IsHardwareAccelerated)
            {
                var acc = Vector256<float>.Zero;
                for (; i + 8 <= b; i += 8) acc += Vector256.Load(x + i);
                if (i < b)
                {
                    var keep = Vector256.LessThan(Vector256<int>.Indices, Vector256.Create(b - i)).AsSingle();
                    acc += Vector256.ConditionalSelect(keep, Vector256.Load(x + i), Vector256<float>.Zero);
                }
                return Vector256.Sum(acc);
            }
            float t = 0f;
            for (; i < b; i++) t += x[i];
            return t;
        }

        /// <summary>Gathers the rows (query, head of kv group kh) of <paramref name="src"/> into dst [rows, width].</summary>
        private readonly void Gather(float* src, int ld, int width, float* dst, int qa, int nq, int kh)
        {
            for (int hh = 0; hh < _hg; hh++)
            {
                int head = kh * _hg + hh;
                for (int ql = 0; ql < nq; ql++)
                {
                    float* s = src + (long)(qa + ql) * ld + (long)head * width;
                    HstuAttentionMicroKernels.Copy(s, dst + (long)(hh * nq + ql) * width, width);
                }
            }
        }

        /// <summary>
        /// Asks for the query rows [qa, qa + n) of <paramref name="src"/> (the first <paramref name="floats"/> of each) to be
        /// cached: the next block's Q (and dO) rows, strided slices of a wider tensor, are then read while this block computes.
        /// </summary>
        private readonly void Prefetch(float* src, int ld, int floats, int qa, int n)
        {
            if (!Sse.IsSupported) return;
            int end = Math.Min(_a.NumQueries, qa + n);
            for (int qi = qa; qi < end; qi++)
            {
                float* row = src + (long)qi * ld;
                for (int j = 0; j < floats; j += 16) Sse.Prefetch0(row + j);
            }
        }

        public void ForwardItem(int b, int qa, int qb)
        {
            Prefetch(_io.Q, _io.Ldq, _a.Heads * _a.Dqk, qb, qb - qa);
            int s0 = _a.Offsets[b];
            if (_cachedInst != b)
            {
                Transpose(_io.K, _io.Ldk, _a.Dqk, _kt, s0, _p.MaxKeyEnd[b] - s0);
                _cachedInst = b;
            }
            int nq = qb - qa, len = 0;
            for (int qi = qa; qi < qb; qi++) len = Math.Max(len, _p.KeyEnd[qi] - s0);
            int lp = RoundUp(len), rows = nq * _hg, dqk = _a.Dqk, dv = _a.Dv;
            Buckets(qa, qb, s0);
            for (int kh = 0; kh < _a.KvHeads; kh++)
            {
                Gather(_io.Q, _io.Ldq, dqk, _qr, qa, nq, kh);
                HstuAttentionMicroKernels.AddMatMul(rows, lp, dqk, _qr, dqk, 1, _kt + (long)kh * dqk * _lc, _lc, _s, _lc, overwrite: true);
                for (int r = 0; r < rows; r++)
                {
                    int ql = r % nq, head = kh * _hg + r / nq, qi = qa + ql;
                    Pointwise(r, ql, qi, head, s0, len, null, null, null);
                }
                HstuAttentionMicroKernels.AddMatMul(rows, dv, len, _pm, _lc, 1, _io.V + (long)s0 * _io.Ldv + kh * dv, _io.Ldv, _acc, dv, overwrite: true);
                for (int r = 0; r < rows; r++)
                {
                    int ql = r % nq, head = kh * _hg + r / nq, qi = qa + ql, t = Token(qi), ke = _p.KeyEnd[qi];
                    float* orow = _acc + (long)r * dv;
                    if (t >= ke)
                    {
                        float x = SelfScore(r, t, kh, head);
                        float sg = Sigmoid(x);
                        float invN = 1f / (ke - s0 + 1);
                        HstuAttentionMicroKernels.Axpy(dv, x * sg * invN, _io.V + (long)t * _io.Ldv + kh * dv, orow);
                    }
                    HstuAttentionMicroKernels.Copy(orow, _io.O + (long)qi * _io.Ldo + (long)head * dv, dv);
                }
            }
        }

        public void BackwardInstance(int b)
        {
            int s0 = _a.Offsets[b], e0 = _a.Offsets[b + 1], g = _a.KvHeads, dqk = _a.Dqk, dv = _a.Dv;
            int rabLen = _a.Heads * _tw;
            double* dr = _io.RabPart + (long)b * rabLen;
            new Span<double>(dr, rabLen).Clear();
            for (int t = s0; t < e0; t++)
            {
                HstuAttentionMicroKernels.Zero(_io.DK + (long)t * _io.LddK, g * dqk);
                HstuAttentionMicroKernels.Zero(_io.DV + (long)t * _io.LddV, g * dv);
            }
            int qBegin = _p.QBegin[b], qEnd = _p.QEnd[b];
            if (qBegin == qEnd) return;
            int lb = _p.MaxKeyEnd[b] - s0;
            Transpose(_io.K, _io.Ldk, dqk, _kt, s0, lb);
            Transpose(_io.V, _io.Ldv, dv, _vt, s0, lb);
            for (int qa = qBegin; qa < qEnd; qa += _p.QueryBlock)
            {
                int qb = Math.Min(qEnd, qa + _p.QueryBlock), nq = qb - qa, len = 0;
                for (int qi = qa; qi < qb; qi++) len = Math.Max(len, _p.KeyEnd[qi] - s0);
                int lp = RoundUp(len), rows = nq * _hg;
                Prefetch(_io.Q, _io.Ldq, _a.Heads * dqk, qb, _p.QueryBlock);
                Prefetch(_io.DO, _io.LddO, _a.Heads * dv, qb, _p.QueryBlock);
                Buckets(qa, qb, s0);
                for (int kh = 0; kh < g; kh++)
                {
                    Gather(_io.Q, _io.Ldq, dqk, _qr, qa, nq, kh);
                    Gather(_io.DO, _io.LddO, dv, _dor, qa, nq, kh);
                    HstuAttentionMicroKernels.AddMatMul(rows, lp, dqk, _qr, dqk, 1, _kt + (long)kh * dqk * _lc, _lc, _s, _lc, overwrite: true);
                    HstuAttentionMicroKernels.AddMatMul(rows, lp, dv, _dor, dv, 1, _vt + (long)kh * dv * _lc, _lc, _da, _lc, overwrite: true);
                    for (int r = 0; r < rows; r++)
                    {
                        int ql = r % nq, head = kh * _hg + r / nq, qi = qa + ql;
                        Pointwise(r, ql, qi, head, s0, len, _da, _d, dr + (long)head * _tw);
                    }
                    float* kBase = _io.K + (long)s0 * _io.Ldk + kh * dqk;
                    float* dkBase = _io.DK + (long)s0 * _io.LddK + kh * dqk;
                    float* dvBase = _io.DV + (long)s0 * _io.LddV + kh * dv;
                    // dQ rows = D · K;  dK += Dᵀ · Q;  dV += Pᵀ · dO   (alpha applied to dQ here, to dK at the end)
                    HstuAttentionMicroKernels.AddMatMul(rows, dqk, len, _d, _lc, 1, kBase, _io.Ldk, _acc, dqk, overwrite: true);
                    HstuAttentionMicroKernels.AddMatMul(len, dqk, rows, _d, 1, _lc, _qr, dqk, dkBase, _io.LddK);
                    HstuAttentionMicroKernels.AddMatMul(len, dv, rows, _pm, 1, _lc, _dor, dv, dvBase, _io.LddV);
                    for (int r = 0; r < rows; r++)
                    {
                        int ql = r % nq, head = kh * _hg + r / nq, qi = qa + ql, t = Token(qi), ke = _p.KeyEnd[qi];
                        float* dq = _acc + (long)r * dqk;
                        if (t >= ke)
                        {
                            float x = SelfScore(r, t, kh, head);
                            float sg = Sigmoid(x);
                            float invN = 1f / (ke - s0 + 1);
                            float* kRow = _io.K + (long)t * _io.Ldk + kh * dqk;
                            float* vRow = _io.V + (long)t * _io.Ldv + kh * dv;
                            float* doRow = _dor + (long)r * dv;
                            float dA = HstuAttentionMicroKernels.Dot(doRow, vRow, dv);
                            float ds = dA * sg * (1f + x * (1f - sg)) * invN;
                            HstuAttentionMicroKernels.Axpy(dqk, ds, kRow, dq);
                            HstuAttentionMicroKernels.Axpy(dqk, ds, _qr + (long)r * dqk, _io.DK + (long)t * _io.LddK + kh * dqk);
                            HstuAttentionMicroKernels.Axpy(dv, x * sg * invN, doRow, _io.DV + (long)t * _io.LddV + kh * dv);
                            dr[(long)head * _tw] += ds; // bucket(0) = 0
                        }
                        float* dst = _io.DQ + (long)qi * _io.LddQ + (long)head * dqk;
                        HstuAttentionMicroKernels.Scale(dq, _alpha, dst, dqk);
                    }
                }
            }
            for (int t = s0; t < e0; t++)
            {
                float* row = _io.DK + (long)t * _io.LddK;
                HstuAttentionMicroKernels.Scale(row, _alpha, row, g * dqk);
            }
        }

        /// <summary>alpha · Q_row · K[t] + rab[head, 0] (the forward and the backward compute it alike, so P agrees).</summary>
        private readonly float SelfScore(int r, int t, int kh, int head)
        {
            float dot = HstuAttentionMicroKernels.Dot(_qr + (long)r * _a.Dqk, _io.K + (long)t * _io.Ldk + kh * _a.Dqk, _a.Dqk);
            return _alpha * dot + _io.Rab[(long)head * _tw];
        }

        private static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

        /// <summary>
        /// Row r of the block: turns raw dots S into P = SiLU(alpha·S + rab)/n over the visible prefix (0 beyond, up to
        /// <paramref name="len"/>); in the backward also D = dA·SiLU'(x)/n and the rab gradient (D summed over the query's bucket runs) into <paramref name="drab"/>.
        /// </summary>
        private readonly void Pointwise(int r, int ql, int qi, int head, int s0, int len, float* da, float* d, double* drab)
        {
            float* srow = _s + (long)r * _lc;
            float* prow = _pm + (long)r * _lc;
            int* brow = _bk + (long)ql * _lc;
            float* rabRow = _io.Rab + (long)head * _tw;
            int ke = _p.KeyEnd[qi], e = ke - s0;
            float invN = 1f / (e + (Token(qi) >= ke ? 1 : 0));
            float alpha = _alpha;
            if (e == 0)
            {
                HstuAttentionMicroKernels.Zero(prow, len);
                if (d != null) HstuAttentionMicroKernels.Zero(d + (long)r * _lc, len);
                return;
            }
            float* darow = d == null ? null : da + (long)r * _lc;
            float* drow = d == null ? null : d + (long)r * _lc;
            // P = SiLU(alpha·S + rab)/n (the forward's P, which the backward recomputes bit for bit) and, backward,
            // D = dA·SiLU'/n: one fused pass where it applies, else the same operations pass by pass.
            if (!HstuAttentionMicroKernels.BiasSilu(srow, e, alpha, rabRow, _tw, brow, invN, prow, darow, drow))
            {
                HstuAttentionMicroKernels.ScaleAddBias(srow, e, alpha, rabRow, _tw, brow);
                if (d == null) CpuSilu.SiluScaled(srow, prow, e, invN);
                else
                {
                    CpuSilu.Sigmoid(srow, _sig, e);
                    HstuAttentionMicroKernels.SiluForwardBackward(e, srow, _sig, darow, invN, prow, drow);
                }
            }
            if (d != null)
            {
                // rab gradient: the row's D summed over each run of equal buckets (shared by the heads of the query),
                // added to the instance's double partial in run order.
                int* rs = _runStart + (long)ql * (_lc + 1);
                int* rb = _runBucket + (long)ql * _lc;
                int nr = _runCount[ql];
                for (int k = 0; k < nr; k++) drab[rb[k]] += RunSum(drow, rs[k], rs[k + 1]);
                HstuAttentionMicroKernels.Zero(drow + e, len - e);
            }
            HstuAttentionMicroKernels.Zero(prow + e, len - e);
        }
    }
}
