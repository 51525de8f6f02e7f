using Mtfm.Engine.Backends.Cuda;

namespace Mtfm.Tests.Cuda;

public sealed class CudaMemoryPoolTests
{
    [Theory]
    [InlineData(1, 256)]
    [InlineData(256, 256)]
    [InlineData(257, 512)]
    [InlineData(1000, 1024)]
    [InlineData(64L << 20, 64L << 20)]
    [InlineData((64L << 20) + 1, (66L << 20))]
    public void SizeClasses(long bytes, long expected) => Assert.Equal(expected, CudaMemoryPool.SizeClass(bytes));

    [Fact]
    public void SizeClassRejectsNonPositive()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => CudaMemoryPool.SizeClass(0));
        Assert.Equal("bytes", e.ParamName);
    }

    [Theory]
    [InlineData(CudaTestDevice.Emulated)]
    [InlineData(CudaTestDevice.Gpu)]
    public void ReturnedBlocksAreReusedAndDisposeFreesEverything(string kind)
    {
        using var dev = CudaTestDevice.Open(kind);
        var live = dev.Driver.LiveAllocations;
        var pool = new CudaMemoryPool(dev.Driver);
        var a = pool.Rent(1000);
        var b = pool.Rent(1000);
        Assert.NotEqual(a.Pointer, b.Pointer);
        Assert.Equal(1024, a.Capacity);
        Assert.Equal(1, pool.DriverAllocations); // both carved out of one slab
        pool.Return(a);
        Assert.Equal(1024, pool.CachedBytes);
        var c = pool.Rent(900); // same class: reuses a
        Assert.Equal(a.Pointer, c.Pointer);
        var big = pool.Rent(5000);
        Assert.Equal(1, pool.DriverAllocations);
        Assert.Equal(1024 + 1024 + 8192, pool.RentedBytes);
        pool.Return(big);
        Assert.Throws<ArgumentException>(() => pool.Return(big));
        Assert.Throws<ArgumentException>(() => pool.Return(new DeviceBuffer(12345, 10, 256)));
        var large = pool.Rent(3L << 20); // above the slab limit: a block of its own
        Assert.Equal(2, pool.DriverAllocations);
        pool.Return(large);
        Assert.Equal(live + 2, dev.Driver.LiveAllocations);
        pool.Trim(); // frees the cached large block; slab blocks stay
        Assert.Equal(8192, pool.CachedBytes);
        Assert.Equal(live + 1, dev.Driver.LiveAllocations);
        pool.Dispose(); // frees rented blocks too: device buffers are never left to finalizers
        Assert.Equal(live, dev.Driver.LiveAllocations);
        Assert.Throws<ObjectDisposedException>(() => pool.Rent(10));
    }

    [Theory]
    [InlineData(CudaTestDevice.Emulated)]
    [InlineData(CudaTestDevice.Gpu)]
    public void SmallBlocksComeFromSlabsWithoutOverlapping(string kind)
    {
        using var dev = CudaTestDevice.Open(kind);
        var live = dev.Driver.LiveAllocations;
        using var pool = new CudaMemoryPool(dev.Driver);
        int perSlab = (int)(CudaMemoryPool.SlabBytes / 1024);
        var blocks = new List<DeviceBuffer>();
        for (int i = 0; i < perSlab; i++) blocks.Add(pool.Rent(1000));
        Assert.Equal(1, pool.DriverAllocations);
        blocks.Add(pool.Rent(1000));
        Assert.Equal(2, pool.DriverAllocations);
        // 31 blocks of 64 KiB fit the second slab's rest, the 32nd opens a third slab; the 63 KiB tail stays cached
        for (int i = 0; i < 31; i++) blocks.Add(pool.Rent(CudaMemoryPool.SlabClassLimit));
        Assert.Equal(2, pool.DriverAllocations);
        blocks.Add(pool.Rent(CudaMemoryPool.SlabClassLimit));
        Assert.Equal(3, pool.DriverAllocations);
        Assert.Equal(63L << 10, pool.CachedBytes);
        var big = pool.Rent(30000); // class 32 KiB: the tail's largest piece
        Assert.Equal((3L, 31L << 10), (pool.DriverAllocations, pool.CachedBytes));
        var sorted = blocks.Append(big).OrderBy(x => x.Pointer).ToList();
        for (int i = 1; i < sorted.Count; i++)
            Assert.True(sorted[i - 1].Pointer + (ulong)sorted[i - 1].Capacity <= sorted[i].Pointer, "carved blocks overlap");
        Assert.All(sorted, x => Assert.Equal(0UL, x.Pointer % 256));
        foreach (var x in blocks) pool.Return(x);
        pool.Return(big);
        pool.Dispose();
        Assert.Equal(live, dev.Driver.LiveAllocations);
    }

    [Theory]
    [InlineData(CudaTestDevice.Emulated)]
    [InlineData(CudaTestDevice.Gpu)]
    public void AnEmptyClassTakesACachedLargerBlockWithinTheLimit(string kind)
    {
        using var dev = CudaTestDevice.Open(kind);
        using var pool = new CudaMemoryPool(dev.Driver);
        var four = pool.Rent(3L << 20); // class 4 MiB
        Assert.Equal(1, pool.DriverAllocations);
        pool.Return(four);
        var two = pool.Rent(3L << 19); // class 2 MiB, empty: takes the cached 4 MiB block
        Assert.Equal(four.Pointer, two.Pointer);
        Assert.Equal(4L << 20, two.Capacity);
        Assert.Equal((1, 1L), (pool.Fallbacks, pool.DriverAllocations));
        pool.Return(two); // back on the 4 MiB list
        var one = pool.Rent(600L << 10); // class 1 MiB: 4 MiB is within 4×
        Assert.Equal(four.Pointer, one.Pointer);
        pool.Return(one);
        var half = pool.Rent(300L << 10); // class 512 KiB: 4 MiB is more than 4× → a new block
        Assert.NotEqual(four.Pointer, half.Pointer);
        Assert.Equal(2, pool.DriverAllocations);
        Assert.Equal(2L << 20, CudaMemoryPool.FallbackLimit(512L << 10));
        Assert.Equal(64L << 10, CudaMemoryPool.FallbackLimit(256));
        pool.Return(half);
    }
}
