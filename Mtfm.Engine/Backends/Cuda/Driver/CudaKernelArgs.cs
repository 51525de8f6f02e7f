using System.Runtime.CompilerServices;

namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// Kernel arguments packed for <c>cuLaunchKernel</c>'s <c>void**</c> ABI: each argument occupies an 8-byte slot
/// (little-endian, so a pointer to the slot is a valid pointer to an int or float too). Build on the stack:
/// <c>var a = new CudaKernelArgs(); a.Ptr(x); a.I32(n); driver.Launch(kernel, grid, block, 0, stream, ref a);</c>
/// The order and types must match the kernel's parameter list exactly.
/// </summary>
internal unsafe struct CudaKernelArgs
{
    public const int Capacity = 24;
    private fixed ulong _slots[Capacity];
    private int _count;

    public readonly int Count => _count;

    private ulong* Next()
    {
        if (_count >= Capacity)
            throw new InvalidOperationException($"a kernel launch takes at most {Capacity} arguments");
        fixed (ulong* s = _slots)
        {
            var p = s + _count++;
            *p = 0;
            return p;
        }
    }

    /// <summary>A device pointer (0 = null).</summary>
    public void Ptr(ulong devicePointer) => *Next() = devicePointer;

    public void I32(int value) => *(int*)Next() = value;

    public void U32(uint value) => *(uint*)Next() = value;

    public void I64(long value) => *(long*)Next() = value;

    public void F32(float value) => *(float*)Next() = value;

    /// <summary>
    /// Copies the slots into <paramref name="storage"/> (stack memory of the caller, ≥ <see cref="Count"/> slots) and
    /// points <paramref name="pointers"/>[i] at slot i, so the array stays valid wherever this struct lives.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal readonly void FillPointers(ulong* storage, void** pointers)
    {
        fixed (ulong* s = _slots)
        {
            for (var i = 0; i < _count; i++)
            {
                storage[i] = s[i];
                pointers[i] = storage + i;
            }
        }
    }
}
