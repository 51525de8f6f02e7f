namespace Mtfm.Engine.Training;

/// <summary>Helpers for row-sparse gradients of embedding tables (one row of gradient per looked-up id).</summary>
internal static class RowSparseGradient
{
    /// <summary>
    /// Sums the gradient rows of repeated ids: returns the distinct ids in ascending order and, for each, the sum of its
    /// rows in order of occurrence (deterministic).
    /// </summary>
    /// <param name="ids">[k] row id per gradient row (≥ 0).</param>
    /// <param name="gradients">[k, dim].</param>
    /// <param name="dim">Row width.</param>
    /// <param name="uniqueIds">Distinct ids, ascending.</param>
    /// <param name="summed">[uniqueIds.Length, dim].</param>
    public static void Coalesce(ReadOnlySpan<int> ids, ReadOnlySpan<float> gradients, int dim, out int[] uniqueIds, out float[] summed)
    {
        if (dim <= 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "dim must be ≥ 1.");
        if (gradients.Length != (long)ids.Length * dim)
            throw new ArgumentException($"gradients has {gradients.Length} entries, expected ids.Length·dim = {ids.Length}·{dim}.", nameof(gradients));
        for (int i = 0; i < ids.Length; i++)
            if (ids[i] < 0) throw new ArgumentException($"ids[{i}] = {ids[i]}: must be ≥ 0.", nameof(ids));
        uniqueIds = ids.ToArray();
        Array.Sort(uniqueIds);
        int u = 0;
        for (int i = 0; i < uniqueIds.Length; i++)
            if (i == 0 || uniqueIds[i] != uniqueIds[u - 1]) uniqueIds[u++] = uniqueIds[i];
        Array.Resize(ref uniqueIds, u);
        summed = new float[u * dim];
        for (int i = 0; i < ids.Length; i++)
        {
            int slot = Array.BinarySearch(uniqueIds, ids[i]);
            System.Numerics.Tensors.TensorPrimitives.Add(summed.AsSpan(slot * dim, dim), gradients.Slice(i * dim, dim), summed.AsSpan(slot * dim, dim));
        }
    }
}
