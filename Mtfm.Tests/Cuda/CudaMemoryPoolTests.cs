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
        Assert.Equal(2, pool.DriverAllocations);
        pool.Return(a);
        Assert.Equal(1024, pool.CachedBytes);
        var c = pool.Rent(900); // same class: reuses a
        Assert.Equal(a.Pointer, c.Pointer);
        Assert.Equal(2, pool.DriverAllocations);
        var big = pool.Rent(5000);
        Assert.Equal(3, pool.DriverAllocations);
        Assert.Equal(1024 + 1024 + 8192, pool.RentedBytes);
        pool.Return(big);
        Assert.Throws<ArgumentException>(() => pool.Return(big));
        Assert.Throws<ArgumentException>(() => pool.Return(new DeviceBuffer(12345, 10, 256)));
        pool.Trim();
        Assert.Equal(0, pool.CachedBytes);
        Assert.Equal(live + 2, dev.Driver.LiveAllocations);
        pool.Dispose(); // frees rented blocks too: device buffers are never left to finalizers
        Assert.Equal(live, dev.Driver.LiveAllocations);
        Assert.Throws<ObjectDisposedException>(() => pool.Rent(10));
    }
}
