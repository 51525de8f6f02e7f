using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Nn;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Model;

/// <summary>
/// One HSTU layer with GQA, preceded by Group LayerNorm (spec §5). W1 is held as two column blocks, U|Q and K|V, so a
/// target layer projects U and Q for the T rows only and K and V for every row:
/// <code>
/// Xn = GLN(X); U,Q = split(SiLU(Xn·W1uq + b1uq)); K,V = split(SiLU(Xn·W1kv + b1kv))
/// O = HSTU-attention(Q, K, V, rab); Y = (LN(O) ⊙ U)·W2 + b2; X' = X + Y
/// </code>
/// A full layer updates every token; a target layer only the T tokens (H and R rows pass through unchanged).
/// Besides the full forward (<see cref="Forward"/>) the layer runs the two halves of the cached serving forward
/// (spec §6): <see cref="EncodeContext"/> on the H/R rows alone (they never see T rows) and <see cref="ForwardTargets"/>
/// on the T rows against the cached H/R keys and values. All three share the projections and the output path below,
/// so the split forward is the full one operation for operation.
/// </summary>
internal sealed class HstuLayer
{
    private readonly MtfmConfig _c;
    private readonly Parameter _gamma, _beta, _rab;
    private readonly Dense _uq, _kv, _out;

    public HstuLayer(ParameterFactory f, string name, MtfmConfig config, int groups, bool full)
    {
        _c = config;
        IsFull = full;
        int h = config.Heads, g = config.KvHeads, dqk = config.Dqk, dv = config.Dv;
        _gamma = f.Constant(name + ".gln.gamma", [groups, config.DModel], 1f);
        _beta = f.Constant(name + ".gln.beta", [groups, config.DModel], 0f);
        _uq = new Dense(f, name + ".w1_uq", config.DModel, h * dv + h * dqk);
        _kv = new Dense(f, name + ".w1_kv", config.DModel, g * dqk + g * dv);
        _rab = f.Constant(name + ".rab", [h, 2 * config.TimeBuckets - 1], 0f);
        _out = new Dense(f, name + ".w2", h * dv, config.DModel);
    }

    /// <summary>True for a full-attention layer, false for a target-attention layer.</summary>
    public bool IsFull { get; }

    /// <summary>Xn = GLN(x) and its K, V (every row of <paramref name="x"/>).</summary>
    private (Variable Xn, Variable K, Variable V) NormKeys(Tape tape, Variable x, Tensor groups)
    {
        var xn = tape.GroupLayerNorm(x, _gamma, _beta, groups);
        var kv = tape.SiluSplit(_kv.Forward(tape, xn), _c.KvHeads * _c.Dqk, _c.KvHeads * _c.Dv);
        return (xn, kv[0], kv[1]);
    }

    /// <summary>U and Q of the query rows.</summary>
    private Variable[] Queries(Tape tape, Variable xnRows) => tape.SiluSplit(_uq.Forward(tape, xnRows), _c.Heads * _c.Dv, _c.Heads * _c.Dqk);

    /// <summary>Y = (LN(O) ⊙ U)·W2 + b2 after attention of the queries <paramref name="uq"/> over <paramref name="k"/>, <paramref name="v"/>.</summary>
    private Variable Attend(Tape tape, AttentionLayout layout, bool targetQueries, Variable[] uq, Variable k, Variable v)
    {
        var o = tape.HstuAttention(layout, targetQueries, _c.Heads, _c.KvHeads, uq[1], k, v, _rab);
        return _out.Forward(tape, tape.Mul(tape.LayerNorm(o, null, null), uq[0]));
    }

    public Variable Forward(Tape tape, Variable x, BatchInputs inp, FlopCounter? flops)
    {
        int n = x.Value.RowCount, nt = (int)inp.TargetTokens.Length;
        var (xn, k, v) = NormKeys(tape, x, inp.TokenGroups);
        var uq = Queries(tape, IsFull ? xn : tape.GatherRows(xn, inp.TargetTokens));
        var y = Attend(tape, inp.Attention, !IsFull, uq, k, v);
        int rows = IsFull ? n : nt;
        if (flops is not null)
        {
            flops.Dense(n, _kv.MacsPerRow);
            flops.Dense(rows, _uq.MacsPerRow + _out.MacsPerRow);
            flops.Attention(inp.VisiblePairs(!IsFull), _c.Heads, _c.Dqk, _c.Dv);
        }
        if (IsFull) return tape.Add(x, y);
        var xt = tape.Add(tape.GatherRows(x, inp.TargetTokens), y);
        return tape.ScatterRows(x, inp.TargetTokens, xt);
    }

    /// <summary>
    /// The layer on H/R rows alone (<paramref name="layout"/> holds no T token): returns the rows after the layer (a
    /// target layer passes them through) and, in <paramref name="k"/> and <paramref name="v"/>, the keys and values the
    /// T tokens of the same instance attend to in this layer.
    /// </summary>
    public Variable EncodeContext(Tape tape, Variable x, Tensor groups, AttentionLayout layout, out Variable k, out Variable v)
    {
        (var xn, k, v) = NormKeys(tape, x, groups);
        if (!IsFull) return x;
        return tape.Add(x, Attend(tape, layout, false, Queries(tape, xn), k, v));
    }

    /// <summary>
    /// The layer on T rows only (<paramref name="xt"/>, in T order): their keys and values are placed at
    /// <paramref name="targetRows"/> among the cached H/R ones (<paramref name="contextK"/>/<paramref name="contextV"/>
    /// at <paramref name="contextRows"/>) to form the <paramref name="tokens"/> rows <paramref name="layout"/> describes,
    /// and every T row attends as in a target layer (a full layer's T rows see exactly the same keys).
    /// </summary>
    public Variable ForwardTargets(Tape tape, Variable xt, Tensor targetGroups, AttentionLayout layout, int tokens,
        Variable[] contextK, Variable[] contextV, Tensor[] contextRows, Tensor targetRows)
    {
        var (xn, k, v) = NormKeys(tape, xt, targetGroups);
        var uq = Queries(tape, xn);
        if (contextK.Length > 0 || tokens != xt.Value.RowCount)
        {
            k = tape.AssembleRows(tokens, [.. contextK, k], [.. contextRows, targetRows]);
            v = tape.AssembleRows(tokens, [.. contextV, v], [.. contextRows, targetRows]);
        }
        return tape.Add(xt, Attend(tape, layout, true, uq, k, v));
    }
}
