namespace Mtfm.Engine.Autograd;

internal static partial class Ops
{
    /// <summary>The sum of all elements, a one-element tensor [1].</summary>
    public static Variable Sum(this Tape tape, Variable x) => SumAll(tape, x, 1f);

    /// <summary>The mean of all elements, a one-element tensor [1].</summary>
    public static Variable Mean(this Tape tape, Variable x)
    {
        if (x.Value.Length == 0) throw new ArgumentException("Mean of an empty tensor is undefined.", nameof(x));
        return SumAll(tape, x, 1f / x.Value.Length);
    }

    private static Variable SumAll(Tape tape, Variable x, float alpha)
    {
        var be = tape.Backend;
        var y = tape.Output(tape.Allocate(1));
        be.SumAll(x.Value, alpha, y.Value);
        tape.Record([y], [x], () =>
        {
            if (tape.GradFor(x) is { } dx) be.AddScalar(y.Grad!, alpha, dx);
        });
        return y;
    }

    /// <summary>Sum over the last axis: x [.., d] → [..] (rank − 1; a rank-1 x gives [1]).</summary>
    public static Variable SumLastAxis(this Tape tape, Variable x) => ReduceLastAxis(tape, x, 1f);

    /// <summary>Mean over the last axis: x [.., d] → [..].</summary>
    public static Variable MeanLastAxis(this Tape tape, Variable x)
    {
        if (x.Value.LastDim == 0) throw new ArgumentException($"Mean over an empty last axis of {x.Value.ShapeString}.", nameof(x));
        return ReduceLastAxis(tape, x, 1f / x.Value.LastDim);
    }

    private static Variable ReduceLastAxis(Tape tape, Variable x, float alpha)
    {
        if (x.Value.Rank < 1) throw new ArgumentException("x must have rank ≥ 1.", nameof(x));
        var be = tape.Backend;
        var shape = x.Value.Rank == 1 ? [1] : x.Shape[..^1].ToArray();
        var y = tape.Output(tape.Allocate(shape));
        be.SumLastAxis(x.Value, alpha, y.Value);
        tape.Record([y], [x], () =>
        {
            if (tape.GradFor(x) is { } dx) be.SumLastAxisBackward(y.Grad!, alpha, dx);
        });
        return y;
    }
}
