using System.Security.Cryptography;
using System.Text;
using Mtfm.Engine.Native;

namespace Mtfm.Engine.Backends.Cuda;

/// <summary>A compiled kernel file.</summary>
/// <param name="SourceFile">e.g. "elementwise.cu".</param>
/// <param name="Architecture">e.g. "sm_90" (cubin) or "compute_90" (PTX).</param>
/// <param name="Kind">PTX or cubin.</param>
/// <param name="Image">The bytes to pass to cuModuleLoadData.</param>
/// <param name="FromCache">True when read from the disk cache instead of compiled.</param>
/// <param name="CacheKey">Hex key: source hash + architecture + defines + NVRTC version.</param>
internal sealed record CudaKernelImage(string SourceFile, string Architecture, NvrtcOutput Kind, byte[] Image,
    bool FromCache, string CacheKey);

/// <summary>
/// Compiles the embedded <c>cuda/*.cu</c> sources with NVRTC for a device's architecture at first use and caches the
/// PTX/cubin on disk. Cache key: SHA-256 over the source and headers, the architecture, the output kind, the options
/// and defines, and NVRTC's version. Cache directory: the constructor argument, else <c>MTFM_CUDA_CACHE</c>, else
/// <c>$XDG_CACHE_HOME/mtfm/cuda</c> (or <c>~/.cache/mtfm/cuda</c>). Thread-safe.
/// </summary>
internal sealed class CudaKernelLoader
{
    private readonly string[] _defines;
    private readonly object _lock = new();
    private long _compilations;
    private long _cacheHits;

    /// <param name="cacheDirectory">Where compiled images are kept; null for the default.</param>
    /// <param name="defines">Extra <c>NAME</c> or <c>NAME=value</c> macros, part of the cache key.</param>
    public CudaKernelLoader(string? cacheDirectory = null, IReadOnlyList<string>? defines = null)
    {
        CacheDirectory = cacheDirectory ?? DefaultCacheDirectory();
        _defines = defines is null ? [] : [.. defines];
        foreach (var d in _defines)
            if (string.IsNullOrWhiteSpace(d) || d.Contains(' ', StringComparison.Ordinal))
                throw new ArgumentException($"define '{d}' must be NAME or NAME=value without spaces", nameof(defines));
    }

    public string CacheDirectory { get; }

    /// <summary>Number of NVRTC compilations this loader ran.</summary>
    public long Compilations => Interlocked.Read(ref _compilations);

    /// <summary>Number of images served from the disk cache.</summary>
    public long CacheHits => Interlocked.Read(ref _cacheHits);

    internal static string DefaultCacheDirectory()
    {
        var env = Environment.GetEnvironmentVariable("MTFM_CUDA_CACHE");
        if (!string.IsNullOrWhiteSpace(env))
            return env;
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var root = !string.IsNullOrWhiteSpace(xdg)
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "mtfm", "cuda");
    }

    /// <summary>The NVRTC options used for an architecture (without the cache-irrelevant program name).</summary>
    internal IReadOnlyList<string> Options(string architecture)
    {
        var opts = new List<string> { $"--gpu-architecture={architecture}", "--std=c++17", "-lineinfo" };
        foreach (var d in _defines)
            opts.Add("-D" + d);
        return opts;
    }

    /// <summary>
    /// The best image for a device of compute capability <paramref name="computeCapability"/> (e.g. 90): a cubin for
    /// sm_XY when this NVRTC supports it, otherwise PTX for the newest supported virtual architecture not above it.
    /// </summary>
    public CudaKernelImage GetImageForDevice(string sourceFile, int computeCapability)
    {
        if (computeCapability < 50)
            throw new ArgumentOutOfRangeException(nameof(computeCapability), computeCapability,
                "compute capability must be at least 5.0 (given as major*10+minor)");
        var archs = Nvrtc.SupportedArchitectures();
        if (Array.IndexOf(archs, computeCapability) >= 0)
            return Compile(sourceFile, $"sm_{computeCapability}", NvrtcOutput.Cubin);
        var best = archs.Where(a => a <= computeCapability).DefaultIfEmpty(0).Max();
        if (best == 0)
            throw new CudaNotAvailableException(
                $"this NVRTC supports architectures {string.Join(", ", archs)}, none at or below sm_{computeCapability}");
        return Compile(sourceFile, $"compute_{best}", NvrtcOutput.Ptx);
    }

    /// <summary>Compiles (or reads from the cache) <paramref name="sourceFile"/> for <paramref name="architecture"/>.</summary>
    public CudaKernelImage Compile(string sourceFile, string architecture, NvrtcOutput kind)
    {
        if (kind == NvrtcOutput.Cubin && !architecture.StartsWith("sm_", StringComparison.Ordinal))
            throw new ArgumentException($"a cubin needs a real architecture (sm_XY), not '{architecture}'", nameof(architecture));
        if (kind == NvrtcOutput.Ptx && !architecture.StartsWith("compute_", StringComparison.Ordinal))
            throw new ArgumentException($"PTX needs a virtual architecture (compute_XY), not '{architecture}'", nameof(architecture));
        var source = CudaKernelSources.Read(sourceFile);
        var headers = CudaKernelSources.Headers;
        var options = Options(architecture);
        var (major, minor) = Nvrtc.Version();
        var key = CacheKey(source, headers, architecture, kind, options, major, minor);
        var ext = kind == NvrtcOutput.Ptx ? "ptx" : "cubin";
        var path = Path.Combine(CacheDirectory, $"{Path.GetFileNameWithoutExtension(sourceFile)}-{architecture}-{key}.{ext}");
        lock (_lock)
        {
            if (File.Exists(path))
            {
                var cached = File.ReadAllBytes(path);
                if (cached.Length > 0)
                {
                    Interlocked.Increment(ref _cacheHits);
                    return new CudaKernelImage(sourceFile, architecture, kind, cached, true, key);
                }
            }
            var result = Nvrtc.Compile(source, sourceFile, headers, options, kind);
            Interlocked.Increment(ref _compilations);
            try
            {
                Directory.CreateDirectory(CacheDirectory);
                // unique per write: loaders in one process (parallel tests) may compile the same file at once, and a
                // shared temporary name would let one rename the other's half-written file into place
                var tmp = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
                File.WriteAllBytes(tmp, result.Image);
                File.Move(tmp, path, overwrite: true);
            }
            catch (IOException)
            {
                // A read-only or full cache directory only costs a recompilation next time.
            }
            catch (UnauthorizedAccessException)
            {
            }
            return new CudaKernelImage(sourceFile, architecture, kind, result.Image, false, key);
        }
    }

    internal static string CacheKey(string source, IReadOnlyList<KeyValuePair<string, string>> headers,
        string architecture, NvrtcOutput kind, IReadOnlyList<string> options, int nvrtcMajor, int nvrtcMinor)
    {
        var sb = new StringBuilder();
        sb.Append("mtfm-cuda-cache-v1\n").Append(nvrtcMajor).Append('.').Append(nvrtcMinor).Append('\n')
            .Append(architecture).Append('\n').Append(kind).Append('\n');
        foreach (var o in options)
            sb.Append(o).Append('\n');
        foreach (var h in headers)
            sb.Append(h.Key).Append('\n').Append(h.Value.Length).Append('\n').Append(h.Value);
        sb.Append(source.Length).Append('\n').Append(source);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())))[..32];
    }
}
