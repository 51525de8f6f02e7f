using Mtfm.Engine.Autograd;

namespace Mtfm.Engine.Nn;

/// <summary>A dense layer y = x·W + b with W [in, out], b [out].</summary>
internal sealed class Dense
{
    /// <param name="f">Creates the parameters.</param>
    /// <param name="name">Parameter-name prefix: <c>name.w</c>, <c>name.b</c>.</param>
    /// <param name="fanIn">Inputs per row.</param>
    /// <param name="fanOut">Outputs per row.</param>
    /// <param name="biasName">The bias's full name when it is not <c>name.b</c>.</param>
    public Dense(ParameterFactory f, string name, int fanIn, int fanOut, string? biasName = null)
    {
        In = fanIn;
        Out = fanOut;
        Weight = f.Weight(name + ".w", fanIn, fanOut);
        Bias = f.Constant(biasName ?? name + ".b", [fanOut], 0f);
    }

    public int In { get; }

    public int Out { get; }

    public Parameter Weight { get; }

    public Parameter Bias { get; }

    /// <summary>Multiply-adds per input row.</summary>
    public long MacsPerRow => (long)In * Out;

    public Variable Forward(Tape tape, Variable x) => tape.Linear(x, Weight, Bias);
}
