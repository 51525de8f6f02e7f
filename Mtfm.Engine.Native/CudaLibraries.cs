using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.InteropServices;

namespace Mtfm.Engine.Native;

/// <summary>The three native libraries the bindings use.</summary>
internal enum CudaLibrary
{
    /// <summary>The CUDA driver API (libcuda, installed with the GPU driver).</summary>
    Driver,

    /// <summary>NVRTC, the run-time CUDA C++ compiler.</summary>
    Nvrtc,

    /// <summary>cuBLAS.</summary>
    Cublas,
}

/// <summary>
/// Finds and loads libcuda, NVRTC and cuBLAS for the <c>[LibraryImport]</c> bindings through a
/// <see cref="NativeLibrary.SetDllImportResolver"/> hook, probing versioned sonames:
/// libcuda.so.1; libnvrtc.so.13/.12/.11.2; libcublas.so.13/.12/.11 (then the unversioned names).
/// Environment: <c>MTFM_CUDA_LIB_DIR</c> is searched first for every library; <c>MTFM_LIBCUDA_PATH</c>,
/// <c>MTFM_LIBNVRTC_PATH</c>, <c>MTFM_LIBCUBLAS_PATH</c> name one exact file each and then nothing else is tried.
/// A library that cannot be loaded gives one <see cref="CudaNotAvailableException"/> naming what was tried.
/// </summary>
internal static class CudaLibraries
{
    /// <summary>Logical library names used in <c>[LibraryImport]</c>; the resolver maps them to real files.</summary>
    internal const string DriverName = "mtfm-cuda-driver";
    internal const string NvrtcName = "mtfm-cuda-nvrtc";
    internal const string CublasName = "mtfm-cuda-cublas";

    private static readonly object s_resolverLock = new();
    private static bool s_resolverSet;
    private static readonly ConcurrentDictionary<CudaLibrary, Lazy<LoadResult>> s_loaded = new();

    internal readonly record struct LoadResult(nint Handle, string? Path, string? Error);

    /// <summary>Installs the resolver for this assembly (idempotent). Called from the bindings' static constructors.</summary>
    internal static void EnsureResolver()
    {
        lock (s_resolverLock)
        {
            if (s_resolverSet)
                return;
            NativeLibrary.SetDllImportResolver(typeof(CudaLibraries).Assembly, Resolve);
            s_resolverSet = true;
        }
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        CudaLibrary? lib = name switch
        {
            DriverName => CudaLibrary.Driver,
            NvrtcName => CudaLibrary.Nvrtc,
            CublasName => CudaLibrary.Cublas,
            _ => null,
        };
        if (lib is null)
            return 0;
        var r = Get(lib.Value);
        return r.Handle; // 0: the runtime throws DllNotFoundException; callers check availability first
    }

    /// <summary>Loads (once) and returns the handle of <paramref name="lib"/>, or throws <see cref="CudaNotAvailableException"/>.</summary>
    internal static nint Require(CudaLibrary lib)
    {
        var r = Get(lib);
        if (r.Handle == 0)
            throw new CudaNotAvailableException(r.Error ?? $"{lib} could not be loaded");
        return r.Handle;
    }

    /// <summary>Like <see cref="Require(CudaLibrary)"/> with an explicit environment lookup, without caching (tests).</summary>
    internal static nint Require(CudaLibrary lib, Func<string, string?> env)
    {
        var r = TryLoad(lib, env);
        if (r.Handle == 0)
            throw new CudaNotAvailableException(r.Error ?? $"{lib} could not be loaded");
        return r.Handle;
    }

    /// <summary>True when <paramref name="lib"/> can be loaded; otherwise <paramref name="reason"/> says why.</summary>
    internal static bool TryRequire(CudaLibrary lib, out string reason)
    {
        var r = Get(lib);
        reason = r.Error ?? "";
        return r.Handle != 0;
    }

    /// <summary>The file a library was loaded from, or null.</summary>
    internal static string? LoadedPath(CudaLibrary lib) => Get(lib).Path;

    private static LoadResult Get(CudaLibrary lib) =>
        s_loaded.GetOrAdd(lib, l => new Lazy<LoadResult>(() => TryLoad(l, Environment.GetEnvironmentVariable))).Value;

    /// <summary>The sonames probed for <paramref name="lib"/>, most recent first.</summary>
    internal static string[] Sonames(CudaLibrary lib) => lib switch
    {
        CudaLibrary.Driver => OperatingSystem.IsWindows() ? ["nvcuda.dll"] : ["libcuda.so.1", "libcuda.so"],
        CudaLibrary.Nvrtc => OperatingSystem.IsWindows()
            ? ["nvrtc64_130_0.dll", "nvrtc64_120_0.dll", "nvrtc64_112_0.dll"]
            : ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"],
        CudaLibrary.Cublas => OperatingSystem.IsWindows()
            ? ["cublas64_13.dll", "cublas64_12.dll", "cublas64_11.dll"]
            : ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"],
        _ => throw new ArgumentOutOfRangeException(nameof(lib), lib, "unknown CUDA library"),
    };

    /// <summary>The environment variable naming an exact file for <paramref name="lib"/>.</summary>
    internal static string PathVariable(CudaLibrary lib) => lib switch
    {
        CudaLibrary.Driver => "MTFM_LIBCUDA_PATH",
        CudaLibrary.Nvrtc => "MTFM_LIBNVRTC_PATH",
        CudaLibrary.Cublas => "MTFM_LIBCUBLAS_PATH",
        _ => throw new ArgumentOutOfRangeException(nameof(lib), lib, "unknown CUDA library"),
    };

    /// <summary>The candidates tried for <paramref name="lib"/> in order, given an environment lookup.</summary>
    internal static List<string> Candidates(CudaLibrary lib, Func<string, string?> env)
    {
        var exact = env(PathVariable(lib));
        if (!string.IsNullOrWhiteSpace(exact))
            return [exact];
        var list = new List<string>();
        var dir = env("MTFM_CUDA_LIB_DIR");
        if (!string.IsNullOrWhiteSpace(dir))
            foreach (var s in Sonames(lib))
                list.Add(System.IO.Path.Combine(dir, s));
        list.AddRange(Sonames(lib));
        return list;
    }

    /// <summary>
    /// <c>libcublasLt.so.N</c> in the directory of a versioned <c>libcublas.so.N[.x.y]</c> path, when it exists
    /// (libcublas's DT_NEEDED is that soname; loading it first by path satisfies it wherever the loader looks).
    /// </summary>
    internal static string? CublasLtBeside(string cublasPath)
    {
        var name = System.IO.Path.GetFileName(cublasPath);
        const string prefix = "libcublas.so.";
        if (!name.StartsWith(prefix, StringComparison.Ordinal))
            return null;
        var major = name[prefix.Length..].Split('.')[0];
        if (major.Length == 0 || !major.All(char.IsAsciiDigit))
            return null;
        var lt = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(cublasPath) ?? "", "libcublasLt.so." + major);
        return File.Exists(lt) ? lt : null;
    }

    /// <summary>The file NVRTC <paramref name="major"/>.<paramref name="minor"/> dlopens at compile time.</summary>
    internal static string NvrtcBuiltinsName(int major, int minor) => $"libnvrtc-builtins.so.{major}.{minor}";

    /// <summary>
    /// NVRTC dlopens <c>libnvrtc-builtins.so.MAJOR.MINOR</c> by soname at its first compilation and fails with
    /// NVRTC_ERROR_BUILTIN_OPERATION_FAILURE when the loader cannot find it (a toolkit or wheel directory that is not on
    /// the loader path, named by MTFM_CUDA_LIB_DIR or MTFM_LIBNVRTC_PATH). Loading it first by path from NVRTC's own
    /// directory satisfies that dlopen (glibc matches loaded objects by soname). Best effort: never throws.
    /// </summary>
    private static unsafe void PreloadNvrtcBuiltins(nint nvrtc, string dir)
    {
        try
        {
            if (!NativeLibrary.TryGetExport(nvrtc, "nvrtcVersion", out var fn))
                return;
            int major, minor;
            if (((delegate* unmanaged<int*, int*, int>)fn)(&major, &minor) != 0)
                return;
            var builtins = System.IO.Path.Combine(dir, NvrtcBuiltinsName(major, minor));
            if (File.Exists(builtins))
                NativeLibrary.TryLoad(builtins, out _);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Tries every candidate; never throws. Exposed for tests (a fake environment).</summary>
    internal static LoadResult TryLoad(CudaLibrary lib, Func<string, string?> env)
    {
        var candidates = Candidates(lib, env);
        foreach (var c in candidates)
        {
            var dir = OperatingSystem.IsWindows() ? null : System.IO.Path.GetDirectoryName(c);
            if (!string.IsNullOrEmpty(dir) && lib == CudaLibrary.Cublas && CublasLtBeside(c) is { } lt)
                NativeLibrary.TryLoad(lt, out _); // libcublas needs libcublasLt; the toolkit dir may not be on the loader path
            if (NativeLibrary.TryLoad(c, out var h))
            {
                if (!string.IsNullOrEmpty(dir) && lib == CudaLibrary.Nvrtc)
                    PreloadNvrtcBuiltins(h, dir);
                return new LoadResult(h, c, null);
            }
        }
        var what = lib switch
        {
            CudaLibrary.Driver => "the CUDA driver library (libcuda, part of the NVIDIA driver)",
            CudaLibrary.Nvrtc => "NVRTC (libnvrtc; Debian: apt-get install libnvrtc11.2 from non-free)",
            _ => "cuBLAS (libcublas)",
        };
        var exact = env(PathVariable(lib));
        var hint = string.IsNullOrWhiteSpace(exact)
            ? $"set MTFM_CUDA_LIB_DIR or {PathVariable(lib)} to point elsewhere"
            : $"{PathVariable(lib)} is set to '{exact}'";
        return new LoadResult(0, null, $"{what} could not be loaded; tried {string.Join(", ", candidates)} ({hint})");
    }
}
