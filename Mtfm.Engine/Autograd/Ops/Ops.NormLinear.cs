using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

/// <summary>One dense projection y = Xn[rows]·W + b of a <see cref="Ops.GroupNormLinear"/>; <c>Rows</c> null = every row.</summary>
internal readonly record struct NormProjection(Variable Weight, Variable Bias, Tensor? Rows = null);

internal static partial class Ops
{
    /// <summary>
    /// Group LayerNorm followed by the dense projections that read its output, without keeping that output:
    /// Xn = GLN(x) (as <see cref="GroupLayerNorm"/>), then for every projection j, y_j = Xn[rows_j]·W_j + b_j (as
    /// <see cref="GatherRows"/> then <see cref="Linear"/>). Xn lives only inside the forward; the backward recomputes
    /// it from x and the saved row statistics (one normalisation pass) instead of the step holding an [n, d] tensor per
    /// layer until its backward. Values and gradients are bit-identical to the unfused ops recorded in the same order
    /// (projection 0 first) while the projections on every row are at most 512 wide (see the backward).
    /// </summary>
    public static Variable[] GroupNormLinear(this Tape tape, Variable x, Variable gamma, Variable beta, Tensor groupIds, params NormProjection[] projections)
    {
        ArgumentNullException.ThrowIfNull(projections);
        ArgumentNullException.ThrowIfNull(groupIds);
        if (projections.Length == 0) throw new ArgumentException("at least one projection is needed.", nameof(projections));
        RequireRank(x, 2, nameof(x));
        if (gamma.Value.Rank != 2 || gamma.Value.LastDim != x.Value.LastDim)
            throw new ArgumentException($"gamma {gamma.Value.ShapeString} must be [groups, {x.Value.LastDim}].", nameof(gamma));
        RequireSameShape(gamma, beta, nameof(beta));
        if (groupIds.Length != x.Value.RowCount)
            throw new ArgumentException($"groupIds {groupIds.ShapeString} must hold one id per row of x {x.Value.ShapeString}.", nameof(groupIds));
        int n = x.Shape[0], d = x.Shape[1];
        foreach (var p in projections)
        {
            RequireRank(p.Weight, 2, nameof(projections));
            if (p.Weight.Shape[0] != d) throw new ArgumentException($"projection weight {p.Weight.Value.ShapeString} must have {d} rows (the width of x {x.Value.ShapeString}).", nameof(projections));
            if (p.Bias.Value.Length != p.Weight.Shape[1]) throw new ArgumentException($"projection bias {p.Bias.Value.ShapeString} must hold {p.Weight.Shape[1]} elements.", nameof(projections));
            if (p.Rows is { Rank: not 1 } r) throw new ArgumentException($"projection rows must have rank 1, their shape is {r.ShapeString}.", nameof(projections));
        }
        var be = tape.Backend;
        var mean = tape.Allocate(n);
        var rstd = tape.Allocate(n);
        var ys = new Variable[projections.Length];
        using (var xn = be.Allocate(DType.Float32, [n, d]))
        {
            be.LayerNorm(x.Value, gamma.Value, beta.Value, groupIds, LayerNormEps, xn, mean, rstd);
            for (int j = 0; j < projections.Length; j++)
            {
                var p = projections[j];
                int m = p.Rows is null ? n : (int)p.Rows.Length;
                ys[j] = tape.Output(tape.Allocate(m, p.Weight.Shape[1]));
                using var rows = p.Rows is null ? null : Gathered(be, xn, p.Rows);
                be.Gemm(false, false, 1f, rows ?? xn, p.Weight.Value, 0f, ys[j].Value);
                be.AddBias(ys[j].Value, p.Bias.Value, ys[j].Value);
            }
        }
        var inputs = new List<Variable> { x, gamma, beta };
        foreach (var p in projections) { inputs.Add(p.Weight); inputs.Add(p.Bias); }
        tape.Record(ys, [.. inputs], () =>
        {
            using var xn = be.Allocate(DType.Float32, [n, d]);
            be.LayerNorm(x.Value, gamma.Value, beta.Value, groupIds, LayerNormEps, xn, mean, rstd); // the same values again
            Tensor? dxn = null; // allocated by the first gradient to reach Xn
            try
            {
                // Projections on every row first (each in the reverse of the recording order), so the first of them
                // writes dXn (beta 0) and no [n, d] buffer is zeroed; then those on listed rows scatter-add into it.
                // Every dXn element is then GEMM + scattered rows instead of (zeros + scattered rows) + GEMM: the
                // same sum of the same two terms while the GEMM reduces k in one block (k ≤ the CPU GEMM's KC, 512:
                // every preset's K|V width), so the bits of the unfused graph; two float additions in another order
                // beyond that.
                Span<int> order = projections.Length <= 16 ? stackalloc int[projections.Length] : new int[projections.Length];
                int next = 0;
                for (int j = projections.Length - 1; j >= 0; j--) if (projections[j].Rows is null) order[next++] = j;
                for (int j = projections.Length - 1; j >= 0; j--) if (projections[j].Rows is not null) order[next++] = j;
                foreach (int j in order)
                {
                    if (ys[j].Grad is not { } dy) continue;
                    var p = projections[j];
                    if (tape.GradFor(p.Bias) is { } db) be.SumRows(dy, db, accumulate: true);
                    if (p.Rows is null)
                    {
                        // Linear's dX = dY·Wᵀ: written by the first gradient to reach Xn, added by later ones.
                        bool first = dxn is null;
                        dxn ??= be.Allocate(DType.Float32, [n, d]);
                        be.Gemm(false, true, 1f, dy, p.Weight.Value, first ? 0f : 1f, dxn);
                        if (tape.GradFor(p.Weight) is { } dw) be.Gemm(true, false, 1f, xn, dy, 1f, dw);
                    }
                    else
                    {
                        // Linear's dX into its own rows, then GatherRows' backward adds them into a zeroed dXn.
                        using var drows = be.Allocate(DType.Float32, [dy.Shape[0], d]);
                        be.Gemm(false, true, 1f, dy, p.Weight.Value, 0f, drows);
                        if (tape.GradFor(p.Weight) is { } dw)
                        {
                            using var rows = Gathered(be, xn, p.Rows);
                            be.Gemm(true, false, 1f, rows, dy, 1f, dw);
                        }
                        dxn ??= be.Allocate(DType.Float32, [n, d], zero: true); // no projection on every row reached Xn
                        be.ScatterAddRows(drows, p.Rows, dxn, "rows");
                    }
                }
                if (dxn is null) return;
                be.LayerNormBackward(x.Value, mean, rstd, gamma.Value, groupIds, dxn, tape.GradFor(x), tape.GradFor(gamma), tape.GradFor(beta));
            }
            finally { dxn?.Dispose(); }
        });
        return ys;
    }

    private static Tensor Gathered(Backends.IBackend be, Tensor x, Tensor rows)
    {
        var t = be.Allocate(DType.Float32, [(int)rows.Length, x.Shape[1]]);
        be.GatherRows(x, rows, t, "rows");
        return t;
    }
}
