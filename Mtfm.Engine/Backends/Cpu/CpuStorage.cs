using System.Runtime.InteropServices;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>Host memory for the CPU backend: 64-byte aligned native memory from the backend's <see cref="CpuBlockCache"/>, returned to it on <see cref="TensorStorage.Dispose"/>.</summary>
internal sealed unsafe class CpuStorage : TensorStorage
{
    /// <summary>Alignment of every CPU allocation in bytes (one cache line, one AVX-512 register).</summary>
    public const int Alignment = 64;

    private readonly CpuBackend _owner;
    private readonly nuint _capacity;
    private void* _ptr;

    internal CpuStorage(CpuBackend backend, DType dtype, long elements, bool zero) : base(backend, dtype, elements)
    {
        _owner = backend;
        nuint bytes = (nuint)Math.Max(Alignment, elements * dtype.SizeOf());
        _ptr = backend.BlockCache.Rent(bytes, out _capacity);
        if (zero) backend.ClearBytes(_ptr, bytes);
    }

    /// <summary>The host address of element 0.</summary>
    public void* Pointer
    {
        get
        {
            ThrowIfDisposed();
            return _ptr;
        }
    }

    /// <inheritdoc />
    public override nint Handle => (nint)Pointer;

    /// <inheritdoc />
    protected override void Free()
    {
        void* p = _ptr;
        _ptr = null;
        _owner.OnFreed(Bytes);
        _owner.BlockCache.Return(p, _capacity, CpuBlockCache.KeepLimit(_owner.PeakLiveBytes));
    }
}
