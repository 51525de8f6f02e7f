namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// Device memory pool with size-class free lists: requests round up to a power of two (at least 256 bytes) up to
/// 64 MiB and to a multiple of 2 MiB above; returned blocks wait on their class's free list for the next rent.
/// <para>
/// The driver is asked for memory (<c>cuMemAlloc</c>, which may synchronise implicitly on a GPU) only when nothing
/// cached fits: a rent takes a block of its own class, else the smallest cached block of a larger class up to
/// <see cref="FallbackLimit"/> (so a smaller batch reuses the blocks of a larger one instead of allocating in the
/// smaller class), else a new block. Blocks of at most <see cref="SlabClassLimit"/> are carved out of
/// <see cref="SlabBytes"/> slabs (one driver allocation for many small blocks, so batches that merely hold more small
/// tensors than before rarely reach the driver); larger blocks are allocated one by one.
/// </para>
/// Stream-ordered for one compute stream: a block returned after launching kernels that use it may be handed out
/// again for later work on the same stream. Nothing is freed by a finalizer: <see cref="Trim"/> frees the cached
/// blocks that were allocated one by one (slabs stay until <see cref="Dispose"/>), and <see cref="Dispose"/> frees
/// everything the pool allocated. Thread-safe.
/// </summary>
internal sealed class CudaMemoryPool(ICudaDriver driver) : IDisposable
{
    private const long MinClass = 256;
    private const long PowerOfTwoLimit = 64L << 20;
    private const long LargeGranularity = 2L << 20;

    /// <summary>Classes up to this size are carved out of slabs.</summary>
    public const long SlabClassLimit = 64L << 10;

    /// <summary>Bytes of one slab (one driver allocation).</summary>
    public const long SlabBytes = 2L << 20;

    private readonly ICudaDriver _driver = driver;
    private readonly Dictionary<long, Stack<ulong>> _free = [];
    private readonly Dictionary<ulong, long> _rented = [];
    private readonly object _lock = new();
    private long _cachedBytes;
    private long _rentedBytes;
    private long _driverAllocations;
    private long _fallbacks;
    private readonly List<ulong> _slabs = [];
    private readonly HashSet<ulong> _carved = [];
    private ulong _slabNext;
    private long _slabLeft;
    private bool _disposed;

    /// <summary>Bytes (by size class) currently rented out.</summary>
    public long RentedBytes { get { lock (_lock) return _rentedBytes; } }

    /// <summary>Bytes held on free lists.</summary>
    public long CachedBytes { get { lock (_lock) return _cachedBytes; } }

    /// <summary>How many times the pool had to ask the driver for memory (slabs included).</summary>
    public long DriverAllocations { get { lock (_lock) return _driverAllocations; } }

    /// <summary>Rents served by a cached block of a larger class.</summary>
    public long Fallbacks { get { lock (_lock) return _fallbacks; } }

    /// <summary>
    /// The largest class a rent of class <paramref name="cls"/> may take from the cache when its own is empty. Slab
    /// classes (≤ <see cref="SlabClassLimit"/>) stay among slab classes (carving a new small block is cheap); larger
    /// ones may waste up to three times the class or 4 MiB, whichever is more (the driver's own granularity for large
    /// allocations is 2 MiB).
    /// </summary>
    public static long FallbackLimit(long cls) =>
        cls <= SlabClassLimit ? SlabClassLimit : Math.Max(4 * cls, cls + (4L << 20));

    /// <summary>The size class a request of <paramref name="bytes"/> is served from.</summary>
    public static long SizeClass(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        if (bytes <= MinClass)
            return MinClass;
        if (bytes <= PowerOfTwoLimit)
            return (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)bytes);
        return checked((bytes + LargeGranularity - 1) / LargeGranularity * LargeGranularity);
    }

    /// <summary>Rents at least <paramref name="bytes"/> bytes (contents undefined).</summary>
    public DeviceBuffer Rent(long bytes)
    {
        var cls = SizeClass(bytes);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            ulong p;
            if (_free.TryGetValue(cls, out var stack) && stack.Count > 0)
            {
                p = stack.Pop();
                _cachedBytes -= cls;
            }
            else if (LargerCached(cls) is { } larger)
            {
                cls = larger;
                p = _free[cls].Pop();
                _cachedBytes -= cls;
                _fallbacks++;
            }
            else p = NewBlock(cls);
            _rented.Add(p, cls);
            _rentedBytes += cls;
            return new DeviceBuffer(p, bytes, cls);
        }
    }

    /// <summary>The smallest class above <paramref name="cls"/>, within <see cref="FallbackLimit"/>, with a cached block.</summary>
    private long? LargerCached(long cls)
    {
        long? best = null;
        long limit = FallbackLimit(cls);
        foreach (var (c, stack) in _free)
            if (c > cls && c <= limit && stack.Count > 0 && (best is null || c < best)) best = c;
        return best;
    }

    private ulong NewBlock(long cls)
    {
        if (cls > SlabClassLimit)
        {
            _driverAllocations++;
            return _driver.Allocate(cls);
        }
        if (_slabLeft < cls)
        {
            // The open slab's tail goes to the free lists in power-of-two pieces (offsets stay multiples of 256).
            while (_slabLeft >= MinClass)
            {
                long piece = (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)_slabLeft + 1) / 2;
                Carve(piece);
                if (!_free.TryGetValue(piece, out var st)) _free[piece] = st = new Stack<ulong>();
                st.Push(_slabNext - (ulong)piece);
                _cachedBytes += piece;
            }
            var slab = _driver.Allocate(SlabBytes);
            _driverAllocations++;
            _slabs.Add(slab);
            _slabNext = slab;
            _slabLeft = SlabBytes;
        }
        return Carve(cls);
    }

    private ulong Carve(long cls)
    {
        var p = _slabNext;
        _slabNext += (ulong)cls;
        _slabLeft -= cls;
        _carved.Add(p);
        return p;
    }

    /// <summary>Gives a rented buffer back. Returning a buffer twice, or one the pool did not rent, throws.</summary>
    public void Return(DeviceBuffer buffer)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_rented.Remove(buffer.Pointer, out var cls))
                throw new ArgumentException(
                    $"buffer 0x{buffer.Pointer:x} ({buffer.Bytes} bytes) is not rented from this pool (returned twice?)",
                    nameof(buffer));
            _rentedBytes -= cls;
            if (!_free.TryGetValue(cls, out var stack))
                _free[cls] = stack = new Stack<ulong>();
            stack.Push(buffer.Pointer);
            _cachedBytes += cls;
        }
    }

    /// <summary>Frees every cached (not rented) block that was allocated on its own back to the driver (slab blocks stay).</summary>
    public void Trim()
    {
        lock (_lock)
        {
            foreach (var (cls, stack) in _free)
            {
                var keep = new List<ulong>();
                while (stack.Count > 0)
                {
                    var p = stack.Pop();
                    if (_carved.Contains(p)) keep.Add(p);
                    else
                    {
                        _driver.Free(p);
                        _cachedBytes -= cls;
                    }
                }
                for (int i = keep.Count - 1; i >= 0; i--) stack.Push(keep[i]);
            }
        }
    }

    /// <summary>Frees all memory the pool holds, rented or cached.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
                return;
            Trim();
            foreach (var p in _rented.Keys)
                if (!_carved.Contains(p)) _driver.Free(p);
            foreach (var s in _slabs) _driver.Free(s);
            _slabs.Clear();
            _carved.Clear();
            _free.Clear();
            _cachedBytes = 0;
            _rented.Clear();
            _rentedBytes = 0;
            _disposed = true;
        }
    }
}
