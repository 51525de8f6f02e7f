namespace Mtfm.Engine.Autograd;

internal static partial class Ops
{
    /// <summary>Softmax over the last axis (e.g. an MMoE gate over experts).</summary>
    public static Variable Softmax(this Tape tape, Variable x)
    {
        var be = tape.Backend;
        var y = tape.Output(tape.Allocate(x.Shape));
        be.Softmax(x.Value, y.Value);
        tape.Record([y], [x], () =>
        {
            if (tape.GradFor(x) is { } dx) be.SoftmaxBackward(y.Value, y.Grad!, dx);
        });
        return y;
    }
}
