using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

internal static partial class Ops
{
    /// <summary>y = a + b (same shapes).</summary>
    public static Variable Add(this Tape tape, Variable a, Variable b)
    {
        RequireSameShape(a, b, nameof(b));
        var be = tape.Backend;
        var y = tape.Output(tape.Allocate(a.Shape));
        be.Add(a.Value, b.Value, y.Value);
        tape.Record([y], [a, b], () =>
        {
            AddGrad(tape, a, y.Grad!);
            AddGradLast(tape, b, y);
        });
        return y;
    }

    /// <summary>y = a ⊙ b (same shapes).</summary>
    public static Variable Mul(this Tape tape, Variable a, Variable b)
    {
        RequireSameShape(a, b, nameof(b));
        var be = tape.Backend;
        var y = tape.Output(tape.Allocate(a.Shape));
        be.Mul(a.Value, b.Value, y.Value);
        tape.Record([y], [a, b], () =>
        {
            if (tape.GradForWrite(a, out bool wa) is { } da) { if (wa) be.Mul(y.Grad!, b.Value, da); else be.MulAccumulate(y.Grad!, b.Value, da); }
            if (tape.GradForWrite(b, out bool wb) is { } db) { if (wb) be.Mul(y.Grad!, a.Value, db); else be.MulAccumulate(y.Grad!, a.Value, db); }
        });
        return y;
    }

    /// <summary>y = alpha·x.</summary>
    public static Variable Scale(this Tape tape, Variable x, float alpha)
    {
        var be = tape.Backend;
        var y = tape.Output(tape.Allocate(x.Shape));
        be.Scale(x.Value, alpha, y.Value);
        tape.Record([y], [x], () =>
        {
            if (tape.GradForWrite(x, out bool w) is { } dx) { if (w) be.Scale(y.Grad!, alpha, dx); else be.Axpy(alpha, y.Grad!, dx); }
        });
        return y;
    }

    /// <summary>y[i,:] = x[i,:] + bias for x [n,d] (any rank; d = last dimension) and bias [d].</summary>
    public static Variable AddBias(this Tape tape, Variable x, Variable bias)
    {
        if (bias.Value.Length != x.Value.LastDim)
            throw new ArgumentException($"bias {bias.Value.ShapeString} must hold {x.Value.LastDim} elements (the last dimension of x {x.Value.ShapeString}).", nameof(bias));
        var be = tape.Backend;
        var y = tape.Output(tape.Allocate(x.Shape));
        be.AddBias(x.Value, bias.Value, y.Value);
        tape.Record([y], [x, bias], () =>
        {
            if (tape.GradFor(bias) is { } db) be.SumRows(y.Grad!, db, accumulate: true);
            AddGradLast(tape, x, y);
        });
        return y;
    }

    /// <summary>y = SiLU(x) = x·σ(x).</summary>
    public static Variable Silu(this Tape tape, Variable x)
    {
        var be = tape.Backend;
        var y = tape.Output(tape.Allocate(x.Shape));
        be.Silu(x.Value, y.Value);
        tape.Record([y], [x], () =>
        {
            if (tape.GradFor(x) is { } dx) be.SiluBackward(x.Value, y.Grad!, dx);
        });
        return y;
    }

    /// <summary>
    /// Adds y's gradient to x's as the last read of y's gradient in y's backward: when it is the first gradient to reach
    /// x, x takes y's buffer (<see cref="Tape.TryHandOffGrad"/>) instead of a copy, where the tape allows it.
    /// </summary>
    private static void AddGradLast(Tape tape, Variable x, Variable y)
    {
        if (!tape.TryHandOffGrad(y, x)) AddGrad(tape, x, y.Grad!);
    }

    /// <summary>Adds <paramref name="dy"/> to x's gradient (copies it when it is the first gradient to reach x).</summary>
    private static void AddGrad(Tape tape, Variable x, Tensor dy)
    {
        if (tape.GradForWrite(x, out bool overwrite) is not { } dx) return;
        if (overwrite) tape.Backend.Copy(dy, dx);
        else tape.Backend.Axpy(1f, dy, dx);
    }
}
