using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Native;

namespace Mtfm.Tests.Cuda;

/// <summary>Missing libraries or devices give one clear CudaNotAvailableException, never a crash.</summary>
public sealed class CudaAvailabilityTests
{
    private static Func<string, string?> Env(params (string Key, string Value)[] vars) =>
        k => vars.FirstOrDefault(v => v.Key == k).Value;

    [Fact]
    public void ExactPathToAMissingLibraryGivesTheClearMessage()
    {
        var env = Env(("MTFM_LIBCUDA_PATH", "/nonexistent/dir/libcuda.so.1"));
        var e = Assert.Throws<CudaNotAvailableException>(() => CudaLibraries.Require(CudaLibrary.Driver, env));
        Assert.StartsWith("CUDA not available: ", e.Message);
        Assert.Contains("/nonexistent/dir/libcuda.so.1", e.Message);
        Assert.Contains("MTFM_LIBCUDA_PATH", e.Message);
        Assert.Equal(["/nonexistent/dir/libcuda.so.1"], CudaLibraries.Candidates(CudaLibrary.Driver, env));
    }

    [Fact]
    public void LibraryDirectoryIsProbedFirstThenTheVersionedSonames()
    {
        var env = Env(("MTFM_CUDA_LIB_DIR", "/opt/cuda-x/lib64"));
        var nvrtc = CudaLibraries.Candidates(CudaLibrary.Nvrtc, env);
        Assert.Equal("/opt/cuda-x/lib64/libnvrtc.so.13", nvrtc[0]);
        Assert.Equal(["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"], nvrtc.Skip(4).ToArray());
        Assert.Equal(["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"],
            CudaLibraries.Candidates(CudaLibrary.Cublas, Env()));
        Assert.Equal(["libcuda.so.1", "libcuda.so"], CudaLibraries.Candidates(CudaLibrary.Driver, Env()));
    }

    [Fact]
    public void MissingNvrtcOrCublasIsReportedWithAnInstallHint()
    {
        var e = Assert.Throws<CudaNotAvailableException>(() =>
            CudaLibraries.Require(CudaLibrary.Nvrtc, Env(("MTFM_LIBNVRTC_PATH", "/nope/libnvrtc.so.12"))));
        Assert.Contains("NVRTC", e.Message);
        Assert.Contains("libnvrtc11.2", e.Message);
        Assert.Throws<CudaNotAvailableException>(() =>
            CudaLibraries.Require(CudaLibrary.Cublas, Env(("MTFM_LIBCUBLAS_PATH", "/nope/libcublas.so.12"))));
    }

    [Fact]
    public void OpeningTheGpuEitherWorksOrSaysWhyNot()
    {
        // On a machine without libcuda or without a device this must be CudaNotAvailableException, not a
        // DllNotFoundException or a crash; with a GPU it opens.
        try
        {
            using var d = NativeCudaDriver.Open();
            Assert.False(d.IsEmulated);
            Assert.True(d.ComputeCapability >= 50);
            Assert.False(string.IsNullOrWhiteSpace(d.DeviceName));
        }
        catch (CudaNotAvailableException e)
        {
            Assert.StartsWith("CUDA not available: ", e.Message);
            Assert.False(string.IsNullOrWhiteSpace(e.Reason));
        }
    }

    [Fact]
    public void EmulatedDeviceWithAMissingLibraryIsNotAvailable()
    {
        var e = Assert.Throws<CudaNotAvailableException>(() => EmulatedCudaDriver.Open("/nonexistent/libmtfm_cuda_emu.so"));
        Assert.Contains("/nonexistent/libmtfm_cuda_emu.so", e.Message);
    }

    [Fact]
    public void CudaExceptionNamesTheCallAndTheErrorString()
    {
        var e = new CudaException("cuMemAlloc(64 bytes)", 2, "out of memory");
        Assert.Equal("cuMemAlloc(64 bytes) failed with 2 (out of memory)", e.Message);
    }
}
