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
