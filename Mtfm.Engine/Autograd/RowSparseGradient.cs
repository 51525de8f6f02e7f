using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

/// <summary>
/// The gradient of an embedding table restricted to the rows a step touched: <see cref="Indices"/> holds the distinct
/// row ids in ascending order (Int32 [rows]) and <see cref="Values"/> their summed gradients ([rows, dim]), in the same
/// order. Owns both tensors. Consumed by a row-sparse optimizer; <see cref="AddTo"/> densifies it.
/// </summary>
internal sealed class RowSparseGradient : IDisposable
{
    /// <summary>Takes ownership of <paramref name="indices"/> and <paramref name="values"/>.</summary>
    public RowSparseGradient(Tensor indices, Tensor values, int tableRows)
    {
        if (indices.DType != DType.Int32) throw new ArgumentException($"indices must be Int32, they are {indices.DType}.", nameof(indices));
        if (values.RowCount != indices.Length) throw new ArgumentException($"values {values.ShapeString} must have one row per index ({indices.Length}).", nameof(values));
        Indices = indices;
        Values = values;
        TableRows = tableRows;
    }

    /// <summary>Distinct touched row ids, ascending (Int32 [RowCount]).</summary>
    public Tensor Indices { get; }

    /// <summary>Gradient rows ([RowCount, dim]) matching <see cref="Indices"/>.</summary>
    public Tensor Values { get; }

    /// <summary>Number of touched rows.</summary>
    public int RowCount => (int)Indices.Length;

    /// <summary>Rows of the full table.</summary>
    public int TableRows { get; }

    /// <summary>dense[Indices[i], :] += Values[i, :] for a dense [TableRows, dim] tensor.</summary>
    public void AddTo(Tensor dense) => dense.Backend.ScatterAddRows(Values, Indices, dense, "indices");

    /// <summary>Frees the index and value tensors.</summary>
    public void Dispose()
    {
        Indices.Dispose();
        Values.Dispose();
    }
}
