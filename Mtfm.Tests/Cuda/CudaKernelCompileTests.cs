using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Native;

namespace Mtfm.Tests.Cuda;

/// <summary>
/// Every embedded kernel file compiles with NVRTC to PTX for compute_80 and compute_90 and to an sm_90 cubin, and
/// defines every kernel it registers for the host emulation. Skipped (with the reason) only when NVRTC cannot be
/// loaded; scripts/test.sh installs it, so CI runs these.
/// </summary>
public sealed class CudaKernelCompileTests : IDisposable
{
    private readonly string _cache = Path.Combine(Path.GetTempPath(), "mtfm-nvrtc-test-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_cache))
            Directory.Delete(_cache, recursive: true);
    }

    private static void RequireNvrtc()
    {
        if (!Nvrtc.IsAvailable(out var reason))
            CudaTestDevice.SkipNoGpu("CUDA not available: " + reason);
    }

    public static TheoryData<string> KernelFiles() => [.. CudaKernelSources.KernelFiles];

    [Fact]
    public void AllKernelSourcesAreEmbedded()
    {
        foreach (var f in new[] { "elementwise.cu", "gemm.cu", "group_layernorm.cu", "hstu_attention.cu", "hstu_attention_bf16.cu", "hstu_attention_bwd.cu", "loss.cu", "optimizer.cu", "reduce.cu", "rows.cu" })
            Assert.Contains(f, CudaKernelSources.KernelFiles);
        Assert.Contains(CudaKernelSources.Headers, h => h.Key == "common.cuh");
        foreach (var f in CudaKernelSources.KernelFiles)
        {
            var names = CudaKernelSources.KernelNames(f);
            Assert.NotEmpty(names);
            Assert.All(names, n => Assert.StartsWith("mtfm_", n));
        }
    }

    [Theory]
    [MemberData(nameof(KernelFiles))]
    public void CompilesToPtxForCompute80And90AndToSm90Cubin(string file)
    {
        RequireNvrtc();
        var loader = new CudaKernelLoader(_cache);
        foreach (var arch in new[] { "compute_80", "compute_90" })
        {
            var img = loader.Compile(file, arch, NvrtcOutput.Ptx);
            var ptx = System.Text.Encoding.UTF8.GetString(img.Image);
            Assert.Contains(".target sm_" + arch[^2..], ptx);
            foreach (var name in CudaKernelSources.KernelNames(file))
                Assert.Contains(".entry " + name + "(", ptx);
        }
        var cubin = loader.Compile(file, "sm_90", NvrtcOutput.Cubin);
        Assert.True(cubin.Image.Length > 64);
        Assert.Equal(new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F' }, cubin.Image[..4]);
        Assert.Equal(3, loader.Compilations);
    }

    [Fact]
    public void SecondCompileComesFromTheDiskCacheAndDefinesChangeTheKey()
    {
        RequireNvrtc();
        var a = new CudaKernelLoader(_cache);
        var first = a.Compile("elementwise.cu", "compute_80", NvrtcOutput.Ptx);
        Assert.False(first.FromCache);
        var b = new CudaKernelLoader(_cache); // a new process would do the same
        var second = b.Compile("elementwise.cu", "compute_80", NvrtcOutput.Ptx);
        Assert.True(second.FromCache);
        Assert.Equal(0, b.Compilations);
        Assert.Equal(first.Image, second.Image);
        Assert.Equal(first.CacheKey, second.CacheKey);
        var c = new CudaKernelLoader(_cache, ["MTFM_TEST_DEFINE=1"]);
        var third = c.Compile("elementwise.cu", "compute_80", NvrtcOutput.Ptx);
        Assert.False(third.FromCache);
        Assert.NotEqual(first.CacheKey, third.CacheKey);
        var otherArch = a.Compile("elementwise.cu", "compute_90", NvrtcOutput.Ptx);
        Assert.NotEqual(first.CacheKey, otherArch.CacheKey);
    }

    [Fact]
    public void DeviceImageIsCubinWhenSupportedElsePtxOfNewestOlderArch()
    {
        RequireNvrtc();
        var loader = new CudaKernelLoader(_cache);
        var archs = Nvrtc.SupportedArchitectures();
        Assert.Contains(80, archs);
        var img = loader.GetImageForDevice("loss.cu", 80);
        Assert.Equal(NvrtcOutput.Cubin, img.Kind);
        Assert.Equal("sm_80", img.Architecture);
        var future = archs.Max() + 1; // a device newer than this NVRTC: PTX the driver can JIT
        var ptx = loader.GetImageForDevice("loss.cu", future);
        Assert.Equal(NvrtcOutput.Ptx, ptx.Kind);
        Assert.Equal($"compute_{archs.Max()}", ptx.Architecture);
    }

    [Fact]
    public void CompileErrorCarriesTheLog()
    {
        RequireNvrtc();
        var e = Assert.Throws<NvrtcCompileException>(() => Nvrtc.Compile(
            "extern \"C\" __global__ void mtfm_broken(float* p) { p[0] = undeclared_name; }", "broken.cu", [],
            ["--gpu-architecture=compute_80"], NvrtcOutput.Ptx));
        Assert.Contains("broken.cu", e.Message);
        Assert.Contains("undeclared_name", e.Log);
    }

    [Fact]
    public void CubinForAVirtualArchitectureIsRejected()
    {
        var loader = new CudaKernelLoader(_cache);
        var e = Assert.Throws<ArgumentException>(() => loader.Compile("loss.cu", "compute_90", NvrtcOutput.Cubin));
        Assert.Contains("compute_90", e.Message);
        Assert.Throws<ArgumentException>(() => loader.Compile("nope.cu", "compute_90", NvrtcOutput.Ptx));
    }

    [Fact]
    public void EveryEmbeddedKernelIsRegisteredInTheEmulation()
    {
        using var dev = CudaTestDevice.Open(CudaTestDevice.Emulated);
        foreach (var f in CudaKernelSources.KernelFiles)
            foreach (var name in CudaKernelSources.KernelNames(f))
                Assert.Equal(name, dev.Driver.GetKernel(f, name).Name);
        var e = Assert.Throws<CudaException>(() => dev.Driver.GetKernel("loss.cu", "mtfm_no_such_kernel"));
        Assert.Contains("mtfm_no_such_kernel", e.Message);
    }
}
