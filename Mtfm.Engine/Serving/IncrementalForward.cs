using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Serving;

/// <summary>
/// The serving forward of spec §6, split in two: <see cref="EncodeContext"/> runs the H and R tokens alone through
/// every layer (they never see T tokens, so their states do not depend on the candidates) and keeps each layer's K and V
/// of those rows; <see cref="ScoreTargets"/> then runs only the T tokens, each layer acting as a target layer whose
/// keys are the cached H/R K/V plus the T rows' own. The arithmetic is <see cref="MtfmModel.Forward"/>'s, operation for
/// operation, on the model's own parameters (looked up by name); tests compare it with the full forward.
/// </summary>
internal sealed class IncrementalForward
{
    private readonly MtfmModel _m;
    private readonly MtfmConfig _c;
    private readonly DataLayout _l;
    private readonly Dictionary<string, Parameter> _p;
    private readonly Parameter[] _tables;

    public IncrementalForward(MtfmModel model)
    {
        _m = model ?? throw new ArgumentNullException(nameof(model));
        _c = model.Config;
        _l = model.Layout;
        _p = model.Parameters.ToDictionary(p => p.Name!, StringComparer.Ordinal);
        _tables = _l.Tables.Select(t => P("emb." + t.Feature)).ToArray();
    }

    private Parameter P(string name) => _p.TryGetValue(name, out var p) ? p
        : throw new InvalidOperationException($"the model has no parameter '{name}' (its layout changed; update IncrementalForward).");

    private Variable Linear(Tape tape, string name, Variable x) => tape.Linear(x, P(name + ".w"), P(name + ".b"));

    private Variable Tokenize(Tape tape, int group, GroupBlock b)
    {
        var gi = _l.Groups[group];
        string name = "tok." + gi.Name.Replace(':', '.');
        var cols = new List<Variable>(b.CategoricalWidth + 1);
        var col = new int[b.Rows];
        for (int c = 0; c < b.CategoricalWidth; c++)
        {
            for (int r = 0; r < b.Rows; r++) col[r] = b.Categorical[r * b.CategoricalWidth + c];
            cols.Add(tape.Embedding(_tables[gi.CategoricalTables[c]], tape.Ids(col, [b.Rows])));
        }
        if (b.NumericWidth > 0) cols.Add(tape.Input(b.Numeric, [b.Rows, b.NumericWidth]));
        if (_c.HistoryStatistics && b.StatisticsWidth > 0) cols.Add(tape.Input(b.Statistics, [b.Rows, b.StatisticsWidth]));
        var input = cols.Count == 1 ? cols[0] : tape.Concat(cols.ToArray());
        return Linear(tape, name + ".out", tape.Silu(Linear(tape, name + ".hidden", input)));
    }

    /// <summary>
    /// Runs the first <paramref name="contextTokens"/> tokens of <paramref name="batch"/> (its H and R tokens; one
    /// instance whose T tokens follow them) through the layers and keeps their per-layer K/V. The result owns its memory.
    /// </summary>
    public EncodedContext EncodeContext(JaggedBatch batch, int contextTokens)
    {
        int n = contextTokens, layers = _c.Layers;
        var kinds = batch.Segment.AsSpan(0, n).ToArray();
        var times = batch.Time.AsSpan(0, n).ToArray();
        var groups = batch.Group.AsSpan(0, n).ToArray();
        var ctx = new EncodedContext(n, kinds, times, layers);
        if (n == 0 || layers == 0) return ctx;
        try
        {
            using var tape = new Tape(_m.Backend, gradEnabled: false);
            int h = _c.Heads, g = _c.KvHeads, dqk = _c.Dqk, dv = _c.Dv;
            var parts = new List<Variable>(); var where = new List<Tensor>();
            for (int grp = 0; grp < _l.Groups.Count; grp++)
            {
                var b = batch.Blocks[grp];
                if (b.Rows == 0 || _l.Groups[grp].Segment == SegmentKind.Target) continue;
                parts.Add(Tokenize(tape, grp, b));
                where.Add(tape.Ids(b.TokenIndex, [b.Rows]));
            }
            var x = tape.AssembleRows(n, parts.ToArray(), where.ToArray());
            var groupIds = tape.Ids(groups, [n]);
            using var layout = new AttentionLayout([0, n], kinds, times, _c.TimeBuckets);
            for (int l = 0; l < layers; l++)
            {
                string name = $"layer{l}";
                var xn = tape.GroupLayerNorm(x, P(name + ".gln.gamma"), P(name + ".gln.beta"), groupIds);
                var kv = tape.Split(tape.Silu(Linear(tape, name + ".w1_kv", xn)), g * dqk, g * dv);
                ctx.K[l] = Keep(kv[0].Value); ctx.V[l] = Keep(kv[1].Value);
                if (!_c.IsFullLayer(l)) continue;                    // target layer: H/R rows pass through unchanged
                var uq = tape.Split(tape.Silu(Linear(tape, name + ".w1_uq", xn)), h * dv, h * dqk);
                var o = tape.HstuAttention(layout, false, h, g, uq[1], kv[0], kv[1], P(name + ".rab"));
                var y = Linear(tape, name + ".w2", tape.Mul(tape.LayerNorm(o, null, null), uq[0]));
                x = tape.Add(x, y);
            }
            return ctx;
        }
        catch
        {
            ctx.Dispose();
            throw;
        }
    }

    /// <summary>An owned copy of a tape tensor (the context outlives the tape that computed it).</summary>
    private Tensor Keep(Tensor t)
    {
        var copy = _m.Backend.Allocate(t.DType, t.Shape);
        _m.Backend.Copy(t, copy);
        return copy;
    }

    /// <summary>
    /// Probabilities [T, tasks] (row-major, all tasks) of the T tokens of <paramref name="batch"/> (all of scenario
    /// <paramref name="scenario"/>, after the context's tokens) against the cached <paramref name="ctx"/>.
    /// </summary>
    public float[] ScoreTargets(EncodedContext ctx, JaggedBatch batch, int scenario)
    {
        int nc = ctx.Count, nt = batch.TargetCount, n = nc + nt, tasks = _l.TaskCount;
        if (batch.TokenCount != n) throw new ArgumentException($"batch has {batch.TokenCount} tokens, the context {nc} and the targets {nt}.", nameof(batch));
        int tg = _l.TargetGroup(scenario);
        using var tape = new Tape(_m.Backend, gradEnabled: false);
        var x = Tokenize(tape, tg, batch.Blocks[tg]);                     // rows in T (candidate) order
        var tGroups = new int[nt];
        Array.Fill(tGroups, tg);
        var tGroupIds = tape.Ids(tGroups, [nt]);
        if (_c.Layers > 0)
        {
            int h = _c.Heads, g = _c.KvHeads, dqk = _c.Dqk, dv = _c.Dv;
            var kinds = new byte[n]; var times = new long[n];
            ctx.Kinds.CopyTo(kinds, 0); ctx.Times.CopyTo(times, 0);
            for (int t = nc; t < n; t++) { kinds[t] = (byte)SegmentKind.Target; times[t] = batch.Time[t]; }
            using var layout = new AttentionLayout([0, n], kinds, times, _c.TimeBuckets);
            var ctxRows = new int[nc]; var tRows = new int[nt];
            for (int i = 0; i < nc; i++) ctxRows[i] = i;
            for (int i = 0; i < nt; i++) tRows[i] = nc + i;
            var ctxIdx = tape.Ids(ctxRows, [nc]); var tIdx = tape.Ids(tRows, [nt]);
            for (int l = 0; l < _c.Layers; l++)
            {
                string name = $"layer{l}";
                var xn = tape.GroupLayerNorm(x, P(name + ".gln.gamma"), P(name + ".gln.beta"), tGroupIds);
                var kv = tape.Split(tape.Silu(Linear(tape, name + ".w1_kv", xn)), g * dqk, g * dv);
                var uq = tape.Split(tape.Silu(Linear(tape, name + ".w1_uq", xn)), h * dv, h * dqk);
                Variable k = kv[0], v = kv[1];
                if (nc > 0)
                {
                    k = tape.AssembleRows(n, [new Variable(ctx.K[l]!), kv[0]], [ctxIdx, tIdx]);
                    v = tape.AssembleRows(n, [new Variable(ctx.V[l]!), kv[1]], [ctxIdx, tIdx]);
                }
                var o = tape.HstuAttention(layout, true, h, g, uq[1], k, v, P(name + ".rab"));
                var y = Linear(tape, name + ".w2", tape.Mul(tape.LayerNorm(o, null, null), uq[0]));
                x = tape.Add(x, y);
            }
        }
        var z = tape.GroupLayerNorm(x, P("final_gln.gamma"), P("final_gln.beta"), tGroupIds);
        var experts = tape.Silu(Linear(tape, "mmoe.experts", z));
        var probs = new float[nt * tasks];
        var logits = new float[nt];
        string sname = _l.Schema.Scenarios[scenario].Name;
        for (int k = 0; k < tasks; k++)
        {
            string head = $"head.{sname}.{_l.Schema.Tasks[k]}";
            var gate = tape.Softmax(Linear(tape, head + ".gate", z));
            var mix = tape.Reshape(tape.BatchedMatMul(tape.Reshape(gate, nt, 1, _c.Experts),
                tape.Reshape(experts, nt, _c.Experts, _c.ExpertWidth)), nt, _c.ExpertWidth);
            var logit = Linear(tape, head + ".tower2", tape.Silu(Linear(tape, head + ".tower1", mix)));
            _m.Backend.Download<float>(logit.Value, logits);
            for (int j = 0; j < nt; j++) probs[j * tasks + k] = MtfmModel.Probability(logits[j]);
        }
        return probs;
    }
    /// <summary>
    /// Rows a batched target forward is padded to at least (zero rows in an instance of their own, scored and dropped),
    /// so that a batch of one request and a batch of many take the same matrix-multiply paths: every per-row result is
    /// then independent of the other requests in the batch and batched scores equal sequential ones bit for bit.
    /// </summary>
    public const int MinTargetRows = 64;

    /// <summary>
    /// Probabilities [T_i, tasks] (row-major, all tasks) for several requests of scenario <paramref name="scenario"/> in
    /// one forward: each request's T tokens attend only to its own cached context and themselves (one attention
    /// instance per request), while tokenizer output, projections, feed-forward and heads run on all T rows at once.
    /// Rows are padded to at least <see cref="MinTargetRows"/>.
    /// </summary>
    public float[][] ScoreTargetsMany(IReadOnlyList<(EncodedContext Context, JaggedBatch Batch)> items, int scenario)
    {
        ArgumentNullException.ThrowIfNull(items);
        if (items.Count == 0) return [];
        int tasks = _l.TaskCount, tg = _l.TargetGroup(scenario), m = items.Count;
        var tStart = new int[m + 1];
        int nAll = 0;
        for (int i = 0; i < m; i++)
        {
            var (ctx, b) = items[i];
            if (b.TokenCount != ctx.Count + b.TargetCount)
                throw new ArgumentException($"items[{i}]: batch has {b.TokenCount} tokens, the context {ctx.Count} and the targets {b.TargetCount}.", nameof(items));
            tStart[i + 1] = tStart[i] + b.TargetCount;
            nAll += b.TokenCount;
        }
        int nt = tStart[m], pad = Math.Max(0, MinTargetRows - nt), rows = nt + pad, n = nAll + pad;
        using var tape = new Tape(_m.Backend, gradEnabled: false);
        var tokParts = new Variable[m]; var tokWhere = new Tensor[m];
        for (int i = 0; i < m; i++)
        {
            tokParts[i] = Tokenize(tape, tg, items[i].Batch.Blocks[tg]);
            var idx = new int[items[i].Batch.TargetCount];
            for (int j = 0; j < idx.Length; j++) idx[j] = tStart[i] + j;
            tokWhere[i] = tape.Ids(idx, [idx.Length]);
        }
        var x = m == 1 && pad == 0 ? tokParts[0] : tape.AssembleRows(rows, tokParts, tokWhere);   // padding rows stay zero
        var tGroups = new int[rows];
        Array.Fill(tGroups, tg);
        var tGroupIds = tape.Ids(tGroups, [rows]);
        if (_c.Layers > 0)
        {
            int h = _c.Heads, g = _c.KvHeads, dqk = _c.Dqk, dv = _c.Dv;
            var kinds = new byte[n]; var times = new long[n];
            var offsets = new int[m + (pad > 0 ? 2 : 1)];
            var ctxWhere = new List<Tensor>(m); var ctxIdx = new List<int>(m);
            var tRows = new int[rows];
            int at = 0;
            for (int i = 0; i < m; i++)
            {
                var (ctx, b) = items[i];
                offsets[i] = at;
                ctx.Kinds.CopyTo(kinds, at); ctx.Times.CopyTo(times, at);
                if (ctx.Count > 0)
                {
                    var cr = new int[ctx.Count];
                    for (int j = 0; j < cr.Length; j++) cr[j] = at + j;
                    ctxWhere.Add(tape.Ids(cr, [cr.Length])); ctxIdx.Add(i);
                }
                at += ctx.Count;
                for (int j = 0; j < b.TargetCount; j++, at++)
                {
                    kinds[at] = (byte)SegmentKind.Target; times[at] = b.Time[ctx.Count + j]; tRows[tStart[i] + j] = at;
                }
            }
            if (pad > 0)
            {
                offsets[m] = at;
                long tPad = items[m - 1].Batch.Time[items[m - 1].Batch.TokenCount - 1];
                for (int j = 0; j < pad; j++, at++) { kinds[at] = (byte)SegmentKind.Target; times[at] = tPad; tRows[nt + j] = at; }
            }
            offsets[^1] = at;
            using var layout = new AttentionLayout(offsets, kinds, times, _c.TimeBuckets);
            var tIdx = tape.Ids(tRows, [rows]);
            for (int l = 0; l < _c.Layers; l++)
            {
                string name = $"layer{l}";
                var xn = tape.GroupLayerNorm(x, P(name + ".gln.gamma"), P(name + ".gln.beta"), tGroupIds);
                var kv = tape.Split(tape.Silu(Linear(tape, name + ".w1_kv", xn)), g * dqk, g * dv);
                var uq = tape.Split(tape.Silu(Linear(tape, name + ".w1_uq", xn)), h * dv, h * dqk);
                var kParts = new Variable[ctxIdx.Count + 1]; var vParts = new Variable[ctxIdx.Count + 1]; var where = new Tensor[ctxIdx.Count + 1];
                for (int c = 0; c < ctxIdx.Count; c++)
                {
                    kParts[c] = new Variable(items[ctxIdx[c]].Context.K[l]!); vParts[c] = new Variable(items[ctxIdx[c]].Context.V[l]!); where[c] = ctxWhere[c];
                }
                kParts[^1] = kv[0]; vParts[^1] = kv[1]; where[^1] = tIdx;
                var k = tape.AssembleRows(n, kParts, where);
                var v = tape.AssembleRows(n, vParts, where);
                var o = tape.HstuAttention(layout, true, h, g, uq[1], k, v, P(name + ".rab"));
                var y = Linear(tape, name + ".w2", tape.Mul(tape.LayerNorm(o, null, null), uq[0]));
                x = tape.Add(x, y);
            }
        }
        var z = tape.GroupLayerNorm(x, P("final_gln.gamma"), P("final_gln.beta"), tGroupIds);
        var experts = tape.Silu(Linear(tape, "mmoe.experts", z));
        var result = new float[m][];
        for (int i = 0; i < m; i++) result[i] = new float[(tStart[i + 1] - tStart[i]) * tasks];
        var logits = new float[rows];
        string sname = _l.Schema.Scenarios[scenario].Name;
        for (int k = 0; k < tasks; k++)
        {
            string head = $"head.{sname}.{_l.Schema.Tasks[k]}";
            var gate = tape.Softmax(Linear(tape, head + ".gate", z));
            var mix = tape.Reshape(tape.BatchedMatMul(tape.Reshape(gate, rows, 1, _c.Experts),
                tape.Reshape(experts, rows, _c.Experts, _c.ExpertWidth)), rows, _c.ExpertWidth);
            var logit = Linear(tape, head + ".tower2", tape.Silu(Linear(tape, head + ".tower1", mix)));
            _m.Backend.Download<float>(logit.Value, logits);
            for (int i = 0; i < m; i++)
                for (int j = tStart[i]; j < tStart[i + 1]; j++) result[i][(j - tStart[i]) * tasks + k] = MtfmModel.Probability(logits[j]);
        }
        return result;
    }
}

/// <summary>The H/R part of a request after every layer: per layer the K and V of its rows (owned tensors), and the tokens' kinds and times.</summary>
internal sealed class EncodedContext(int count, byte[] kinds, long[] times, int layers) : IDisposable
{
    public int Count { get; } = count;
    public byte[] Kinds { get; } = kinds;
    public long[] Times { get; } = times;
    public Tensor?[] K { get; } = new Tensor?[layers];
    public Tensor?[] V { get; } = new Tensor?[layers];

    /// <summary>Bytes held: K/V, the token metadata and a nominal 64-byte overhead (so an empty context still counts).</summary>
    public long Bytes => 64 + Count * 9L + K.Sum(x => x is null ? 0 : x.Length * 4L) + V.Sum(x => x is null ? 0 : x.Length * 4L);

    private int _refs = 1;

    /// <summary>Adds a holder (the cache, a prepared request); each holder releases it with <see cref="Dispose"/>.</summary>
    public EncodedContext Retain()
    {
        if (Interlocked.Increment(ref _refs) <= 1) throw new ObjectDisposedException(nameof(EncodedContext));
        return this;
    }

    /// <summary>Releases one holder; the K/V tensors are freed when the last one releases.</summary>
    public void Dispose()
    {
        int left = Interlocked.Decrement(ref _refs);
        if (left > 0) return;
        if (left < 0) { Interlocked.Exchange(ref _refs, 0); return; }
        foreach (var t in K) t?.Dispose();
        foreach (var t in V) t?.Dispose();
        Array.Clear(K);
        Array.Clear(V);
    }
}
