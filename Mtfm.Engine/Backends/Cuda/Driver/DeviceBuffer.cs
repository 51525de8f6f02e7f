namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// A block of device memory rented from a <see cref="CudaMemoryPool"/>: a plain value (no finalizer); give it back
/// with <see cref="CudaMemoryPool.Return"/>. <see cref="Bytes"/> is what was asked for, <see cref="Capacity"/> the
/// size class actually reserved.
/// </summary>
internal readonly record struct DeviceBuffer(ulong Pointer, long Bytes, long Capacity)
{
    /// <summary>Device address of element <paramref name="index"/> of type T.</summary>
    public unsafe ulong At<T>(long index) where T : unmanaged => Pointer + (ulong)(index * sizeof(T));
}
