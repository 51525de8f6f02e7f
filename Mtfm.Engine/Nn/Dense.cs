using Mtfm.Engine.Autograd;

namespace Mtfm.Engine.Nn;

/// <summary>A dense layer y = x·W + b with W [in, out], b [out].</summary>
internal sealed class Dense
{
    public Dense(ParameterFactory f, string name, int fanIn, int fanOut)
    {
        In = fanIn;
        Out = fanOut;
        Weight = f.Weight(name + ".w", fanIn, fanOut);
        Bias = f.Constant(name + ".b", [fanOut], 0f);
    }

    public int In { get; }

    public int Out { get; }

    public Parameter Weight { get; }

    public Parameter Bias { get; }

    /// <summary>Multiply-adds per input row.</summary>
    public long MacsPerRow => (long)In * Out;

    public Variable Forward(Tape tape, Variable x) => tape.Linear(x, Weight, Bias);
}
