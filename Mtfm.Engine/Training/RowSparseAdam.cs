namespace Mtfm.Engine.Training;

/// <summary>
/// Row-sparse ("lazy") Adam for embedding tables [rows, dim]. Only the rows present in a step's gradient are touched:
/// their m and v are updated and the row moves; every other row keeps its parameters, m and v bit for bit (no decay
/// of the moments of rows that were not looked up, no weight decay on them).
/// <para>
/// Bias correction uses a <b>per-row step count</b> t_r, the number of updates that row has received, so a row's
/// first update is a full-size Adam step however late it comes (the lazy-Adam convention; PyTorch's SparseAdam and
/// TensorFlow's LazyAdam use the global step instead, which shrinks the bias correction for rare rows to nothing
/// and makes their first updates tiny). Decoupled weight decay, when set, applies to the touched rows only.
/// </para>
/// The per-row update is the same fused SIMD kernel as <see cref="AdamW"/>.
/// </summary>
internal static class RowSparseAdam
{
    /// <summary>Updates the touched rows of <paramref name="table"/>.</summary>
    /// <param name="table">[rows, dim] parameters, row-major.</param>
    /// <param name="dim">Row width.</param>
    /// <param name="rowIds">[k] distinct row ids touched this step (coalesce duplicates first with <see cref="RowSparseGradient.Coalesce"/>).</param>
    /// <param name="rowGradients">[k, dim] gradient of each touched row, in the order of <paramref name="rowIds"/>.</param>
    /// <param name="firstMoment">[rows, dim] m.</param>
    /// <param name="secondMoment">[rows, dim] v.</param>
    /// <param name="rowSteps">[rows] updates received so far per row; incremented for each touched row.</param>
    /// <param name="learningRate">lr of this step.</param>
    /// <param name="options">β1, β2, ε, λ.</param>
    /// <exception cref="ArgumentException">Shapes disagree, a row id is out of range or repeated (nothing is modified then).</exception>
    public static void Step(Span<float> table, int dim, ReadOnlySpan<int> rowIds, ReadOnlySpan<float> rowGradients,
        Span<float> firstMoment, Span<float> secondMoment, Span<int> rowSteps, float learningRate, AdamOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "dim must be ≥ 1.");
        if (table.Length % dim != 0) throw new ArgumentException($"table has {table.Length} entries, not a multiple of dim {dim}.", nameof(table));
        int rows = table.Length / dim;
        if (firstMoment.Length != table.Length) throw new ArgumentException($"firstMoment has {firstMoment.Length} entries but table has {table.Length}.", nameof(firstMoment));
        if (secondMoment.Length != table.Length) throw new ArgumentException($"secondMoment has {secondMoment.Length} entries but table has {table.Length}.", nameof(secondMoment));
        if (rowSteps.Length != rows) throw new ArgumentException($"rowSteps has {rowSteps.Length} entries but table has {rows} rows.", nameof(rowSteps));
        if (rowGradients.Length != (long)rowIds.Length * dim)
            throw new ArgumentException($"rowGradients has {rowGradients.Length} entries, expected rowIds.Length·dim = {rowIds.Length}·{dim}.", nameof(rowGradients));
        if (!(learningRate >= 0f) || !float.IsFinite(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "learningRate must be finite and ≥ 0.");
        // Validate ids (range, distinct) before touching anything. Duplicates are found without allocating by
        // marking each visited row's step count as ~count (negative) and restoring the marks afterwards.
        string? problem = null;
        int marked = 0;
        for (; marked < rowIds.Length; marked++)
        {
            int r = rowIds[marked];
            if ((uint)r >= (uint)rows) { problem = $"rowIds[{marked}] = {r}: must be in [0, {rows})."; break; }
            int c = rowSteps[r];
            if (c < 0)
            {
                problem = IsMarkedByEarlierId(rowIds, marked, r) ? $"rowIds[{marked}] = {r} is repeated; coalesce duplicate rows before the update." : $"rowSteps[{r}] = {c}: step counts must be ≥ 0.";
                break;
            }
            if (c == int.MaxValue) { problem = $"rowSteps[{r}] = {c} would overflow."; break; }
            rowSteps[r] = ~c;
        }
        for (int i = 0; i < marked; i++) rowSteps[rowIds[i]] = ~rowSteps[rowIds[i]];
        if (problem is not null) throw new ArgumentException(problem, problem.StartsWith("rowIds", StringComparison.Ordinal) ? nameof(rowIds) : nameof(rowSteps));
        for (int i = 0; i < rowIds.Length; i++)
        {
            int r = rowIds[i];
            int t = ++rowSteps[r];
            var c = AdamW.Coefficients.For(t, learningRate, options);
            int o = r * dim;
            AdamW.Kernel(table.Slice(o, dim), rowGradients.Slice(i * dim, dim), firstMoment.Slice(o, dim), secondMoment.Slice(o, dim), c);
        }
    }

    private static bool IsMarkedByEarlierId(ReadOnlySpan<int> rowIds, int before, int row) => rowIds[..before].Contains(row);
}
