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
        var offsets = new int[widths.Length];
        using (var act = be.Allocate(DType.Float32, x.Shape))
        {
            be.Silu(x.Value, act);
            for (int i = 0, off = 0; i < widths.Length; off += widths[i], i++)
            {
                offsets[i] = off;
                outs[i] = tape.Output(tape.Allocate([.. lead, widths[i]]));
                be.CopyColumns(act, off, outs[i].Value, 0, widths[i], accumulate: false);
            }
        }
        tape.Record(outs, [x], () =>
        {
            if (tape.GradFor(x) is not { } dx) return;
            // Every part has a gradient in the usual case: each is copied over its columns, no zeroing needed.
            bool all = Array.TrueForAll(outs, o => o.Grad is not null);
            using var dact = be.Allocate(DType.Float32, x.Shape, zero: !all);
            for (int i = 0; i < outs.Length; i++)
                if (outs[i].Grad is { } d) be.CopyColumns(d, 0, dact, offsets[i], widths[i], accumulate: !all);
            be.SiluBackward(x.Value, dact, dx);
        });
        return outs;
    }
}
