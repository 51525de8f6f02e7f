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
        var big = pool.Rent(12L << 20); // class 16 MiB
        Assert.Equal(1, pool.DriverAllocations);
        pool.Return(big);
        var four = pool.Rent(3L << 20); // class 4 MiB, empty: 16 MiB is within 4×
        Assert.Equal(big.Pointer, four.Pointer);
        Assert.Equal(16L << 20, four.Capacity);
        Assert.Equal((1, 1L), (pool.Fallbacks, pool.DriverAllocations));
        pool.Return(four); // back on the 16 MiB list
        var one = pool.Rent(600L << 10); // class 1 MiB: limit 5 MiB (1 MiB + 4 MiB) → a new block
        Assert.NotEqual(big.Pointer, one.Pointer);
        Assert.Equal(2, pool.DriverAllocations);
        pool.Return(one);
        var half = pool.Rent(300L << 10); // class 512 KiB: the cached 1 MiB block is within 4.5 MiB
        Assert.Equal(one.Pointer, half.Pointer);
        pool.Return(half);
        var small = pool.Rent(1000); // slab classes stay among slab classes: carved, not the cached 1 MiB block
        Assert.NotEqual(one.Pointer, small.Pointer);
        pool.Return(small);
        Assert.Equal((4L << 20) + (512L << 10), CudaMemoryPool.FallbackLimit(512L << 10));
        Assert.Equal(256L << 20, CudaMemoryPool.FallbackLimit(64L << 20));
        Assert.Equal(CudaMemoryPool.SlabClassLimit, CudaMemoryPool.FallbackLimit(256));
    }

    /// <summary>
    /// Steps shaped like a training step (activations kept for the backward, temporaries, gradients freed in reverse)
    /// whose tensors scale with two independent batch dimensions (tokens n, targets t, each in [20, 50], 60 random
    /// mixes): once the largest batch (n = t = 50) has run, no later step asks the driver for memory, although smaller
    /// batches put their tensors into smaller size classes (x·64 KiB: 2 MiB for x ≤ 32, 4 MiB above; x·16 KiB: 512 KiB
    /// or 1 MiB; temporaries 1 or 2 MiB) — they take larger cached blocks. With exact class matching the same sequence
    /// allocates 13 more blocks.
    /// </summary>
    [Theory]
    [InlineData(CudaTestDevice.Emulated)]
    public void AfterTheLargestBatchShapeTheDriverIsNotAskedAgain(string kind)
    {
        using var dev = CudaTestDevice.Open(kind);
        using var pool = new CudaMemoryPool(dev.Driver);
        var rng = new Random(5);
        var shapes = new List<(int N, int T)> { (50, 50) };
        for (int i = 0; i < 60; i++) shapes.Add((rng.Next(20, 51), rng.Next(20, 51)));
        long afterLargest = -1;
        foreach (var (n, t) in shapes)
        {
            var kept = new List<DeviceBuffer>();
            for (int layer = 0; layer < 4; layer++)
            {
                var temp = pool.Rent(n * (32L << 10) + 100 * layer);
                kept.Add(pool.Rent(n * (64L << 10)));
                kept.Add(pool.Rent(t * (64L << 10) + 4));
                kept.Add(pool.Rent(t * (16L << 10) + 7));
                pool.Return(temp);
            }
            for (int i = kept.Count - 1; i >= 0; i--)
            {
                var grad = pool.Rent(kept[i].Bytes);
                pool.Return(grad);
                pool.Return(kept[i]);
            }
            if (afterLargest < 0) afterLargest = pool.DriverAllocations;
        }
        Assert.True(pool.DriverAllocations == afterLargest,
            $"the pool allocated {pool.DriverAllocations - afterLargest} times after the largest batch");
        Assert.True(pool.Fallbacks > 0);
    }
}
