namespace Mtfm.Engine.Autograd;

/// <summary>
/// Differentiable ops. Each allocates its output in the tape's scope, computes it with backend kernels only, and
/// records a backward node that ADDS into its inputs' gradients (also via backend kernels only).
/// </summary>
internal static partial class Ops
{
    /// <summary>
    /// C = op(A)·op(B) for rank-2 A, B; op transposes when the flag is set. A is [m,k] (or [k,m] with
    /// <paramref name="transA"/>), B is [k,n] (or [n,k] with <paramref name="transB"/>); C is [m,n].
    /// </summary>
    public static Variable MatMul(this Tape tape, Variable a, Variable b, bool transA = false, bool transB = false)
    {
        RequireRank(a, 2, nameof(a));
        RequireRank(b, 2, nameof(b));
        int m = transA ? a.Shape[1] : a.Shape[0], k = transA ? a.Shape[0] : a.Shape[1];
        int kb = transB ? b.Shape[1] : b.Shape[0], n = transB ? b.Shape[0] : b.Shape[1];
        if (k != kb) throw new ArgumentException($"MatMul inner dimensions differ: op(a) is [{m}, {k}] ({a.Value.ShapeString}{(transA ? "ᵀ" : "")}), op(b) is [{kb}, {n}] ({b.Value.ShapeString}{(transB ? "ᵀ" : "")}).", nameof(b));
        var be = tape.Backend;
        var c = tape.Output(tape.Allocate(m, n));
        be.Gemm(transA, transB, 1f, a.Value, b.Value, 0f, c.Value);
        tape.Record([c], [a, b], () =>
        {
            var dc = c.Grad!;
            // beta 0 when the gradient is the first to reach the input (its buffer is then not zeroed).
            if (tape.GradForWrite(a, out bool wa) is { } da)
            {
                if (!transA) be.Gemm(false, !transB, 1f, dc, b.Value, wa ? 0f : 1f, da);   // dA = dC·op(B)ᵀ
                else be.Gemm(transB, true, 1f, b.Value, dc, wa ? 0f : 1f, da);             // dA = op(B)·dCᵀ
            }
            if (tape.GradForWrite(b, out bool wb) is { } db)
            {
                if (!transB) be.Gemm(!transA, false, 1f, a.Value, dc, wb ? 0f : 1f, db);   // dB = op(A)ᵀ·dC
                else be.Gemm(true, transA, 1f, dc, a.Value, wb ? 0f : 1f, db);             // dB = dCᵀ·op(A)
            }
        });
        return c;
    }

    /// <summary>Batched <see cref="MatMul"/> over the first axis of rank-3 A [bt,·,·] and B [bt,·,·]; C is [bt,m,n].</summary>
    public static Variable BatchedMatMul(this Tape tape, Variable a, Variable b, bool transA = false, bool transB = false)
    {
        RequireRank(a, 3, nameof(a));
        RequireRank(b, 3, nameof(b));
        int bt = a.Shape[0];
        if (b.Shape[0] != bt) throw new ArgumentException($"BatchedMatMul batch sizes differ: a {a.Value.ShapeString}, b {b.Value.ShapeString}.", nameof(b));
        int m = transA ? a.Shape[2] : a.Shape[1], k = transA ? a.Shape[1] : a.Shape[2];
        int kb = transB ? b.Shape[2] : b.Shape[1], n = transB ? b.Shape[1] : b.Shape[2];
        if (k != kb) throw new ArgumentException($"BatchedMatMul inner dimensions differ: op(a) is [{m}, {k}], op(b) is [{kb}, {n}].", nameof(b));
        var be = tape.Backend;
        var c = tape.Output(tape.Allocate(bt, m, n));
        be.BatchedGemm(transA, transB, 1f, a.Value, b.Value, 0f, c.Value);
        tape.Record([c], [a, b], () =>
        {
            var dc = c.Grad!;
            if (tape.GradForWrite(a, out bool wa) is { } da)
            {
                if (!transA) be.BatchedGemm(false, !transB, 1f, dc, b.Value, wa ? 0f : 1f, da);
                else be.BatchedGemm(transB, true, 1f, b.Value, dc, wa ? 0f : 1f, da);
            }
            if (tape.GradForWrite(b, out bool wb) is { } db)
            {
                if (!transB) be.BatchedGemm(!transA, false, 1f, a.Value, dc, wb ? 0f : 1f, db);
                else be.BatchedGemm(true, transA, 1f, dc, a.Value, wb ? 0f : 1f, db);
            }
        });
        return c;
    }

    /// <summary>
    /// y = x·W (+ b) for x [n,in], W [in,out], b [out]: a dense layer. With a bias it is one op: the GEMM writes y and
    /// the bias is added in place, and the backward reads dy directly (no separate GEMM output, no copy of its
    /// gradient). The arithmetic is exactly that of <see cref="MatMul"/> followed by <see cref="AddBias"/>.
    /// </summary>
    public static Variable Linear(this Tape tape, Variable x, Variable weight, Variable? bias = null)
    {
        if (bias is null) return tape.MatMul(x, weight);
        RequireRank(x, 2, nameof(x));
        RequireRank(weight, 2, nameof(weight));
        int m = x.Shape[0], k = x.Shape[1], n = weight.Shape[1];
        if (weight.Shape[0] != k) throw new ArgumentException($"Linear inner dimensions differ: x is {x.Value.ShapeString}, weight {weight.Value.ShapeString}.", nameof(weight));
        if (bias.Value.Length != n) throw new ArgumentException($"bias {bias.Value.ShapeString} must hold {n} elements (the output width of weight {weight.Value.ShapeString}).", nameof(bias));
        var be = tape.Backend;
        var y = tape.Output(tape.Allocate(m, n));
        be.Gemm(false, false, 1f, x.Value, weight.Value, 0f, y.Value);
        be.AddBias(y.Value, bias.Value, y.Value);
        tape.Record([y], [x, weight, bias], () =>
        {
            var dy = y.Grad!;
            if (tape.GradFor(bias) is { } db) be.SumRows(dy, db, accumulate: true);
            if (tape.GradForWrite(x, out bool wx) is { } dx) be.Gemm(false, true, 1f, dy, weight.Value, wx ? 0f : 1f, dx);      // dX = dY·Wᵀ
            if (tape.GradFor(weight) is { } dw) be.Gemm(true, false, 1f, x.Value, dy, 1f, dw);    // dW = Xᵀ·dY
        });
        return y;
    }

    private static void RequireRank(Variable v, int rank, string name)
    {
        ArgumentNullException.ThrowIfNull(v, name);
        if (v.Value.Rank != rank) throw new ArgumentException($"{name} must have rank {rank}, its shape is {v.Value.ShapeString}.", name);
    }

    private static void RequireSameShape(Variable a, Variable b, string nameB)
    {
        if (!a.Value.SameShape(b.Value)) throw new ArgumentException($"{nameB} {b.Value.ShapeString} must have the shape {a.Value.ShapeString}.", nameB);
    }
}
