using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

internal static partial class Ops
{
    /// <summary>
    /// z = LN(o) ⊙ u (plain LayerNorm over the last axis, then the gate; o and u [n, w]) without keeping LN(o): the
    /// backward recomputes it from o and the saved row statistics. Values and gradients are bit-identical to
    /// <see cref="LayerNorm"/> (no affine) followed by <see cref="Mul"/>.
    /// </summary>
    public static Variable LayerNormMul(this Tape tape, Variable o, Variable u)
    {
        RequireSameShape(o, u, nameof(u));
        var be = tape.Backend;
        int rows = o.Value.LastDim == 0 ? 0 : (int)(o.Value.Length / o.Value.LastDim);
        var mean = tape.Allocate(rows);
        var rstd = tape.Allocate(rows);
        var z = tape.Output(tape.Allocate(o.Shape));
        be.LayerNormMul(o.Value, u.Value, LayerNormEps, z.Value, mean, rstd);
        tape.Record([z], [o, u], () =>
        {
            var du = tape.GradForWrite(u, out bool wu);
            var dO = tape.GradForWrite(o, out bool wo);
            be.LayerNormMulBackward(o.Value, u.Value, mean, rstd, LayerNormEps, z.Grad!, du, accumulateDu: !wu, dO, accumulateDo: !wo);
        });
        return z;
    }

    /// <summary>
    /// The residual output of a layer: y = a·W + b added to x, on every row (<paramref name="rows"/> null: x + y, x and
    /// y [n, out]) or on the rows <paramref name="rows"/> lists (the other rows of x pass through; a [m, in] holds one
    /// row per listed row). The projection y and the updated rows are not kept: the backward needs neither. Values and
    /// gradients are bit-identical to <see cref="Linear"/> then <see cref="Add"/> (every row) or <see cref="Linear"/>,
    /// <see cref="GatherRows"/>, <see cref="Add"/>, <see cref="ScatterRows"/> (listed rows), recorded in that order.
    /// </summary>
    public static Variable LinearResidual(this Tape tape, Variable x, Variable a, Variable weight, Variable bias, Tensor? rows = null)
    {
        RequireRank(x, 2, nameof(x));
        RequireRank(a, 2, nameof(a));
        RequireRank(weight, 2, nameof(weight));
        int m = a.Shape[0], k = a.Shape[1], width = weight.Shape[1];
        if (weight.Shape[0] != k) throw new ArgumentException($"LinearResidual inner dimensions differ: a is {a.Value.ShapeString}, weight {weight.Value.ShapeString}.", nameof(weight));
        if (bias.Value.Length != width) throw new ArgumentException($"bias {bias.Value.ShapeString} must hold {width} elements (the output width of weight {weight.Value.ShapeString}).", nameof(bias));
        if (x.Shape[1] != width) throw new ArgumentException($"x {x.Value.ShapeString} must be {width} wide (the output width of weight {weight.Value.ShapeString}).", nameof(x));
        if (rows is { Rank: not 1 }) throw new ArgumentException($"rows must have rank 1, their shape is {rows.ShapeString}.", nameof(rows));
        if ((rows?.Length ?? x.Shape[0]) != m) throw new ArgumentException($"a {a.Value.ShapeString} must have one row per updated row of x ({rows?.Length ?? x.Shape[0]}).", nameof(a));
        var be = tape.Backend;
        var output = tape.Output(tape.Allocate(x.Shape));
        using (var y = be.Allocate(DType.Float32, [m, width]))
        {
            be.Gemm(false, false, 1f, a.Value, weight.Value, 0f, y);
            be.AddBias(y, bias.Value, y);
            if (rows is null) be.Add(x.Value, y, output.Value);
            else
            {
                using var updated = be.Allocate(DType.Float32, [m, width]);
                be.GatherRows(x.Value, rows, updated, nameof(rows));
                be.Add(updated, y, updated);
                be.Copy(x.Value, output.Value);
                be.ScatterRows(updated, rows, output.Value, nameof(rows));
            }
        }
        tape.Record([output], [x, a, weight, bias], () =>
        {
            var dOut = output.Grad!;
            Tensor? dyRows = null;
            try
            {
                // x's gradient is dOut (outside the updated rows); it is handed over last, after every read of dOut,
                // so that when it is the first gradient to reach x, x can take dOut's buffer (Tape.TryHandOffGrad).
                bool xIsA = ReferenceEquals(x, a);
                if (rows is null && xIsA) AddGrad(tape, x, dOut); // keep x's gradient ahead of a's in the same buffer
                else if (rows is not null)
                {
                    dyRows = be.Allocate(DType.Float32, [m, width], zero: true);
                    using (var part = be.Allocate(DType.Float32, [m, width]))
                    {
                        be.GatherRows(dOut, rows, part, nameof(rows));
                        be.Axpy(1f, part, dyRows);
                    }
                    // ScatterRows' backward: x gets dOut outside the rows, the updated rows their part of dOut. When
                    // this is the first gradient to reach x (the usual case: x's other consumers come earlier in the
                    // forward), it is written in place: dOut with the rows zeroed (dOut's own buffer where the tape
                    // hands it over), instead of zeroing a buffer, masking a copy and adding it (the same values; a −0
                    // of dOut stays −0 instead of becoming +0).
                    if (tape.TryHandOffGrad(output, x)) be.FillRows(x.Grad!, rows, 0f, nameof(rows));
                    else if (tape.GradForWrite(x, out bool fresh) is { } dx)
                    {
                        if (fresh)
                        {
                            be.Copy(dOut, dx);
                            be.FillRows(dx, rows, 0f, nameof(rows));
                        }
                        else
                        {
                            using var masked = be.Allocate(DType.Float32, dOut.Shape);
                            be.Copy(dOut, masked);
                            be.FillRows(masked, rows, 0f, nameof(rows));
                            be.Axpy(1f, masked, dx);
                        }
                    }
                    // GatherRows' backward: x[rows] gets the updated rows' gradient too.
                    if (tape.GradFor(x) is { } dx2) be.ScatterAddRows(dyRows, rows, dx2, nameof(rows));
                }
                // Linear's backward on the gradient of y (= the gradient of the updated rows).
                var dy = dyRows ?? dOut;
                if (tape.GradFor(bias) is { } db) be.SumRows(dy, db, accumulate: true);
                if (tape.GradForWrite(a, out bool wa) is { } da) be.Gemm(false, true, 1f, dy, weight.Value, wa ? 0f : 1f, da);
                if (tape.GradFor(weight) is { } dw) be.Gemm(true, false, 1f, a.Value, dy, 1f, dw);
                if (rows is null && !xIsA && !tape.TryHandOffGrad(output, x)) AddGrad(tape, x, dOut);
            }
            finally { dyRows?.Dispose(); }
        });
        return output;
    }
}
