using System.Numerics;
using System.Runtime.InteropServices;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// Reuses freed host blocks of the CPU backend so that a steady-state training step takes no memory from the OS:
/// blocks above <see cref="MinCachedBytes"/> are rounded up to a size class (the top three bits of the size, ≤ 25 %
/// rounding) and kept on a per-class free list when freed while the list holds at most <see cref="KeepFactor"/> × the
/// backend's high-water mark of live bytes (so live plus cached memory stays within about 2.5 × the peak the backend
/// needed). Small blocks go straight to the allocator, which is fast for them. All blocks are 64-byte aligned; contents
/// of a reused block are undefined, as for a fresh one.
/// </summary>
/// <remarks>
/// Why 1.5 and not less: blocks are cached per size class, so a step that needs every class at its own peak holds
/// more than the peak of live bytes in the cache between steps. With 1.25 the `small` step (peak 195 MB) ended each
/// step with 238 MB cached, freed its last two 6 MB blocks to the OS and took them back in the next step's backward,
/// page-faulting both in again (≈ 8 ms each: one 0.6 ms GEMM ran 8.6 ms). With 1.5 that step stops missing after its
/// first steps, and the process peak resident falls (305–309 MB against 313–340 MB), since the blocks it freed were
/// allocated again at the same point of every step.
/// </remarks>
internal sealed unsafe class CpuBlockCache : IDisposable
{
    /// <summary>Blocks at or below this size are not cached.</summary>
    public const long MinCachedBytes = 16 * 1024;

    /// <summary>The cache keeps freed blocks while it holds at most this multiple of the peak of live bytes.</summary>
    public const double KeepFactor = 1.5; // KeepLimit computes it in integers

    /// <summary>The most bytes the cache keeps for a backend whose live bytes peaked at <paramref name="peakLiveBytes"/>.</summary>
    public static long KeepLimit(long peakLiveBytes) => peakLiveBytes + peakLiveBytes / 2;

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
