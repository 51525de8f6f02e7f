using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Native;

namespace Mtfm.Tests.Cuda;

/// <summary>The driver abstraction itself: synchronisation counting, copies, memset, events, launch errors, schedules.</summary>
public sealed unsafe class CudaDriverTests
{
    [Theory]
    [InlineData(CudaTestDevice.Emulated)]
    [InlineData(CudaTestDevice.Gpu)]
    public void AsynchronousWorkIsNotCountedButBlockingCallsAre(string kind)
    {
        using var dev = CudaTestDevice.Open(kind);
        var d = dev.Driver;
        var globalBefore = CudaSyncCounter.Count;
        const int n = 1000;
        var pinned = d.AllocatePinned(n * sizeof(float));
        var host = new Span<float>((void*)pinned, n);
        for (var i = 0; i < n; i++)
            host[i] = i - 500;
        ulong x = d.Allocate(n * 4), y = d.Allocate(n * 4), y2 = d.Allocate(n * 4);
        var copyStream = d.CreateStream();
        var uploaded = d.CreateEvent();
        var done = d.CreateEvent();
        var before = d.SynchronizationCount;
        // a training-step-like sequence: staged upload on the copy stream, compute ordered by an event, async readback
        for (var step = 0; step < 20; step++)
        {
            d.CopyHostToDeviceAsync(x, (void*)pinned, n * 4, copyStream);
            d.RecordEvent(uploaded, copyStream);
            d.StreamWaitEvent(dev.Stream, uploaded);
            dev.Ops.SiluForward(x, y, n, dev.Stream);
            d.CopyDeviceToDeviceAsync(y2, y, n * 4, dev.Stream);
            d.MemsetD32Async(y, 0, n, dev.Stream);
            d.RecordEvent(done, dev.Stream);
        }
        Assert.Equal(before, d.SynchronizationCount);
        d.SynchronizeEvent(done);
        Assert.Equal(before + 1, d.SynchronizationCount);
        Assert.True(d.IsEventComplete(done));
        var got = dev.Down<float>(y2, n); // blocking copy: counted
        Assert.Equal(before + 2, d.SynchronizationCount);
        d.SynchronizeStream(dev.Stream);
        d.Synchronize();
        Assert.Equal(before + 4, d.SynchronizationCount);
        Assert.Equal(0f, dev.Down<float>(y, n).Max());
        for (var i = 0; i < n; i++)
            Assert.Equal((i - 500) / (1f + MathF.Exp(-(i - 500))), got[i], 1e-4f);
        if (!d.IsEmulated) // the real driver also feeds the process-wide counter
            Assert.True(CudaSyncCounter.Count >= globalBefore + 5);
        d.DestroyEvent(uploaded);
        d.DestroyEvent(done);
        d.DestroyStream(copyStream);
        d.FreePinned(pinned);
    }

    [Fact]
    public void EmulatedLaunchErrorsNameTheKernelAndTheProblem()
    {
        using var dev = CudaTestDevice.Open(CudaTestDevice.Emulated);
        var k = dev.Driver.GetKernel("elementwise.cu", "mtfm_silu_fwd");
        var x = dev.Driver.Allocate(64);
        var a = new CudaKernelArgs();
        a.Ptr(x); a.Ptr(x); a.I64(16);
        var e = Assert.Throws<CudaException>(() => dev.Driver.Launch(k, 1, 2048, 0, dev.Stream, ref a));
        Assert.Contains("mtfm_silu_fwd", e.Message);
        Assert.Contains("at most 1024 threads", e.Message);
        var e2 = Assert.Throws<CudaException>(() => dev.Driver.Launch(k, new Dim3(0), 32, 0, dev.Stream, ref a));
        Assert.Contains("zero dimension", e2.Message);
    }

    [Fact]
    public void EmulatedDeviceFreesEverythingAndRejectsForeignPointers()
    {
        using var dev = CudaTestDevice.Open(CudaTestDevice.Emulated);
        var d = dev.Driver;
        var live = d.LiveAllocations;
        var p = d.Allocate(100);
        Assert.Equal(live + 1, d.LiveAllocations);
        d.Free(p);
        Assert.Throws<ArgumentException>(() => d.Free(p));
        Assert.Throws<ArgumentOutOfRangeException>(() => d.Allocate(0));
        Assert.Equal(live, d.LiveAllocations);
    }

    [Theory]
    [InlineData("reverse")]
    [InlineData("random")]
    public void KernelsGiveIdenticalResultsUnderEveryThreadSchedule(string scheduleName)
    {
        var schedule = scheduleName == "reverse" ? EmulatedSchedule.Reverse : EmulatedSchedule.Random;
        using var dev = CudaTestDevice.Open(CudaTestDevice.Emulated);
        var emu = (EmulatedCudaDriver)dev.Driver;
        var rng = new Random(9);
        const int n = 37, d = 150, groups = 3;
        var x = CudaTestDevice.RandomFloats(rng, n * d, -2, 2);
        var gamma = CudaTestDevice.RandomFloats(rng, groups * d, 0.5f, 1.5f);
        var beta = CudaTestDevice.RandomFloats(rng, groups * d, -1, 1);
        var group = Enumerable.Range(0, n).Select(_ => rng.Next(groups)).ToArray();
        ulong px = dev.Up(x), pga = dev.Up(gamma), pbe = dev.Up(beta), pgr = dev.Up(group);
        ulong py = dev.Zeros<float>(n * d), pm = dev.Zeros<float>(n), prs = dev.Zeros<float>(n);
        float[] Run()
        {
            dev.Ops.GroupLayerNormForward(px, pgr, pga, pbe, py, pm, prs, n, d, groups, 1e-5f, dev.Stream);
            return dev.Down<float>(py, n * d);
        }
        float[] forward, other;
        lock (ScheduleLock)
        {
            emu.SetSchedule(EmulatedSchedule.Forward);
            forward = Run();
            emu.SetSchedule(schedule, 77);
            try
            {
                other = Run();
            }
            finally
            {
                emu.SetSchedule(EmulatedSchedule.Forward);
            }
        }
        Assert.Equal(forward, other); // deterministic reductions: bitwise identical
    }

    internal static readonly object ScheduleLock = new();

    [Theory]
    [InlineData(CudaTestDevice.Emulated)]
    [InlineData(CudaTestDevice.Gpu)]
    public void EveryCallWorksFromAThreadThatNeverTouchedTheDevice(string kind)
    {
        // xunit and the thread pool move work between threads; the driver must make its context current on whichever
        // thread calls (a fresh OS thread has no current context: CUDA_ERROR_INVALID_CONTEXT otherwise).
        using var dev = CudaTestDevice.Open(kind);
        var x = Enumerable.Range(0, 777).Select(i => (i - 400) / 50f).ToArray();
        float[]? got = null, got2 = null;
        RunOnFreshThread(() =>
        {
            var d = dev.Driver;
            var s = d.CreateStream();
            ulong px = dev.Up(x), py = d.Allocate(x.Length * 4);
            dev.Ops.SiluForward(px, py, x.Length, s);
            var e = d.CreateEvent();
            d.RecordEvent(e, s);
            d.SynchronizeEvent(e);
            got = dev.Down<float>(py, x.Length);
            d.DestroyEvent(e);
            d.DestroyStream(s);
            d.Free(px);
            d.Free(py);
        });
        // and back on a second fresh thread, a blocking download right behind a launch on a non-blocking stream: the
        // copy must wait for the kernel
        RunOnFreshThread(() =>
        {
            ulong px = dev.Up(x), py = dev.Zeros<float>(x.Length);
            dev.Ops.SiluForward(px, py, x.Length, dev.Stream);
            got2 = dev.Down<float>(py, x.Length);
            dev.Driver.Free(px);
            dev.Driver.Free(py);
        });
        var want = x.Select(v => v / (1f + MathF.Exp(-v))).ToArray();
        CudaTestDevice.AssertClose(want, got!, 1e-5f, 1e-6f, "silu on a fresh thread");
        CudaTestDevice.AssertClose(want, got2!, 1e-5f, 1e-6f, "silu then blocking download on a fresh thread");
    }

    [Theory]
    [InlineData(CudaTestDevice.Emulated)]
    [InlineData(CudaTestDevice.Gpu)]
    public void BackendGemmWorksFromAThreadThatNeverTouchedTheDevice(string kind)
    {
        // On a GPU this is cuBLAS (cublasGemmStridedBatchedEx) called from a thread the backend was not created on.
        var backend = CudaTestDevice.OpenBackend(kind);
        using var _ = backend;
        var rng = new Random(8);
        const int m = 33, n = 17, k = 41;
        var a = CudaTestDevice.RandomFloats(rng, m * k, -1, 1);
        var b = CudaTestDevice.RandomFloats(rng, n * k, -1, 1);
        var want = new float[m * n];
        fixed (float* pa = a, pb = b, pw = want)
            Mtfm.Engine.Backends.Cpu.CpuGemm.Sgemm(false, true, m, n, k, 1f, pa, k, pb, k, 0f, pw, n);
        float[]? got = null;
        var ta = backend.FromHost<float>(a, m, k);
        var tb = backend.FromHost<float>(b, n, k);
        var tc = backend.Allocate(Mtfm.Engine.Tensors.DType.Float32, [m, n]);
        RunOnFreshThread(() =>
        {
            backend.Gemm(false, true, 1f, ta, tb, 0f, tc);
            got = backend.ToHost<float>(tc);
        });
        CudaTestDevice.AssertClose(want, got!, 1e-4f, 1e-4f, $"gemm on a fresh thread (cuBLAS: {backend.UsesCublas})");
        tc.Dispose();
        tb.Dispose();
        ta.Dispose();
    }

    private static void RunOnFreshThread(Action body)
    {
        Exception? error = null;
        var t = new Thread(() =>
        {
            try
            {
                body();
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        t.Start();
        t.Join();
        if (error is not null)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(error).Throw();
    }
}
