namespace Mtfm.Engine.Training;

/// <summary>The state of <see cref="RowSparseAdam"/> for one embedding table: m and v per row, and per-row step counts.</summary>
internal sealed class RowSparseAdamState
{
    /// <summary>Zero state for a [rows, dim] table.</summary>
    public RowSparseAdamState(int rows, int dim)
    {
        if (rows < 0) throw new ArgumentOutOfRangeException(nameof(rows), rows, "rows must be ≥ 0.");
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "dim must be ≥ 1.");
        Rows = rows;
        Dim = dim;
        FirstMoment = new float[checked(rows * dim)];
        SecondMoment = new float[rows * dim];
        RowSteps = new int[rows];
    }

    /// <summary>Rows of the table.</summary>
    public int Rows { get; }

    /// <summary>Row width.</summary>
    public int Dim { get; }

    /// <summary>m, [rows, dim].</summary>
    public float[] FirstMoment { get; }

    /// <summary>v, [rows, dim].</summary>
    public float[] SecondMoment { get; }

    /// <summary>Updates received per row.</summary>
    public int[] RowSteps { get; }

    /// <summary>Applies one lazy-Adam update to the rows <paramref name="rowIds"/> of <paramref name="table"/>.</summary>
    public void Update(Span<float> table, ReadOnlySpan<int> rowIds, ReadOnlySpan<float> rowGradients, float learningRate, AdamOptions options)
    {
        if (table.Length != FirstMoment.Length)
            throw new ArgumentException($"table has {table.Length} entries but this state was made for {Rows}×{Dim}.", nameof(table));
        RowSparseAdam.Step(table, Dim, rowIds, rowGradients, FirstMoment, SecondMoment, RowSteps, learningRate, options);
    }
}
