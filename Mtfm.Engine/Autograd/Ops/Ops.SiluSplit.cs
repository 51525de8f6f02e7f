using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

internal static partial class Ops
{
    /// <summary>
    /// <c>Split(Silu(x), widths)</c> as one op that keeps no SiLU output: each part is the SiLU of its column range
    /// (<see cref="Backends.IBackend.SiluSplit"/>, one pass over each row of x on the CPU), and the backward adds each
    /// part's gradient into its columns of dx (<see cref="Backends.IBackend.SiluSplitBackward"/>): no [rows, Σwidths]
    /// activation, gradient or copy. Values and
    /// gradients are bit-identical to the two-op form.
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
        be.SiluSplit(x.Value, Array.ConvertAll(outs, o => o.Value));
        tape.Record(outs, [x], () =>
        {
            if (tape.GradForWrite(x, out bool overwrite) is { } dx) SiluPartsBackward(be, x.Value, widths, Array.ConvertAll(outs, o => o.Grad), dx, overwrite);
        });
        return outs;
    }

    /// <summary>
    /// The backward of <see cref="Backends.IBackend.SiluSplit"/>: adds into <paramref name="dx"/> from the parts' gradients (null = none
    /// reached that part), or writes it when <paramref name="overwrite"/> (a fresh, unzeroed buffer: a part without a
    /// gradient leaves zeros).
    /// </summary>
    private static void SiluPartsBackward(Backends.IBackend be, Tensor x, int[] widths, Tensor?[] partGrads, Tensor dx, bool overwrite)
    {
        if (overwrite && Array.Exists(partGrads, g => g is null))
        {
            be.Fill(dx, 0f);
            overwrite = false;
        }
        be.SiluSplitBackward(x, widths, partGrads, dx, accumulate: !overwrite);
    }
}
