using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Native;

namespace Mtfm.Tests.Cuda;

/// <summary>
/// Opens the device a CUDA test runs on: "emulated" (libmtfm_cuda_emu.so from MTFM_CUDA_EMU_LIB, or build/native found
/// above the test binaries) or "gpu" (a real device; skipped at run time with the reason when there is none).
/// Also offers upload/download helpers; frees everything on dispose.
/// </summary>
internal sealed unsafe class CudaTestDevice : IDisposable
{
    public const string Emulated = "emulated";
    public const string Gpu = "gpu";

    private CudaTestDevice(ICudaDriver driver)
    {
        Driver = driver;
        Ops = new CudaOps(driver);
        Stream = driver.CreateStream();
    }

    public ICudaDriver Driver { get; }

    public CudaOps Ops { get; }

    public nint Stream { get; }

    /// <summary>
    /// Environment switch for a run on a GPU machine (scripts/gpu-check.sh sets it): when "1", a real-GPU test whose device
    /// is missing FAILS with the reason instead of skipping, so a broken driver set-up cannot pass as all-skipped.
    /// </summary>
    public const string RequireGpuVariable = "MTFM_REQUIRE_GPU";

    /// <summary>Skips a real-GPU test with <paramref name="reason"/>, or fails it when <see cref="RequireGpuVariable"/> is "1".</summary>
    public static void SkipNoGpu(string reason)
    {
        if (Environment.GetEnvironmentVariable(RequireGpuVariable) == "1")
            Assert.Fail($"{RequireGpuVariable}=1 but the GPU is not usable: {reason}");
        Assert.Skip(reason);
    }

    public static string? FindEmulationLibrary()
    {
        var env = Environment.GetEnvironmentVariable(EmulatedCudaDriver.LibraryVariable);
        if (!string.IsNullOrWhiteSpace(env))
            return env; // set: must work (CI sets it)
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "build", "native", "libmtfm_cuda_emu.so");
            if (File.Exists(candidate))
                return candidate;
        }
        return null;
    }

    /// <summary>The emulation library (see <see cref="FindEmulationLibrary"/>); skips the test, saying how to build it, when there is none.</summary>
    public static string EmulationLibraryOrSkip()
    {
        var path = FindEmulationLibrary();
        if (path is null)
            Assert.Skip("the emulated CUDA device is not built: run scripts/test.sh (or cmake -S . -B build/native && " +
                        "cmake --build build/native) or set MTFM_CUDA_EMU_LIB");
        return path;
    }

    /// <summary>A <see cref="CudaBackend"/> on the emulated device or GPU 0; skips the test with the reason when unavailable.</summary>
    public static CudaBackend OpenBackend(string kind)
    {
        if (kind == Emulated)
            return CudaBackend.OpenEmulated(EmulationLibraryOrSkip());
        if (kind != Gpu)
            throw new ArgumentException($"unknown device kind '{kind}'", nameof(kind));
        try
        {
            return OpenGpuBackend();
        }
        catch (CudaNotAvailableException e)
        {
            SkipNoGpu(e.Message);
            throw;
        }
    }

    public static CudaTestDevice Open(string kind)
    {
        if (kind == Emulated)
            return new CudaTestDevice(EmulatedCudaDriver.Open(EmulationLibraryOrSkip()));
        if (kind == Gpu)
        {
            try
            {
                var cache = Path.Combine(Path.GetTempPath(), "mtfm-cuda-test-cache");
                var driver = NativeCudaDriver.Open(0, new CudaKernelLoader(cache));
                KeepPrimaryContextAlive();
                return new CudaTestDevice(driver);
            }
            catch (CudaNotAvailableException e)
            {
                SkipNoGpu(e.Message);
            }
        }
        throw new ArgumentException($"unknown device kind '{kind}'", nameof(kind));
    }

    /// <summary>A <see cref="CudaBackend"/> on GPU 0 (throws <see cref="CudaNotAvailableException"/> without one).</summary>
    public static CudaBackend OpenGpuBackend()
    {
        var backend = CudaBackend.OpenDevice(0, Path.Combine(Path.GetTempPath(), "mtfm-cuda-test-cache"));
        KeepPrimaryContextAlive();
        return backend;
    }

    private static readonly object s_keepAliveLock = new();
    private static bool s_keptAlive;

    /// <summary>
    /// One extra reference on device 0's primary context for the rest of the test run: each test opens and disposes
    /// its own driver, and the last release would otherwise tear the context down (all memory, modules) and the next
    /// test create it again (~0.1–0.5 s each, far more under compute-sanitizer).
    /// </summary>
    private static void KeepPrimaryContextAlive()
    {
        lock (s_keepAliveLock)
        {
            if (s_keptAlive)
                return;
            CudaDriverApi.PrimaryContextRetain(CudaDriverApi.DeviceGet(0));
            s_keptAlive = true;
        }
    }

    public ulong Up<T>(T[] data) where T : unmanaged
    {
        var p = Driver.Allocate(Math.Max(1, (long)data.Length * sizeof(T)));
        Driver.Upload<T>(p, data);
        return p;
    }

    public ulong Zeros<T>(int count) where T : unmanaged => Up(new T[count]);

    public T[] Down<T>(ulong p, int count) where T : unmanaged
    {
        var r = new T[count];
        Driver.Download<T>(r, p);
        return r;
    }

    public void Dispose()
    {
        Driver.DestroyStream(Stream);
        Driver.Dispose();
    }

    public static void AssertClose(float[] expected, float[] actual, float rtol, float atol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            var e = expected[i];
            var a = actual[i];
            if (float.IsNaN(e) && float.IsNaN(a))
                continue;
            if (!(Math.Abs(a - e) <= atol + rtol * Math.Abs(e)))
                Assert.Fail($"{what}: element {i} is {a:R}, expected {e:R} (rtol {rtol}, atol {atol})");
        }
    }

    public static float[] RandomFloats(Random rng, int n, float lo, float hi)
    {
        var r = new float[n];
        for (var i = 0; i < n; i++)
            r[i] = lo + (hi - lo) * rng.NextSingle();
        return r;
    }
}
