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

    /// <summary>
    /// The K|V pre-activations of every row of <paramref name="x"/> and, unless <paramref name="queries"/> is false, the
    /// U|Q pre-activations of the query rows (<paramref name="queryRows"/>; null = every row), from Xn = GLN(x). One
    /// fused op: Xn is not kept for the backward (<see cref="Ops.GroupNormLinear"/>).
    /// </summary>
    private (Variable KvPre, Variable? UqPre) Preactivations(Tape tape, Variable x, Tensor groups, bool queries, Tensor? queryRows)
    {
        var pre = queries
            ? tape.GroupNormLinear(x, _gamma, _beta, groups, new NormProjection(_kv.Weight, _kv.Bias), new NormProjection(_uq.Weight, _uq.Bias, queryRows))
            : tape.GroupNormLinear(x, _gamma, _beta, groups, new NormProjection(_kv.Weight, _kv.Bias));
        return (pre[0], queries ? pre[1] : null);
    }

    /// <summary>K, V of every row of <paramref name="x"/> and, unless <paramref name="queries"/> is false, U and Q of every row (the cached serving paths).</summary>
    private (Variable K, Variable V, Variable[]? Uq) Project(Tape tape, Variable x, Tensor groups, bool queries)
    {
        var (kvPre, uqPre) = Preactivations(tape, x, groups, queries, null);
        var kv = tape.SiluSplit(kvPre, _c.KvHeads * _c.Dqk, _c.KvHeads * _c.Dv);
        var uq = uqPre is null ? null : tape.SiluSplit(uqPre, _c.Heads * _c.Dv, _c.Heads * _c.Dqk);
        return (kv[0], kv[1], uq);
    }

    /// <summary>
    /// x + (LN(O) ⊙ U)·W2 + b2 on every row (<paramref name="rows"/> null) or on the listed rows, after attention of
    /// the queries <paramref name="uq"/> over <paramref name="k"/>, <paramref name="v"/>.
    /// </summary>
    private Variable Attend(Tape tape, AttentionLayout layout, bool targetQueries, Variable[] uq, Variable k, Variable v, Variable x, Tensor? rows)
    {
        var o = tape.HstuAttention(layout, targetQueries, _c.Heads, _c.KvHeads, uq[1], k, v, _rab);
        return tape.LinearResidual(x, tape.LayerNormMul(o, uq[0]), _out.Weight, _out.Bias, rows);
    }

    public Variable Forward(Tape tape, Variable x, BatchInputs inp, FlopCounter? flops)
    {
        int n = x.Value.RowCount, nt = (int)inp.TargetTokens.Length;
        var rows = IsFull ? null : inp.TargetTokens;
        var (kvPre, uqPre) = Preactivations(tape, x, inp.TokenGroups, queries: true, rows);
        if (flops is not null)
        {
            flops.Dense(n, _kv.MacsPerRow);
            flops.Dense(IsFull ? n : nt, _uq.MacsPerRow + _out.MacsPerRow);
            flops.Attention(inp.VisiblePairs(!IsFull), _c.Heads, _c.Dqk, _c.Dv);
        }
        // Training's forward: the gated attention keeps only its pre-activations and O (Ops.HstuGatedAttention); the
        // cached serving paths below run the same arithmetic op by op, since they assemble K and V from cached rows.
        var z = tape.HstuGatedAttention(inp.Attention, !IsFull, _c.Heads, _c.KvHeads, _c.Dqk, _c.Dv, uqPre!, kvPre, _rab);
        return tape.LinearResidual(x, z, _out.Weight, _out.Bias, rows);
    }

    /// <summary>
    /// The layer on H/R rows alone (<paramref name="layout"/> holds no T token): returns the rows after the layer (a
    /// target layer passes them through) and, in <paramref name="k"/> and <paramref name="v"/>, the keys and values the
    /// T tokens of the same instance attend to in this layer.
    /// </summary>
    public Variable EncodeContext(Tape tape, Variable x, Tensor groups, AttentionLayout layout, out Variable k, out Variable v)
    {
        (k, v, var uq) = Project(tape, x, groups, queries: IsFull);
        if (!IsFull) return x;
        return Attend(tape, layout, false, uq!, k, v, x, null);
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
        var (k, v, uq) = Project(tape, xt, targetGroups, queries: true);
        if (contextK.Length > 0 || tokens != xt.Value.RowCount)
        {
            k = tape.AssembleRows(tokens, [.. contextK, k], [.. contextRows, targetRows]);
            v = tape.AssembleRows(tokens, [.. contextV, v], [.. contextRows, targetRows]);
        }
        return Attend(tape, layout, true, uq!, k, v, xt, null);
    }
}
