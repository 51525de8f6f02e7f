using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends;

/// <summary>Argument checks of <see cref="IBackend.SiluSplit"/> and its backward, shared by every backend.</summary>
internal static class SiluSplitCheck
{
    /// <summary>Checks the parts against x (rows, widths summing to x's columns, none of them x); returns the widths.</summary>
    public static int[] Forward(Tensor x, Tensor[] parts)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(parts);
        var widths = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (parts[i] is null) throw new ArgumentNullException(nameof(parts), $"parts[{i}] is null.");
            if (ReferenceEquals(parts[i], x)) throw new ArgumentException($"SiluSplit cannot run in place: parts[{i}] is x.", nameof(parts));
            widths[i] = parts[i].LastDim;
        }
        Sum(x, widths, nameof(parts));
        int rows = ColumnRanges.Rows(x);
        for (int i = 0; i < parts.Length; i++) ColumnRanges.Check(parts[i], $"parts[{i}]", 0, "col", widths[i], rows, $"x {x.ShapeString}");
        return widths;
    }

    /// <summary>Checks widths, the gradients present and dx against x.</summary>
    public static void Backward(Tensor x, int[] widths, Tensor?[] partGrads, Tensor dx)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(widths);
        ArgumentNullException.ThrowIfNull(partGrads);
        ArgumentNullException.ThrowIfNull(dx);
        if (partGrads.Length != widths.Length)
            throw new ArgumentException($"{partGrads.Length} part gradients for {widths.Length} widths.", nameof(partGrads));
        Sum(x, widths, nameof(widths));
        int rows = ColumnRanges.Rows(x);
        ColumnRanges.Check(dx, nameof(dx), 0, "col", dx.LastDim, rows, $"x {x.ShapeString}");
        if (dx.LastDim != x.LastDim) throw new ArgumentException($"dx {dx.ShapeString} must have the {x.LastDim} columns of x.", nameof(dx));
        for (int i = 0; i < widths.Length; i++)
            if (partGrads[i] is { } g)
            {
                ColumnRanges.Check(g, $"partGrads[{i}]", 0, "col", g.LastDim, rows, $"x {x.ShapeString}");
                if (g.LastDim != widths[i]) throw new ArgumentException($"partGrads[{i}] {g.ShapeString} must have {widths[i]} columns.", nameof(partGrads));
            }
    }

    private static void Sum(Tensor x, int[] widths, string name)
    {
        long sum = 0;
        foreach (int w in widths)
        {
            if (w < 0) throw new ArgumentOutOfRangeException(name, w, "Part widths must be ≥ 0.");
            sum += w;
        }
        if (sum != x.LastDim)
            throw new ArgumentException($"Part widths [{string.Join(", ", widths)}] sum to {sum}, x {x.ShapeString} has {x.LastDim} columns.", name);
    }
}
