using System.Numerics;
using System.Runtime.InteropServices;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// Reuses freed host blocks of the CPU backend so that a steady-state training step takes no memory from the OS:
/// blocks above <see cref="MinCachedBytes"/> are rounded up to a size class (the top three bits of the size, ≤ 25 %
/// rounding) and kept on a per-class free list when freed while the list holds at most 1.25 × the backend's
/// high-water mark of live bytes (so live plus cached memory stays within about 2.25 × the peak the backend needed). Small blocks go straight to the allocator,
/// which is fast for them. All blocks are 64-byte aligned; contents of a reused block are undefined, as for a fresh one.
/// </summary>
internal sealed unsafe class CpuBlockCache : IDisposable
{
    /// <summary>Blocks at or below this size are not cached.</summary>
    public const long MinCachedBytes = 16 * 1024;

    private readonly Dictionary<nuint, Stack<nint>> _free = new();
    private readonly object _lock = new();
    private long _cachedBytes;
    private bool _disposed;

    /// <summary>Bytes held in free lists.</summary>
    public long CachedBytes
    {
        get { lock (_lock) return _cachedBytes; }
    }

    /// <summary>The capacity a request of <paramref name="bytes"/> is served with.</summary>
    public static nuint Capacity(nuint bytes)
    {
        if (bytes <= MinCachedBytes) return bytes;
        int top = 63 - BitOperations.LeadingZeroCount((ulong)bytes);
        ulong unit = 1UL << (top - 2); // four classes per power of two
        return (nuint)(((ulong)bytes + unit - 1) / unit * unit);
    }

    /// <summary>A block of at least <paramref name="bytes"/> bytes; <paramref name="capacity"/> is what must be returned.</summary>
    public void* Rent(nuint bytes, out nuint capacity)
    {
        capacity = Capacity(bytes);
        if (capacity > MinCachedBytes)
        {
            lock (_lock)
            {
                if (_free.TryGetValue(capacity, out var s) && s.Count > 0)
                {
                    _cachedBytes -= (long)capacity;
                    return (void*)s.Pop();
                }
            }
        }
        return NativeMemory.AlignedAlloc(capacity, CpuStorage.Alignment);
    }

    /// <summary>Takes a block back; keeps it while the cache holds at most <paramref name="keepLimit"/> bytes.</summary>
    public void Return(void* block, nuint capacity, long keepLimit)
    {
        if (capacity > MinCachedBytes)
        {
            lock (_lock)
            {
                if (!_disposed && _cachedBytes + (long)capacity <= keepLimit)
                {
                    if (!_free.TryGetValue(capacity, out var s)) _free[capacity] = s = new Stack<nint>();
                    s.Push((nint)block);
                    _cachedBytes += (long)capacity;
                    return;
                }
            }
        }
        NativeMemory.AlignedFree(block);
    }

    /// <summary>Frees every cached block; later returns free directly.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            foreach (var s in _free.Values)
                while (s.Count > 0) NativeMemory.AlignedFree((void*)s.Pop());
            _free.Clear();
            _cachedBytes = 0;
        }
    }
}
