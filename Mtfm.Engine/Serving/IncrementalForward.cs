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
            for (int j = 0; j < nt; j++) probs[j * tasks + k] = 1f / (1f + MathF.Exp(-logits[j]));
        }
        return probs;
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

    public void Dispose()
    {
        foreach (var t in K) t?.Dispose();
        foreach (var t in V) t?.Dispose();
        Array.Clear(K);
        Array.Clear(V);
    }
}
