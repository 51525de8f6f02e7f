using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// Device memory of the CUDA backend: one pooled <see cref="DeviceBuffer"/>, returned to the backend's pool on
/// <see cref="TensorStorage.Dispose"/> (never by a finalizer). Index storages (Int32/Int64) also keep an exact host
/// mirror of their contents: only <see cref="IBackend.Upload{T}"/>, <see cref="IBackend.Copy"/> and
/// <see cref="IBackend.UniqueIndices"/> can write an index tensor, and each updates the mirror, so index range checks,
/// sorting for deterministic scatter-adds and <c>UniqueIndices</c> need no device round trip.
/// </summary>
internal sealed class CudaStorage : TensorStorage
{
    private readonly CudaBackend _owner;
    private DeviceBuffer _buffer;

    internal CudaStorage(CudaBackend backend, DType dtype, long elements, DeviceBuffer buffer) : base(backend, dtype, elements)
    {
        _owner = backend;
        _buffer = buffer;
        if (dtype.IsIndex()) Mirror = new long[elements];
    }

    /// <summary>Device address of element 0.</summary>
    public ulong Pointer
    {
        get
        {
            ThrowIfDisposed();
            return _buffer.Pointer;
        }
    }

    /// <summary>Host copy of the values of an index storage (null for Float32).</summary>
    public long[]? Mirror { get; }

    /// <inheritdoc />
    public override nint Handle => (nint)Pointer;

    /// <inheritdoc />
    protected override void Free()
    {
        _owner.OnFreed(_buffer, Bytes);
        _buffer = default;
    }
}
