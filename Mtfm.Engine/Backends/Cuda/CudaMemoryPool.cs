namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// Device memory pool with size-class free lists: requests round up to a power of two (at least 256 bytes) up to
/// 64 MiB and to a multiple of 2 MiB above; returned blocks wait on their class's free list for the next rent.
/// Stream-ordered for one compute stream: a block returned after launching kernels that use it may be handed out
/// again for later work on the same stream. Nothing is freed by a finalizer: <see cref="Trim"/> frees the cached
/// blocks and <see cref="Dispose"/> frees everything the pool allocated. Thread-safe.
/// </summary>
internal sealed class CudaMemoryPool(ICudaDriver driver) : IDisposable
{
    private const long MinClass = 256;
    private const long PowerOfTwoLimit = 64L << 20;
    private const long LargeGranularity = 2L << 20;

    private readonly ICudaDriver _driver = driver;
    private readonly Dictionary<long, Stack<ulong>> _free = [];
    private readonly Dictionary<ulong, long> _rented = [];
    private readonly object _lock = new();
    private long _cachedBytes;
    private long _rentedBytes;
    private long _driverAllocations;
    private bool _disposed;

    /// <summary>Bytes (by size class) currently rented out.</summary>
    public long RentedBytes { get { lock (_lock) return _rentedBytes; } }

    /// <summary>Bytes held on free lists.</summary>
    public long CachedBytes { get { lock (_lock) return _cachedBytes; } }

    /// <summary>How many times the pool had to ask the driver for memory.</summary>
    public long DriverAllocations { get { lock (_lock) return _driverAllocations; } }

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
            else
            {
                p = _driver.Allocate(cls);
                _driverAllocations++;
            }
            _rented.Add(p, cls);
            _rentedBytes += cls;
            return new DeviceBuffer(p, bytes, cls);
        }
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

    /// <summary>Frees every cached (not rented) block back to the driver.</summary>
    public void Trim()
    {
        lock (_lock)
        {
            foreach (var stack in _free.Values)
                while (stack.Count > 0)
                    _driver.Free(stack.Pop());
            _cachedBytes = 0;
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
                _driver.Free(p);
            _rented.Clear();
            _rentedBytes = 0;
            _disposed = true;
        }
    }
}
