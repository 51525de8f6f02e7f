using Mtfm.Engine.Backends;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

/// <summary>
/// A value in the autograd graph: a <see cref="Tensor"/> plus, when <see cref="RequiresGrad"/>, a dense gradient
/// filled by <see cref="Tape.Backward(Variable, bool, bool)"/>. Activations are created by ops on a <see cref="Tape"/> and live in
/// its scope; their gradients too, and both are gone once the tape is disposed. Long-lived weights are
/// <see cref="Parameter"/>s.
/// </summary>
internal class Variable
{
    /// <summary>Wraps <paramref name="value"/> (not owned: whoever allocated it frees it).</summary>
    public Variable(Tensor value, bool requiresGrad = false, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(value);
        Value = value;
        RequiresGrad = requiresGrad;
        Name = name;
    }

    /// <summary>The forward value.</summary>
    public Tensor Value { get; }

    /// <summary>True when gradients flow to (or through) this variable.</summary>
    public bool RequiresGrad { get; internal set; }

    /// <summary>The dense gradient, or null while none has flowed here.</summary>
    public Tensor? Grad { get; internal set; }

    /// <summary>Optional name used in messages.</summary>
    public string? Name { get; set; }

    /// <summary>Shape of <see cref="Value"/>.</summary>
    public ReadOnlySpan<int> Shape => Value.Shape;

    /// <summary>The backend of <see cref="Value"/>.</summary>
    public IBackend Backend => Value.Backend;

    /// <inheritdoc />
    public override string ToString() => $"{Name ?? GetType().Name}{Value.ShapeString}";
}
