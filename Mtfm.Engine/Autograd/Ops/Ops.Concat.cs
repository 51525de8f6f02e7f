namespace Mtfm.Engine.Autograd;

internal static partial class Ops
{
    /// <summary>Concatenates along the last (feature) axis; all parts share the leading dimensions.</summary>
    public static Variable Concat(this Tape tape, params Variable[] parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Length == 0) throw new ArgumentException("Concat needs at least one part.", nameof(parts));
        var lead = parts[0].Shape[..^1].ToArray();
        int total = 0;
        for (int i = 0; i < parts.Length; i++)
        {
            var p = parts[i];
            if (p.Value.Rank != lead.Length + 1 || !p.Shape[..^1].SequenceEqual(lead))
                throw new ArgumentException($"parts[{i}] {p.Value.ShapeString} must have the leading dimensions of parts[0] {parts[0].Value.ShapeString}.", nameof(parts));
            total += p.Value.LastDim;
        }
        var be = tape.Backend;
        var y = tape.Output(tape.Allocate([.. lead, total]));
        var offsets = new int[parts.Length];
        for (int i = 0, off = 0; i < parts.Length; off += parts[i].Value.LastDim, i++)
        {
            offsets[i] = off;
            be.CopyColumns(parts[i].Value, 0, y.Value, off, parts[i].Value.LastDim, accumulate: false);
        }
        tape.Record([y], parts, () =>
        {
            for (int i = 0; i < parts.Length; i++)
                if (tape.GradFor(parts[i]) is { } dp) be.CopyColumns(y.Grad!, offsets[i], dp, 0, parts[i].Value.LastDim, accumulate: true);
        });
        return y;
    }

    /// <summary>Splits the last axis into consecutive parts of the given widths (which must sum to it).</summary>
    public static Variable[] Split(this Tape tape, Variable x, params int[] widths)
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
        for (int i = 0, off = 0; i < widths.Length; off += widths[i], i++)
        {
            offsets[i] = off;
            outs[i] = tape.Output(tape.Allocate([.. lead, widths[i]]));
            be.CopyColumns(x.Value, off, outs[i].Value, 0, widths[i], accumulate: false);
        }
        tape.Record(outs, [x], () =>
        {
            if (tape.GradFor(x) is not { } dx) return;
            for (int i = 0; i < outs.Length; i++)
                if (outs[i].Grad is { } d) be.CopyColumns(d, 0, dx, offsets[i], widths[i], accumulate: true);
        });
        return outs;
    }
}
