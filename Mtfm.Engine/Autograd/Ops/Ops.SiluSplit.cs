using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

internal static partial class Ops
{
    /// <summary>
    /// <c>Split(Silu(x), widths)</c> as one op that keeps no SiLU output: the activation lives in a scratch buffer only
    /// while it is split, and the backward gathers the parts' gradients into a scratch buffer before
    /// <see cref="Backends.IBackend.SiluBackward"/>. Saves one [rows, Σwidths] activation (and its gradient) per use;
    /// values and gradients are bit-identical to the two-op form.
    /// </summary>
    public static Variable[] SiluSplit(this Tape tape, Variable x, params int[] widths)
    {
        ArgumentNullException.ThrowIfNull(widths);
        int sum = 0;
        foreach (var w in widths)
        {
            if (w < 0) throw new ArgumentOutOfRangeException(nameof(widths), w, "Split widths must be ≥ 0.");
            sum += w;
        }
        if (sum != x.Value.LastDim) throw new ArgumentException($"Split widths [{string.Join(", ", widths)}] sum to {sum}, the last dimension of x {x.Value.ShapeString} is {x.Value.LastDim}.", nameof(widths));
        var be = tape.Backend;
        var lead = x.Shape[..^1].ToArray();
        var outs = new Variable[widths.Length];
        for (int i = 0; i < widths.Length; i++) outs[i] = tape.Output(tape.Allocate([.. lead, widths[i]]));
        SiluParts(be, x.Value, widths, Array.ConvertAll(outs, o => o.Value));
        tape.Record(outs, [x], () =>
        {
            if (tape.GradFor(x) is { } dx) SiluPartsBackward(be, x.Value, widths, Array.ConvertAll(outs, o => o.Grad), dx);
        });
        return outs;
    }

    /// <summary>parts[i] = columns [Σ widths[..i], + widths[i]) of SiLU(x); the activation lives only in a scratch buffer.</summary>
    private static void SiluParts(Backends.IBackend be, Tensor x, int[] widths, Tensor[] parts)
    {
        using var act = be.Allocate(DType.Float32, x.Shape);
        be.Silu(x, act);
        for (int i = 0, off = 0; i < widths.Length; off += widths[i], i++)
            be.CopyColumns(act, off, parts[i], 0, widths[i], accumulate: false);
    }

    /// <summary>The backward of <see cref="SiluParts"/>: ADDS into <paramref name="dx"/> from the parts' gradients (null = none reached that part).</summary>
    private static void SiluPartsBackward(Backends.IBackend be, Tensor x, int[] widths, Tensor?[] partGrads, Tensor dx)
    {
        // Every part has a gradient in the usual case: each is copied over its columns, no zeroing needed.
        bool all = Array.TrueForAll(partGrads, g => g is not null);
        using var dact = be.Allocate(DType.Float32, x.Shape, zero: !all);
        for (int i = 0, off = 0; i < widths.Length; off += widths[i], i++)
            if (partGrads[i] is { } d) be.CopyColumns(d, 0, dact, off, widths[i], accumulate: !all);
        be.SiluBackward(x, dact, dx);
    }
}
