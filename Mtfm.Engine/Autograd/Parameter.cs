using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

/// <summary>
/// A trainable weight: outlives tapes and steps, owns its value and its gradient buffers. Gradients accumulate across
/// backward passes until <see cref="ZeroGrad"/>. A parameter made with <c>sparseGrad: true</c> (an embedding table)
/// receives the gradients of embedding lookups as a <see cref="RowSparseGradient"/> instead of a dense buffer.
/// </summary>
internal sealed class Parameter : Variable, IDisposable
{
    /// <summary>Creates a parameter that takes ownership of <paramref name="value"/>.</summary>
    public Parameter(string name, Tensor value, bool sparseGrad = false, bool weightDecay = false) : base(value, true, name)
    {
        if (value.DType != DType.Float32) throw new ArgumentException($"Parameter '{name}' must be Float32, it is {value.DType}.", nameof(value));
        if (weightDecay && sparseGrad) throw new ArgumentException($"Parameter '{name}': weight decay applies to dense parameters only.", nameof(weightDecay));
        SparseGrad = sparseGrad;
        WeightDecay = weightDecay;
    }

    /// <summary>
    /// True when the optimizer applies decoupled weight decay to this parameter (the dense layers' weight matrices;
    /// never biases, LayerNorm parameters, the time bias or embedding tables). Set by whoever creates it.
    /// </summary>
    public bool WeightDecay { get; }

    /// <summary>True when embedding lookups deliver row-sparse gradients (see <see cref="SparseGradient"/>).</summary>
    public bool SparseGrad { get; }

    /// <summary>The accumulated row-sparse gradient, or null when no row was touched since <see cref="ZeroGrad"/>.</summary>
    public RowSparseGradient? SparseGradient { get; private set; }

    /// <summary>The dense gradient buffer, allocated zeroed on first use (owned by the parameter).</summary>
    internal Tensor EnsureGrad() => Grad ??= Value.Backend.Allocate(DType.Float32, Value.Shape, zero: true);

    /// <summary>
    /// Adds rows <paramref name="rows"/>[i] to the gradient of table row <paramref name="ids"/>[i]. Duplicate ids are
    /// summed in ascending position; the result (merged with what was there) keeps distinct ids in ascending order.
    /// </summary>
    internal void AccumulateSparse(Tensor ids, Tensor rows)
    {
        var be = Value.Backend;
        int dim = Value.LastDim;
        Tensor allIds = ids, allRows = rows;
        Tensor? catIds = null, catRows = null;
        if (SparseGradient is { } old)
        {
            int r0 = old.RowCount, r1 = (int)ids.Length;
            catIds = be.Allocate(DType.Int32, [r0 + r1]);
            catRows = be.Allocate(DType.Float32, [r0 + r1, dim]);
            be.Copy(old.Indices, catIds.Rows(0, r0));
            be.Copy(old.Values, catRows.Rows(0, r0));
            be.Copy(ids, catIds.Rows(r0, r1)); // Int64 ids narrow to Int32 on the backend
            be.Copy(rows, catRows.Rows(r0, r1));
            allIds = catIds;
            allRows = catRows;
        }
        var (unique, inverse) = be.UniqueIndices(allIds);
        try
        {
            var values = be.Allocate(DType.Float32, [(int)unique.Length, dim], zero: true);
            be.ScatterAddRows(allRows, inverse, values, "inverse");
            SparseGradient?.Dispose();
            SparseGradient = new RowSparseGradient(unique, values, Value.RowCount);
        }
        catch
        {
            unique.Dispose();
            throw;
        }
        finally
        {
            inverse.Dispose();
            catIds?.Dispose();
            catRows?.Dispose();
        }
    }

    /// <summary>Zeroes the dense gradient (keeping its buffer) and frees the row-sparse gradient.</summary>
    public void ZeroGrad()
    {
        if (Grad is not null) Value.Backend.Fill(Grad, 0f);
        SparseGradient?.Dispose();
        SparseGradient = null;
    }

    /// <summary>Frees the value and every gradient buffer.</summary>
    public void Dispose()
    {
        SparseGradient?.Dispose();
        SparseGradient = null;
        Grad?.Dispose();
        Grad = null;
        Value.Dispose();
    }
}
