#if MTFM_TORCHSHARP
using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using TParameter = TorchSharp.Modules.Parameter;

namespace Mtfm.Bench.Step;

/// <summary>
/// The same MTFM training step written in TorchSharp (LibTorch) the way a careful PyTorch user would: the batch as a
/// regular [instances, L] layout (every instance has the same H/R/T lengths, so no padding), attention as dense
/// masked matmuls with the relative time bias gathered per (query, key) pair, SiLU/LayerNorm from the library,
/// <c>binary_cross_entropy_with_logits</c>, global-norm clipping and AdamW (decay on 2-D weights) plus Adam on the
/// embedding tables (dense gradients: a careful user's <c>nn.Embedding</c> without <c>sparse=True</c>). The visibility
/// mask, 1/n(q) and the time buckets are built once per batch outside the timed step (a data loader's collate work),
/// which flatters the peer. Weights are copied from the engine model, so both compute the same loss.
/// <para><see cref="SkipTT"/> = false: every layer forms the dense [L_q, L] score block (target layers: T queries
/// against all L keys, the T×T part masked to its diagonal). <see cref="SkipTT"/> = true: T×T work is skipped — H/R
/// queries see only H/R keys, and a T query sees the H/R keys plus itself through a separate per-token term.</para>
/// </summary>
internal sealed class TorchStep : IDisposable
{
    private readonly MtfmConfig _c;
    private readonly DataLayout _l;
    private readonly Dictionary<string, TParameter> _p = new(StringComparer.Ordinal);
    private readonly List<TParameter> _all = new();
    private readonly torch.optim.Optimizer _optDecay, _optPlain, _optEmb;
    private readonly int _b, _lh, _lr, _lt, _len, _lhr;
    private readonly Tensor _perm;                  // [N] row of the concatenated group outputs for each token
    private readonly Tensor _tokGroups, _tgtGroups; // [N], [NT]
    private readonly Tensor[][] _cat; private readonly Tensor?[] _num; private readonly bool[] _present;
    private readonly Tensor _maskFull, _bktFull, _maskTgt, _bktTgt;                 // dense variant
    private readonly Tensor _maskHR, _bktHR, _maskTHR, _bktTHR, _selfScale;        // skip-T×T variant
    private readonly Tensor?[] _scenRows; private readonly Tensor[,] _lab, _msk;
    private readonly float[] _labelCount;

    public TorchStep(MtfmModel engine, JaggedBatch batch, bool skipTT)
    {
        _c = engine.Config; _l = engine.Layout; SkipTT = skipTT;
        var cpu = (CpuBackend)((ProfilingBackend)engine.Backend).Inner;
        foreach (var p in engine.Parameters)
        {
            var host = new float[p.Value.Length];
            cpu.Download<float>(p.Value, host);
            var shape = p.Value.Shape.ToArray().Select(x => (long)x).ToArray();
            var tp = new TParameter(torch.tensor(host, shape), requires_grad: true);
            _p[p.Name!] = tp;
            _all.Add(tp);
        }
        var decay = engine.Parameters.Where(p => !p.SparseGrad && p.Value.Rank == 2 && p.Name!.EndsWith(".w", StringComparison.Ordinal)).Select(p => _p[p.Name!]).ToList();
        var plain = engine.Parameters.Where(p => !p.SparseGrad && !(p.Value.Rank == 2 && p.Name!.EndsWith(".w", StringComparison.Ordinal))).Select(p => _p[p.Name!]).ToList();
        var emb = engine.Parameters.Where(p => p.SparseGrad).Select(p => _p[p.Name!]).ToList();
        _optDecay = torch.optim.AdamW(decay, lr: 2e-3, weight_decay: 1e-4);
        _optPlain = torch.optim.AdamW(plain, lr: 2e-3, weight_decay: 0);
        _optEmb = torch.optim.Adam(emb, lr: 1e-3);

        // Regular layout: every instance H (lh), R (lr), T (lt).
        _b = batch.InstanceCount; _len = batch.Offsets[1];
        _lh = 0; while (_lh < _len && batch.Segment[_lh] == 0) _lh++;
        _lr = 0; while (_lh + _lr < _len && batch.Segment[_lh + _lr] == 1) _lr++;
        _lt = _len - _lh - _lr; _lhr = _lh + _lr;
        for (int b = 0; b < _b; b++)
            for (int i = 0; i < _len; i++)
                if (batch.Offsets[b] != b * _len || batch.Segment[b * _len + i] != (i < _lh ? 0 : i < _lhr ? 1 : 2))
                    throw new ArgumentException("the torch peer needs instances of equal H/R/T lengths (StepBatch).", nameof(batch));

        int groups = _l.Groups.Count, n = batch.TokenCount;
        var perm = new long[n];
        int at = 0;
        _cat = new Tensor[groups][]; _num = new Tensor?[groups]; _present = new bool[groups];
        for (int g = 0; g < groups; g++)
        {
            var blk = batch.Blocks[g];
            _cat[g] = [];
            if (blk.Rows == 0) continue;
            _present[g] = true;
            for (int r = 0; r < blk.Rows; r++) perm[blk.TokenIndex[r]] = at + r;
            at += blk.Rows;
            _cat[g] = new Tensor[blk.CategoricalWidth];
            for (int c = 0; c < blk.CategoricalWidth; c++)
            {
                var col = new long[blk.Rows];
                for (int r = 0; r < blk.Rows; r++) col[r] = blk.Categorical[r * blk.CategoricalWidth + c];
                _cat[g][c] = torch.tensor(col);
            }
            if (blk.NumericWidth > 0) _num[g] = torch.tensor(blk.Numeric, [blk.Rows, blk.NumericWidth]);
        }
        _perm = torch.tensor(perm);
        _tokGroups = torch.tensor(batch.Group.Select(x => (long)x).ToArray());
        _tgtGroups = torch.tensor(batch.TargetToken.Select(t => (long)batch.Group[t]).ToArray());

        int nb = _c.TimeBuckets;
        (_maskFull, _bktFull) = Pairs(batch, _b, _len, 0, _len, 0, _len, nb, null);
        (_maskTgt, _bktTgt) = Pairs(batch, _b, _len, _lhr, _lt, 0, _len, nb, null);
        var selfCount = new float[_b * _len];
        (_maskHR, _bktHR) = Pairs(batch, _b, _len, 0, _lhr, 0, _lhr, nb, null);
        (_maskTHR, _bktTHR) = Pairs(batch, _b, _len, _lhr, _lt, 0, _lhr, nb, selfCount);
        _selfScale = torch.tensor(selfCount.Take(_b * _lt).ToArray(), [_b, 1, _lt]);

        int ns = _l.ScenarioCount, tasks = _l.TaskCount, nt = batch.TargetCount;
        _scenRows = new Tensor?[ns]; _lab = new Tensor[ns, tasks]; _msk = new Tensor[ns, tasks];
        _labelCount = new float[tasks];
        for (int s = 0; s < ns; s++)
        {
            var rows = Enumerable.Range(0, nt).Where(j => batch.TargetScenario[j] == s).ToArray();
            if (rows.Length == 0) continue;
            _scenRows[s] = torch.tensor(rows.Select(x => (long)x).ToArray());
            for (int k = 0; k < tasks; k++)
            {
                _lab[s, k] = torch.tensor(rows.Select(j => batch.Labels[j * tasks + k]).ToArray());
                _msk[s, k] = torch.tensor(rows.Select(j => (float)batch.LabelMask[j * tasks + k]).ToArray());
                _labelCount[k] += rows.Sum(j => batch.LabelMask[j * tasks + k]);
            }
        }
    }

    /// <summary>True for the variant that skips T×T work.</summary>
    public bool SkipTT { get; }

    /// <summary>
    /// Mask/n(q) [B, 1, Lq, Lk] (float) and time buckets [B·Lq·Lk] (int64) of queries [q0, q0+lq) against keys
    /// [k0, k0+lk) of every instance, by the spec's visibility rule. With <paramref name="selfScale"/> the keys exclude the
    /// query itself (keys are H/R, queries T), n(q) counts it, and selfScale[b·lq + i] receives 1/n(q).
    /// </summary>
    internal static (Tensor Mask, Tensor Buckets) Pairs(JaggedBatch batch, int instances, int len, int q0, int lq, int k0, int lk, int nb, float[]? selfScale)
    {
        var mask = new float[(long)instances * lq * lk];
        var bkt = new long[(long)instances * lq * lk];
        for (int b = 0; b < instances; b++)
        {
            int o = b * len;
            for (int i = 0; i < lq; i++)
            {
                int q = o + q0 + i;
                long row = ((long)b * lq + i) * lk;
                int visible = selfScale is null ? 0 : 1;
                for (int j = 0; j < lk; j++)
                {
                    int k = o + k0 + j;
                    byte kk = batch.Segment[k];
                    bool vis = kk == 0 || (kk == 1 ? k == q || batch.Time[k] < batch.Time[q] : k == q);
                    if (vis) { mask[row + j] = 1; visible++; }
                    bkt[row + j] = HstuAttentionTimeBucket.Bucket(batch.Time[q], batch.Time[k], nb, 1);
                }
                for (int j = 0; j < lk; j++) mask[row + j] /= visible;
                if (selfScale is not null) selfScale[b * lq + i] = 1f / visible;
            }
        }
        return (torch.tensor(mask, [instances, 1, lq, lk]), torch.tensor(bkt));
    }

    private Tensor P(string name) => _p[name];

    private Tensor Linear(Tensor x, string name) => x.matmul(P(name + ".w")) + P(name + ".b");

    private Tensor Gln(Tensor x, Tensor gamma, Tensor beta, Tensor groups) =>
        F.layer_norm(x, [x.shape[1]], eps: 1e-5) * gamma.index_select(0, groups) + beta.index_select(0, groups);

    /// <summary>The summed loss (forward only, recording the graph when grad mode is on).</summary>
    public Tensor Forward()
    {
        int d = _c.DModel, h = _c.Heads, g = _c.KvHeads, dqk = _c.Dqk, dv = _c.Dv;
        // Tokenizers, then every token's row from the concatenated group outputs.
        var parts = new List<Tensor>();
        for (int gi = 0; gi < _l.Groups.Count; gi++)
        {
            if (!_present[gi]) continue;
            var grp = _l.Groups[gi];
            var cols = new List<Tensor>();
            for (int c = 0; c < _cat[gi].Length; c++) cols.Add(P("emb." + _l.Tables[grp.CategoricalTables[c]].Feature).index_select(0, _cat[gi][c]));
            if (_num[gi] is { } num) cols.Add(num);
            var input = cols.Count == 1 ? cols[0] : torch.cat(cols, 1);
            string name = "tok." + grp.Name.Replace(':', '.');
            parts.Add(Linear(F.silu(Linear(input, name + ".hidden")), name + ".out"));
        }
        var x = torch.cat(parts, 0).index_select(0, _perm); // [N, d]
        int n = _b * _len, nt = _b * _lt;
        float alpha = 1f / MathF.Sqrt(dqk);
        for (int layer = 0; layer < _c.Layers; layer++)
        {
            string ln = $"layer{layer}";
            bool full = _c.IsFullLayer(layer);
            var xn = Gln(x, P(ln + ".gln.gamma"), P(ln + ".gln.beta"), _tokGroups);
            var kv = F.silu(Linear(xn, ln + ".w1_kv"));
            var k = kv.narrow(1, 0, g * dqk).view(_b, _len, g, dqk).transpose(1, 2);      // [B, g, L, dqk]
            var v = kv.narrow(1, g * dqk, g * dv).view(_b, _len, g, dv).transpose(1, 2);  // [B, g, L, dv]
            var qin = full ? xn : xn.view(_b, _len, d).narrow(1, _lhr, _lt).reshape(nt, d);
            int lq = full ? _len : _lt;
            var uq = F.silu(Linear(qin, ln + ".w1_uq"));
            var u = uq.narrow(1, 0, h * dv);
            var q = uq.narrow(1, h * dv, h * dqk).view(_b, lq, h, dqk).transpose(1, 2);   // [B, h, Lq, dqk]
            if (g != h) { k = k.repeat_interleave(h / g, 1); v = v.repeat_interleave(h / g, 1); }
            var rab = P(ln + ".rab");
            Tensor o;
            if (!SkipTT) o = Attend(q, k, v, rab, full ? _maskFull : _maskTgt, full ? _bktFull : _bktTgt, alpha);
            else
            {
                var kHR = k.narrow(2, 0, _lhr); var vHR = v.narrow(2, 0, _lhr);
                var qT = full ? q.narrow(2, _lhr, _lt) : q;
                var kT = k.narrow(2, _lhr, _lt); var vT = v.narrow(2, _lhr, _lt);
                // T queries: H/R keys densely, plus the query's own key (the only visible T key).
                var self = F.silu(alpha * (qT * kT).sum(-1) + rab.narrow(1, 0, 1).view(1, h, 1)) * _selfScale; // [B, h, LT]
                var oT = Attend(qT, kHR, vHR, rab, _maskTHR, _bktTHR, alpha) + self.unsqueeze(-1) * vT;
                o = full ? torch.cat([Attend(q.narrow(2, 0, _lhr), kHR, vHR, rab, _maskHR, _bktHR, alpha), oT], 2) : oT;
            }
            var o2 = o.transpose(1, 2).reshape((full ? n : nt), h * dv);
            var y = Linear(F.layer_norm(o2, [h * dv], eps: 1e-5) * u, ln + ".w2");
            if (full) x = x + y;
            else
            {
                var x3 = x.view(_b, _len, d);
                x = torch.cat([x3.narrow(1, 0, _lhr), x3.narrow(1, _lhr, _lt) + y.view(_b, _lt, d)], 1).view(n, d);
            }
        }
        var xt = x.view(_b, _len, d).narrow(1, _lhr, _lt).reshape(nt, d);
        var z = Gln(xt, P("final_gln.gamma"), P("final_gln.beta"), _tgtGroups);
        var experts = F.silu(Linear(z, "mmoe.experts"));
        Tensor? loss = null;
        int E = _c.Experts, de = _c.ExpertWidth;
        for (int t = 0; t < _l.TaskCount; t++)
        {
            Tensor? sum = null;
            for (int s = 0; s < _l.ScenarioCount; s++)
            {
                if (_scenRows[s] is not { } rows) continue;
                string hn = $"head.{_l.Schema.Scenarios[s].Name}.{_l.Schema.Tasks[t]}";
                var zs = z.index_select(0, rows);
                var es = experts.index_select(0, rows).view(-1, E, de);
                var gate = F.softmax(Linear(zs, hn + ".gate"), -1).unsqueeze(1);     // [m, 1, E]
                var mix = gate.bmm(es).squeeze(1);                                     // [m, de]
                var logit = Linear(F.silu(Linear(mix, hn + ".tower1")), hn + ".tower2").view(-1);
                var bce = F.binary_cross_entropy_with_logits(logit, _lab[s, t], weight: _msk[s, t], reduction: nn.Reduction.Sum);
                sum = sum is null ? bce : sum + bce;
            }
            if (sum is null || _labelCount[t] == 0) continue;
            var lt = sum / _labelCount[t];
            loss = loss is null ? lt : loss + lt;
        }
        return loss!;
    }

    /// <summary>O = (SiLU(α·Q·Kᵀ + rab[bucket]) ⊙ mask/n(q))·V, dense over [Lq, Lk].</summary>
    internal static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor rab, Tensor maskScaled, Tensor buckets, float alpha)
    {
        long b = q.shape[0], h = q.shape[1], lq = q.shape[2], lk = k.shape[2];
        var bias = rab.index_select(1, buckets).view(h, b, lq, lk).transpose(0, 1); // [B, h, Lq, Lk]
        var s = q.matmul(k.transpose(2, 3)) * alpha + bias;
        var a = F.silu(s) * maskScaled;
        return a.matmul(v);
    }

    /// <summary>The loss at the current weights (no graph, no update).</summary>
    public float Loss()
    {
        using var scope = torch.NewDisposeScope();
        using var ng = torch.no_grad();
        return Forward().item<float>();
    }

    /// <summary>One training step (forward, backward, clipping to 1.0, AdamW/Adam); returns the loss before the update.</summary>
    public float Step()
    {
        using var scope = torch.NewDisposeScope();
        _optDecay.zero_grad(); _optPlain.zero_grad(); _optEmb.zero_grad();
        var loss = Forward();
        loss.backward();
        torch.nn.utils.clip_grad_norm_(_all, 1.0);
        _optDecay.step(); _optPlain.step(); _optEmb.step();
        return loss.item<float>();
    }

    public void Dispose()
    {
        foreach (var p in _all) p.Dispose();
    }
}
#endif
