namespace Mtfm.Engine.Tensors;

/// <summary>
/// An arena of tensors freed together: everything allocated through (or adopted by) the scope is disposed, in reverse
/// order, when the scope is disposed. The autograd tape uses one for a step's activations and their gradients.
/// </summary>
internal sealed class TensorScope : IDisposable
{
    private readonly List<Tensor> _owned = new();
    private bool _disposed;

    /// <summary>Creates a scope allocating from <paramref name="backend"/>.</summary>
    public TensorScope(Backends.IBackend backend) => Backend = backend;

    /// <summary>The backend allocations come from.</summary>
    public Backends.IBackend Backend { get; }

    /// <summary>Number of tensors the scope will free.</summary>
    public int Count => _owned.Count;

    /// <summary>Allocates a tensor owned by the scope (contents undefined unless <paramref name="zero"/>).</summary>
    public Tensor Allocate(DType dtype, ReadOnlySpan<int> shape, bool zero = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Adopt(Backend.Allocate(dtype, shape, zero));
    }

    /// <summary>Allocates an fp32 tensor owned by the scope.</summary>
    public Tensor Allocate(params ReadOnlySpan<int> shape) => Allocate(DType.Float32, shape);

    /// <summary>Takes ownership of <paramref name="tensor"/>: it is disposed with the scope.</summary>
    public Tensor Adopt(Tensor tensor)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _owned.Add(tensor);
        return tensor;
    }

    /// <summary>Frees every tensor of the scope.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        _owned.Clear();
    }
}
