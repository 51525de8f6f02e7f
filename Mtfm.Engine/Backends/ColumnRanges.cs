using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends;

/// <summary>Argument checks shared by every backend's column-range ops (CopyColumns, SiluColumns and its backward).</summary>
internal static class ColumnRanges
{
    /// <summary>
    /// Checks that columns [<paramref name="col"/>, +<paramref name="cols"/>) lie inside <paramref name="t"/> viewed as
    /// [rows, last dimension] and that it has <paramref name="rows"/> rows (-1: any); returns its (rows, columns).
    /// </summary>
    public static (int Rows, int Cols) Check(Tensor t, string name, int col, string colName, int cols, int rows = -1, string? rowsOf = null)
    {
        int c = t.LastDim, r = Rows(t);
        if (rows >= 0 && r != rows) throw new ArgumentException($"{name} {t.ShapeString} has {r} rows, {rowsOf} has {rows}.", name);
        if (cols < 0) throw new ArgumentOutOfRangeException(nameof(cols), cols, "cols must be ≥ 0.");
        if (col < 0 || col + cols > c) throw new ArgumentOutOfRangeException(colName, col, $"Columns [{col}, {col + cols}) exceed {name}'s {c} columns.");
        return (r, c);
    }

    /// <summary>Rows of <paramref name="t"/> viewed as [rows, last dimension]: the product of its leading dimensions (so a tensor of 0 columns still has its rows).</summary>
    public static int Rows(Tensor t)
    {
        long r = 1;
        for (int d = 0; d < t.Rank - 1; d++) r *= t.Shape[d];
        return checked((int)r);
    }
}
