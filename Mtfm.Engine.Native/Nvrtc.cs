using System.Runtime.InteropServices;
using System.Text;

namespace Mtfm.Engine.Native;

/// <summary>What NVRTC should produce.</summary>
internal enum NvrtcOutput
{
    /// <summary>PTX for a virtual architecture (<c>compute_XY</c>); the driver JIT-compiles it at load.</summary>
    Ptx,

    /// <summary>A cubin for a real architecture (<c>sm_XY</c>); loads without JIT.</summary>
    Cubin,
}

/// <summary>The result of one NVRTC compilation.</summary>
/// <param name="Image">PTX text (UTF-8, without the trailing NUL) or cubin bytes.</param>
/// <param name="Log">The compiler's log (warnings; empty when clean).</param>
internal sealed record NvrtcCompilation(byte[] Image, string Log);

/// <summary>Compilation failed: the message carries NVRTC's log.</summary>
internal sealed class NvrtcCompileException(string programName, string log)
    : Exception($"NVRTC could not compile {programName}:\n{log}")
{
    internal string Log { get; } = log;
}

/// <summary>Checked wrapper over NVRTC. <see cref="EnsureAvailable"/> throws <see cref="CudaNotAvailableException"/> when NVRTC is missing.</summary>
internal static unsafe class Nvrtc
{
    /// <summary>Throws <see cref="CudaNotAvailableException"/> when NVRTC cannot be loaded.</summary>
    internal static void EnsureAvailable() => CudaLibraries.Require(CudaLibrary.Nvrtc);

    /// <summary>True when NVRTC can be loaded; otherwise <paramref name="reason"/> says why.</summary>
    internal static bool IsAvailable(out string reason) => CudaLibraries.TryRequire(CudaLibrary.Nvrtc, out reason);

    internal static string ErrorString(int code)
    {
        try
        {
            var p = NvrtcBindings.nvrtcGetErrorString(code);
            return p == 0 ? $"nvrtcResult {code}" : Marshal.PtrToStringUTF8(p) ?? $"nvrtcResult {code}";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return $"nvrtcResult {code}";
        }
    }

    private static void Check(int rc, string call)
    {
        if (rc != 0)
            throw new CudaException(call, rc, ErrorString(rc));
    }

    /// <summary>NVRTC's version, e.g. (11, 8).</summary>
    internal static (int Major, int Minor) Version()
    {
        EnsureAvailable();
        Check(NvrtcBindings.nvrtcVersion(out var major, out var minor), "nvrtcVersion");
        return (major, minor);
    }

    /// <summary>The real architectures NVRTC can target (e.g. 52 … 90), ascending.</summary>
    internal static int[] SupportedArchitectures()
    {
        EnsureAvailable();
        Check(NvrtcBindings.nvrtcGetNumSupportedArchs(out var n), "nvrtcGetNumSupportedArchs");
        var archs = new int[n];
        fixed (int* p = archs)
            Check(NvrtcBindings.nvrtcGetSupportedArchs(p), "nvrtcGetSupportedArchs");
        Array.Sort(archs);
        return archs;
    }

    /// <summary>
    /// Compiles <paramref name="source"/> (named <paramref name="programName"/> in diagnostics) with the given headers
    /// (include name → content) and options. Throws <see cref="NvrtcCompileException"/> with the log on a compile error.
    /// </summary>
    internal static NvrtcCompilation Compile(string source, string programName,
        IReadOnlyList<KeyValuePair<string, string>> headers, IReadOnlyList<string> options, NvrtcOutput output)
    {
        EnsureAvailable();
        var strings = new List<nint>();
        nint program = 0;
        try
        {
            byte* Utf8(string s)
            {
                var p = (byte*)Marshal.StringToCoTaskMemUTF8(s);
                strings.Add((nint)p);
                return p;
            }

            var hdrs = stackalloc byte*[Math.Max(1, headers.Count)];
            var names = stackalloc byte*[Math.Max(1, headers.Count)];
            for (var i = 0; i < headers.Count; i++)
            {
                hdrs[i] = Utf8(headers[i].Value);
                names[i] = Utf8(headers[i].Key);
            }
            Check(NvrtcBindings.nvrtcCreateProgram(out program, Utf8(source), Utf8(programName), headers.Count, hdrs,
                names), "nvrtcCreateProgram");
            var opts = stackalloc byte*[Math.Max(1, options.Count)];
            for (var i = 0; i < options.Count; i++)
                opts[i] = Utf8(options[i]);
            var rc = NvrtcBindings.nvrtcCompileProgram(program, options.Count, opts);
            var log = GetLog(program);
            if (rc == 6) // NVRTC_ERROR_COMPILATION
                throw new NvrtcCompileException(programName, log);
            if (rc != 0) // e.g. 7, NVRTC_ERROR_BUILTIN_OPERATION_FAILURE: the log names the libnvrtc-builtins it could not open
                throw new CudaException($"nvrtcCompileProgram({programName})", rc,
                    log.Length == 0 ? ErrorString(rc) : $"{ErrorString(rc)}: {log}");
            byte[] image;
            if (output == NvrtcOutput.Ptx)
            {
                Check(NvrtcBindings.nvrtcGetPTXSize(program, out var size), "nvrtcGetPTXSize");
                image = new byte[(int)size];
                fixed (byte* p = image)
                    Check(NvrtcBindings.nvrtcGetPTX(program, p), "nvrtcGetPTX");
                var end = Array.IndexOf(image, (byte)0);
                if (end >= 0)
                    Array.Resize(ref image, end);
            }
            else
            {
                Check(NvrtcBindings.nvrtcGetCUBINSize(program, out var size), "nvrtcGetCUBINSize");
                if (size == 0)
                    throw new CudaException($"nvrtcGetCUBIN({programName})", 0,
                        "empty cubin: compile for a real architecture (sm_XY), not a virtual one");
                image = new byte[(int)size];
                fixed (byte* p = image)
                    Check(NvrtcBindings.nvrtcGetCUBIN(program, p), "nvrtcGetCUBIN");
            }
            return new NvrtcCompilation(image, log);
        }
        finally
        {
            if (program != 0)
                NvrtcBindings.nvrtcDestroyProgram(ref program);
            foreach (var p in strings)
                Marshal.FreeCoTaskMem(p);
        }
    }

    private static string GetLog(nint program)
    {
        if (NvrtcBindings.nvrtcGetProgramLogSize(program, out var size) != 0 || size <= 1)
            return "";
        var buf = new byte[(int)size];
        fixed (byte* p = buf)
            Check(NvrtcBindings.nvrtcGetProgramLog(program, p), "nvrtcGetProgramLog");
        return Encoding.UTF8.GetString(buf, 0, (int)size - 1).Trim();
    }
}
