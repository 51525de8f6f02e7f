using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

internal static partial class Ops
{
    /// <summary>A view of rows [start, start+count) of x (shares storage; gradients flow back into those rows).</summary>
    public static Variable Rows(this Tape tape, Variable x, int start, int count)
    {
        var view = x.Value.Rows(start, count);
        var y = tape.Output(view);
        var be = tape.Backend;
        tape.Record([y], [x], () =>
        {
            if (tape.GradFor(x) is { } dx) be.Axpy(1f, y.Grad!, dx.Rows(start, count));
        });
        return y;
    }

    /// <summary>A view of x with another shape of the same length (shares storage).</summary>
    public static Variable Reshape(this Tape tape, Variable x, params int[] shape)
    {
        var y = tape.Output(x.Value.Reshape(shape));
        tape.Record([y], [x], () => AddGrad(tape, x, y.Grad!));
        return y;
    }

    /// <summary>
    /// y[i,:] = x[index[i],:] for x [n, ...] and Int32/Int64 index [m]; y is [m, ...] (e.g. select the T tokens of a
    /// jagged batch). Backward scatter-adds, so repeated indices are fine.
    /// </summary>
    public static Variable GatherRows(this Tape tape, Variable x, Tensor index)
    {
        ArgumentNullException.ThrowIfNull(index);
        if (x.Value.Rank < 1) throw new ArgumentException("x must have rank ≥ 1.", nameof(x));
        if (index.Rank != 1) throw new ArgumentException($"index must have rank 1, its shape is {index.ShapeString}.", nameof(index));
        var be = tape.Backend;
        var shape = x.Shape.ToArray();
        shape[0] = (int)index.Length;
        var y = tape.Output(tape.Allocate(shape));
        be.GatherRows(x.Value, index, y.Value, nameof(index));
        tape.Record([y], [x], () =>
        {
            if (tape.GradFor(x) is { } dx) be.ScatterAddRows(y.Grad!, index, dx, nameof(index));
        });
        return y;
    }

    /// <summary>
    /// y = x with rows replaced: y[index[i],:] = src[i,:] (index distinct), every other row of y equal to x — e.g.
    /// write the updated T tokens back into the jagged batch. x [n, ...], src [m, ...], index [m].
    /// </summary>
    public static Variable ScatterRows(this Tape tape, Variable x, Tensor index, Variable src)
    {
        ArgumentNullException.ThrowIfNull(index);
        if (index.Rank != 1) throw new ArgumentException($"index must have rank 1, its shape is {index.ShapeString}.", nameof(index));
        if (src.Value.RowCount != index.Length) throw new ArgumentException($"src {src.Value.ShapeString} must have one row per index ({index.Length}).", nameof(src));
        if (src.Value.RowLength != x.Value.RowLength) throw new ArgumentException($"src {src.Value.ShapeString} and x {x.Value.ShapeString} must have equal row widths.", nameof(src));
        var be = tape.Backend;
        var y = tape.Output(tape.Allocate(x.Shape));
        be.Copy(x.Value, y.Value);
        be.ScatterRows(src.Value, index, y.Value, nameof(index));
        tape.Record([y], [x, src], () =>
        {
            var dy = y.Grad!;
            if (tape.GradFor(x) is { } dx)
            {
                var tmp = be.Allocate(DType.Float32, dy.Shape);
                try
                {
                    be.Copy(dy, tmp);
                    be.FillRows(tmp, index, 0f, nameof(index));
                    be.Axpy(1f, tmp, dx);
                }
                finally { tmp.Dispose(); }
            }
            if (tape.GradFor(src) is { } ds)
            {
                var tmp = be.Allocate(DType.Float32, ds.Shape);
                try
                {
                    be.GatherRows(dy, index, tmp, nameof(index));
                    be.Axpy(1f, tmp, ds);
                }
                finally { tmp.Dispose(); }
            }
        });
        return y;
    }
}
