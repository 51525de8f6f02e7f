using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;

namespace Mtfm.Tests.Core;

/// <summary>The CPU backend's block cache: freed large blocks are reused, small ones are not kept, accounting holds.</summary>
public sealed unsafe class CpuBlockCacheTests
{
    [Fact]
    public void AFreedLargeBlockServesTheNextRequestOfItsClass()
    {
        using var be = new CpuBackend(1);
        long live0 = be.LiveBytes;
        var a = be.Allocate(DType.Float32, [1000, 64]);
        nint pa = (nint)be.FloatPointer(a);
        a.Dispose();
        Assert.Equal(live0, be.LiveBytes);
        Assert.Equal((long)CpuBlockCache.Capacity(256_000), be.BlockCache.CachedBytes);
        var b = be.Allocate(DType.Float32, [999, 64], zero: true); // same size class
        Assert.Equal(pa, (nint)be.FloatPointer(b));
        Assert.Equal(0, be.BlockCache.CachedBytes);
        Assert.All(TestTensors.Read(b), v => Assert.Equal(0f, v));
        b.Dispose();
        var small = be.Allocate(DType.Float32, [16]);
        small.Dispose();
        Assert.Equal((long)CpuBlockCache.Capacity(256_000), be.BlockCache.CachedBytes); // small blocks are not kept
        be.Dispose();
        Assert.Equal(0, be.BlockCache.CachedBytes);
    }

    [Fact]
    public void TheCacheHoldsNoMoreThanHalfAboveThePeakOfLiveBytes()
    {
        using var be = new CpuBackend(1);
        var t = new Tensor[4];
        for (int i = 0; i < 4; i++) t[i] = be.Allocate(DType.Float32, [100_000 + 40_000 * i]);
        long peak = be.PeakLiveBytes;
        foreach (var x in t) x.Dispose();
        Assert.InRange(be.BlockCache.CachedBytes, 1, CpuBlockCache.KeepLimit(peak));
        Assert.Equal(peak + peak / 2, CpuBlockCache.KeepLimit(peak));
    }

    [Fact]
    public void BlocksOfAnotherClassAreKeptUpToHalfAboveThePeak()
    {
        // Sizes that are exact size classes: 1 MB, 1.25 MB, 1.5 MB.
        const int mb = 1 << 20;
        using var be = new CpuBackend(1);
        var t = new Tensor[4];
        for (int i = 0; i < 4; i++) t[i] = be.Allocate(DType.Float32, [mb / 4]);
        long peak = be.PeakLiveBytes;
        Assert.Equal(4L * mb, peak);
        foreach (var x in t) x.Dispose();
        Assert.Equal(4L * mb, be.BlockCache.CachedBytes);
        // A block of a class the cache does not hold: cached 4 + 1.25 MB ≤ 1.5 × peak, so it is kept (a cache capped at
        // 1.25 × peak would free it and take it from the OS again the next time the same step needs it).
        be.Allocate(DType.Float32, [5 * mb / 16]).Dispose();
        Assert.Equal(4L * mb + 5 * mb / 4, be.BlockCache.CachedBytes);
        Assert.Equal(peak, be.PeakLiveBytes);
        // One more would take the cache to 6.75 MB > 6 MB: freed.
        be.Allocate(DType.Float32, [3 * mb / 8]).Dispose();
        Assert.Equal(4L * mb + 5 * mb / 4, be.BlockCache.CachedBytes);
    }

    [Theory]
    [InlineData(16 * 1024 + 1)]
    [InlineData(100_000)]
    [InlineData(123_456_789)]
    public void SizeClassesRoundUpByAtMostAQuarter(long bytes)
    {
        ulong c = CpuBlockCache.Capacity((nuint)bytes);
        Assert.InRange((double)c, bytes, bytes * 1.25);
    }
}
