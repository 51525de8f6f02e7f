using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

internal static partial class Ops
{
    /// <summary>
    /// Embedding lookup: y[i,:] = table[ids[i],:] for table [V,d] and Int32/Int64 ids of any shape; y is
    /// [ids..., d]. An id outside [0,V) throws naming <c>ids</c>, the value and its position. When the table is a
    /// <see cref="Parameter"/> with <see cref="Parameter.SparseGrad"/>, its gradient is row-sparse (only touched rows);
    /// otherwise it is scatter-added into the dense gradient.
    /// </summary>
    public static Variable Embedding(this Tape tape, Variable table, Tensor ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        RequireRank(table, 2, nameof(table));
        if (!ids.DType.IsIndex()) throw new ArgumentException($"ids must be Int32 or Int64, they are {ids.DType}.", nameof(ids));
        var be = tape.Backend;
        int n = checked((int)ids.Length), d = table.Shape[1];
        var shape = new int[ids.Rank + 1];
        ids.Shape.CopyTo(shape);
        shape[^1] = d;
        var y = tape.Output(tape.Allocate(shape));
        be.GatherRows(table.Value, ids.Reshape(n), y.Value.Reshape(n, d), nameof(ids));
        tape.Record([y], [table], () =>
        {
            var dy = y.Grad!.Reshape(n, d);
            if (table is Parameter { SparseGrad: true } p) p.AccumulateSparse(ids.Reshape(n), dy);
            else if (tape.GradFor(table) is { } dt) be.ScatterAddRows(dy, ids.Reshape(n), dt, nameof(ids));
        });
        return y;
    }
}
