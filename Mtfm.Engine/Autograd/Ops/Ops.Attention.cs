using Mtfm.Engine.Backends;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

internal static partial class Ops
{
    /// <summary>
    /// Fused jagged HSTU attention (spec §4–5) on a batch described by <paramref name="layout"/>. Full layer
    /// (<paramref name="targetQueries"/> false): q [N, h·dqk] and the result [N, h·dv] have a row per token. Target layer:
    /// q and the result have a row per T token (token order); k [N, g·dqk] and v [N, g·dv] always cover all tokens.
    /// rab [h, 2·NB − 1] is the learned relative time bias. No N×N mask or score matrix is built.
    /// </summary>
    public static Variable HstuAttention(this Tape tape, AttentionLayout layout, bool targetQueries, int heads, int kvHeads,
        Variable q, Variable k, Variable v, Variable rab)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var be = tape.Backend;
        if (v.Value.Rank != 2 || v.Shape[1] % kvHeads != 0)
            throw new ArgumentException($"v must be [tokens, kvHeads·dv] with kvHeads = {kvHeads}, its shape is {v.Value.ShapeString}.", nameof(v));
        int dv = v.Shape[1] / kvHeads;
        var o = tape.Output(tape.Allocate(q.Value.RowCount, heads * dv));
        be.HstuAttention(layout, targetQueries, heads, kvHeads, q.Value, k.Value, v.Value, rab.Value, o.Value);
        tape.Record([o], [q, k, v, rab], () =>
            be.HstuAttentionBackward(layout, targetQueries, heads, kvHeads, q.Value, k.Value, v.Value, rab.Value, o.Grad!,
                tape.GradFor(q), tape.GradFor(k), tape.GradFor(v), tape.GradFor(rab)));
        return o;
    }

    /// <summary>
    /// Assembles a [rows, d] tensor from parts: row <c>indices[p][i]</c> of the result is row i of <c>parts[p]</c>; rows no
    /// part names are 0. Indices must not repeat across parts. Used to place each token group's tokenizer output at its
    /// token positions, and each scenario's logits at its T positions.
    /// </summary>
    public static Variable AssembleRows(this Tape tape, int rows, Variable[] parts, Tensor[] indices)
    {
        ArgumentNullException.ThrowIfNull(parts);
        ArgumentNullException.ThrowIfNull(indices);
        if (parts.Length != indices.Length) throw new ArgumentException($"{parts.Length} parts but {indices.Length} index tensors.", nameof(indices));
        if (parts.Length == 0) throw new ArgumentException("AssembleRows needs at least one part.", nameof(parts));
        int d = parts[0].Value.LastDim;
        for (int p = 0; p < parts.Length; p++)
        {
            if (parts[p].Value.Rank != 2 || parts[p].Value.LastDim != d)
                throw new ArgumentException($"parts[{p}] must be [rows, {d}], its shape is {parts[p].Value.ShapeString}.", nameof(parts));
            if (indices[p].Length != parts[p].Value.RowCount)
                throw new ArgumentException($"indices[{p}] has {indices[p].Length} entries for the {parts[p].Value.RowCount} rows of parts[{p}].", nameof(indices));
        }
        var be = tape.Backend;
        var y = tape.Output(tape.Allocate(DType.Float32, [rows, d], zero: true));
        for (int p = 0; p < parts.Length; p++)
            if (parts[p].Value.RowCount > 0) be.ScatterRows(parts[p].Value, indices[p], y.Value, $"indices[{p}]");
        tape.Record([y], parts, () =>
        {
            for (int p = 0; p < parts.Length; p++)
            {
                if (parts[p].Value.RowCount == 0 || tape.GradForWrite(parts[p], out bool overwrite) is not { } dp) continue;
                if (overwrite) { be.GatherRows(y.Grad!, indices[p], dp, $"indices[{p}]"); continue; }
                using var tmp = be.Allocate(DType.Float32, dp.Shape);
                be.GatherRows(y.Grad!, indices[p], tmp, $"indices[{p}]");
                be.Axpy(1f, tmp, dp);
            }
        });
        return y;
    }
}

internal static partial class Ops
{
    /// <summary>
    /// The gated attention of an HSTU layer as one op that keeps only its inputs and O: U|Q = SiLU(<paramref name="uqPre"/>)
    /// split into [h·dv | h·dqk] columns, K|V = SiLU(<paramref name="kvPre"/>) split into [g·dqk | g·dv],
    /// O = <see cref="HstuAttention"/>(Q, K, V, rab), and the result z = LN(O) ⊙ U. The SiLU outputs and LN(O) live only
    /// in scratch buffers; the backward recomputes them from the saved pre-activations and O's row statistics (two SiLU
    /// passes and one normalisation, instead of the step holding U, Q, K, V and LN(O) per layer until its backward).
    /// Values and gradients are bit-identical to <see cref="SiluSplit"/> (K|V, then U|Q), <see cref="HstuAttention"/>
    /// and <see cref="LayerNormMul"/> recorded in that order.
    /// </summary>
    public static Variable HstuGatedAttention(this Tape tape, AttentionLayout layout, bool targetQueries, int heads, int kvHeads,
        int dqk, int dv, Variable uqPre, Variable kvPre, Variable rab)
    {
        ArgumentNullException.ThrowIfNull(layout);
        int[] uqWidths = [heads * dv, heads * dqk], kvWidths = [kvHeads * dqk, kvHeads * dv];
        if (uqPre.Value.Rank != 2 || uqPre.Shape[1] != uqWidths[0] + uqWidths[1])
            throw new ArgumentException($"uqPre must be [queries, {uqWidths[0] + uqWidths[1]}] (h·dv + h·dqk), its shape is {uqPre.Value.ShapeString}.", nameof(uqPre));
        if (kvPre.Value.Rank != 2 || kvPre.Shape[1] != kvWidths[0] + kvWidths[1])
            throw new ArgumentException($"kvPre must be [tokens, {kvWidths[0] + kvWidths[1]}] (g·dqk + g·dv), its shape is {kvPre.Value.ShapeString}.", nameof(kvPre));
        var be = tape.Backend;
        int nq = uqPre.Shape[0];
        var o = tape.Allocate(nq, heads * dv); // kept: LN(O)'s backward reads it
        var mean = tape.Allocate(nq);
        var rstd = tape.Allocate(nq);
        var z = tape.Output(tape.Allocate(nq, heads * dv));
        using (var parts = new Parts(be, uqPre.Value, uqWidths, kvPre.Value, kvWidths))
        {
            be.HstuAttention(layout, targetQueries, heads, kvHeads, parts.Q, parts.K, parts.V, rab.Value, o);
            be.LayerNormMul(o, parts.U, LayerNormEps, z.Value, mean, rstd);
        }
        tape.Record([z], [uqPre, kvPre, rab], () =>
        {
            var dz = z.Grad!;
            using var parts = new Parts(be, uqPre.Value, uqWidths, kvPre.Value, kvWidths); // the same values again
            using var du = be.Allocate(DType.Float32, [nq, heads * dv]);
            using var dO = be.Allocate(DType.Float32, [nq, heads * dv]);
            be.LayerNormMulBackward(o, parts.U, mean, rstd, LayerNormEps, dz, du, accumulateDu: false, dO, accumulateDo: false);
            using var dq = be.Allocate(DType.Float32, parts.Q.Shape);
            using var dk = be.Allocate(DType.Float32, parts.K.Shape);
            using var dvv = be.Allocate(DType.Float32, parts.V.Shape);
            be.HstuAttentionBackward(layout, targetQueries, heads, kvHeads, parts.Q, parts.K, parts.V, rab.Value, dO, dq, dk, dvv, tape.GradFor(rab),
                overwrite: true);
            if (tape.GradForWrite(uqPre, out bool owUq) is { } duq) SiluPartsBackward(be, uqPre.Value, uqWidths, [du, dq], duq, owUq);
            if (tape.GradForWrite(kvPre, out bool owKv) is { } dkv) SiluPartsBackward(be, kvPre.Value, kvWidths, [dk, dvv], dkv, owKv);
        });
        return z;
    }

    /// <summary>Scratch U, Q (from U|Q pre-activations) and K, V (from K|V) of <see cref="HstuGatedAttention"/>.</summary>
    private sealed class Parts : IDisposable
    {
        public Parts(IBackend be, Tensor uqPre, int[] uqWidths, Tensor kvPre, int[] kvWidths)
        {
            K = be.Allocate(DType.Float32, [kvPre.Shape[0], kvWidths[0]]);
            V = be.Allocate(DType.Float32, [kvPre.Shape[0], kvWidths[1]]);
            U = be.Allocate(DType.Float32, [uqPre.Shape[0], uqWidths[0]]);
            Q = be.Allocate(DType.Float32, [uqPre.Shape[0], uqWidths[1]]);
            be.SiluSplit(kvPre, [K, V]);
            be.SiluSplit(uqPre, [U, Q]);
        }

        public Tensor U { get; }
        public Tensor Q { get; }
        public Tensor K { get; }
        public Tensor V { get; }

        public void Dispose()
        {
            U.Dispose();
            Q.Dispose();
            K.Dispose();
            V.Dispose();
        }
    }
}
