using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

internal static partial class Ops
{
    /// <summary>
    /// Mean binary cross-entropy on logits over the present labels: Σ mask·bce(z, t) / Σ mask, in the stable form
    /// max(z,0) − z·t + log(1 + e^−|z|); 0 (with zero gradient) when no label is present. <paramref name="labels"/> and
    /// <paramref name="mask"/> are fp32 tensors of the logits' length; mask entries are 0 or 1, labels in [0,1].
    /// Returns a one-element loss.
    /// </summary>
    public static Variable BceWithLogits(this Tape tape, Variable logits, Tensor labels, Tensor mask)
    {
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(mask);
        if (labels.Length != logits.Value.Length) throw new ArgumentException($"labels {labels.ShapeString} must match logits {logits.Value.ShapeString}.", nameof(labels));
        if (mask.Length != logits.Value.Length) throw new ArgumentException($"mask {mask.ShapeString} must match logits {logits.Value.ShapeString}.", nameof(mask));
        if (labels.DType != DType.Float32) throw new ArgumentException($"labels must be Float32, they are {labels.DType}.", nameof(labels));
        if (mask.DType != DType.Float32) throw new ArgumentException($"mask must be Float32, it is {mask.DType}.", nameof(mask));
        var be = tape.Backend;
        var loss = tape.Output(tape.Allocate(1));
        be.BceWithLogits(logits.Value, labels, mask, loss.Value);
        tape.Record([loss], [logits], () =>
        {
            if (tape.GradFor(logits) is { } dz) be.BceWithLogitsBackward(logits.Value, labels, mask, loss.Grad!, dz);
        });
        return loss;
    }
}
