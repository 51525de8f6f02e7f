using Mtfm.Engine.Autograd;
using Mtfm.Engine.Nn;

namespace Mtfm.Engine.Model;

/// <summary>
/// One HSTU layer with GQA, preceded by Group LayerNorm (spec §5). W1 is held as two column blocks, U|Q and K|V, so a
/// target layer projects U and Q for the T rows only and K and V for every row:
/// <code>
/// Xn = GLN(X); U,Q = split(SiLU(Xn·W1uq + b1uq)); K,V = split(SiLU(Xn·W1kv + b1kv))
/// O = HSTU-attention(Q, K, V, rab); Y = (LN(O) ⊙ U)·W2 + b2; X' = X + Y
/// </code>
/// A full layer updates every token; a target layer only the T tokens (H and R rows pass through unchanged).
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

    public Variable Forward(Tape tape, Variable x, BatchInputs inp, FlopCounter? flops)
    {
        int h = _c.Heads, g = _c.KvHeads, dqk = _c.Dqk, dv = _c.Dv;
        int n = x.Value.RowCount, nt = (int)inp.TargetTokens.Length;
        var xn = tape.GroupLayerNorm(x, _gamma, _beta, inp.TokenGroups);
        var kv = tape.SiluSplit(_kv.Forward(tape, xn), g * dqk, g * dv);
        var queries = IsFull ? xn : tape.GatherRows(xn, inp.TargetTokens);
        var uq = tape.SiluSplit(_uq.Forward(tape, queries), h * dv, h * dqk);
        var o = tape.HstuAttention(inp.Attention, !IsFull, h, g, uq[1], kv[0], kv[1], _rab);
        var y = _out.Forward(tape, tape.Mul(tape.LayerNorm(o, null, null), uq[0]));
        int rows = IsFull ? n : nt;
        if (flops is not null)
        {
            flops.Dense(n, _kv.MacsPerRow);
            flops.Dense(rows, _uq.MacsPerRow + _out.MacsPerRow);
            flops.Attention(inp.VisiblePairs(!IsFull), h, dqk, dv);
        }
        if (IsFull) return tape.Add(x, y);
        var xt = tape.Add(tape.GatherRows(x, inp.TargetTokens), y);
        return tape.ScatterRows(x, inp.TargetTokens, xt);
    }
}
