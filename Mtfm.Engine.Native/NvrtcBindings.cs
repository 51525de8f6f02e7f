using System.Runtime.InteropServices;

namespace Mtfm.Engine.Native;

/// <summary>Raw NVRTC entry points (nvrtcResult-returning). Use <see cref="Nvrtc"/>, which checks results.</summary>
internal static unsafe partial class NvrtcBindings
{
    private const string Lib = CudaLibraries.NvrtcName;

    static NvrtcBindings() => CudaLibraries.EnsureResolver();

    [LibraryImport(Lib, EntryPoint = "nvrtcVersion")]
    internal static partial int nvrtcVersion(out int major, out int minor);

    [LibraryImport(Lib, EntryPoint = "nvrtcGetNumSupportedArchs")]
    internal static partial int nvrtcGetNumSupportedArchs(out int count);

    [LibraryImport(Lib, EntryPoint = "nvrtcGetSupportedArchs")]
    internal static partial int nvrtcGetSupportedArchs(int* archs);

    [LibraryImport(Lib, EntryPoint = "nvrtcCreateProgram")]
    internal static partial int nvrtcCreateProgram(out nint program, byte* source, byte* name, int numHeaders,
        byte** headers, byte** includeNames);

    [LibraryImport(Lib, EntryPoint = "nvrtcCompileProgram")]
    internal static partial int nvrtcCompileProgram(nint program, int numOptions, byte** options);

    [LibraryImport(Lib, EntryPoint = "nvrtcGetProgramLogSize")]
    internal static partial int nvrtcGetProgramLogSize(nint program, out nuint size);

    [LibraryImport(Lib, EntryPoint = "nvrtcGetProgramLog")]
    internal static partial int nvrtcGetProgramLog(nint program, byte* log);

    [LibraryImport(Lib, EntryPoint = "nvrtcGetPTXSize")]
    internal static partial int nvrtcGetPTXSize(nint program, out nuint size);

    [LibraryImport(Lib, EntryPoint = "nvrtcGetPTX")]
    internal static partial int nvrtcGetPTX(nint program, byte* ptx);

    [LibraryImport(Lib, EntryPoint = "nvrtcGetCUBINSize")]
    internal static partial int nvrtcGetCUBINSize(nint program, out nuint size);

    [LibraryImport(Lib, EntryPoint = "nvrtcGetCUBIN")]
    internal static partial int nvrtcGetCUBIN(nint program, byte* cubin);

    [LibraryImport(Lib, EntryPoint = "nvrtcDestroyProgram")]
    internal static partial int nvrtcDestroyProgram(ref nint program);

    [LibraryImport(Lib, EntryPoint = "nvrtcGetErrorString")]
    internal static partial nint nvrtcGetErrorString(int result);
}
