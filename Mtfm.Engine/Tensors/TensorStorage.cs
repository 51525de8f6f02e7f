using Mtfm.Engine.Backends;

namespace Mtfm.Engine.Tensors;

/// <summary>
/// A block of memory owned by a backend (host memory for the CPU, device memory for CUDA). Freed deterministically by
/// <see cref="Dispose"/>, never by a finalizer. Only the owning backend interprets <see cref="Handle"/>.
/// </summary>
internal abstract class TensorStorage : IDisposable
{
    /// <summary>Creates a storage record for <paramref name="elements"/> elements of <paramref name="dtype"/>.</summary>
    protected TensorStorage(IBackend backend, DType dtype, long elements)
    {
        Backend = backend;
        DType = dtype;
        Elements = elements;
    }

    /// <summary>The backend that allocated (and will free) this storage.</summary>
    public IBackend Backend { get; }

    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>Number of elements.</summary>
    public long Elements { get; }

    /// <summary>Size in bytes.</summary>
    public long Bytes => Elements * DType.SizeOf();

    /// <summary>Backend-specific address (host pointer on the CPU, device pointer on CUDA).</summary>
    public abstract nint Handle { get; }

    /// <summary>True once freed.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>Throws when the storage was freed (a use after free).</summary>
    public void ThrowIfDisposed()
    {
        if (IsDisposed) throw new ObjectDisposedException(nameof(TensorStorage), "The tensor's storage was already freed (its scope or owner was disposed).");
    }

    /// <summary>Returns the memory to the backend.</summary>
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Free();
    }

    /// <summary>Backend hook that releases the memory exactly once.</summary>
    protected abstract void Free();
}
