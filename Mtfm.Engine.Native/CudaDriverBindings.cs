using System.Runtime.InteropServices;

namespace Mtfm.Engine.Native;

/// <summary>Raw CUDA driver API entry points (CUresult-returning). Use <see cref="CudaDriverApi"/>, which checks results.</summary>
internal static unsafe partial class CudaDriverBindings
{
    private const string Lib = CudaLibraries.DriverName;

    static CudaDriverBindings() => CudaLibraries.EnsureResolver();

    [LibraryImport(Lib, EntryPoint = "cuInit")]
    internal static partial int cuInit(uint flags);

    [LibraryImport(Lib, EntryPoint = "cuDriverGetVersion")]
    internal static partial int cuDriverGetVersion(out int version);

    [LibraryImport(Lib, EntryPoint = "cuDeviceGetCount")]
    internal static partial int cuDeviceGetCount(out int count);

    [LibraryImport(Lib, EntryPoint = "cuDeviceGet")]
    internal static partial int cuDeviceGet(out int device, int ordinal);

    [LibraryImport(Lib, EntryPoint = "cuDeviceGetAttribute")]
    internal static partial int cuDeviceGetAttribute(out int value, int attribute, int device);

    [LibraryImport(Lib, EntryPoint = "cuDeviceGetName")]
    internal static partial int cuDeviceGetName(byte* name, int length, int device);

    [LibraryImport(Lib, EntryPoint = "cuDeviceTotalMem_v2")]
    internal static partial int cuDeviceTotalMem(out nuint bytes, int device);

    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRetain")]
    internal static partial int cuDevicePrimaryCtxRetain(out nint context, int device);

    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRelease_v2")]
    internal static partial int cuDevicePrimaryCtxRelease(int device);

    [LibraryImport(Lib, EntryPoint = "cuCtxSetCurrent")]
    internal static partial int cuCtxSetCurrent(nint context);

    [LibraryImport(Lib, EntryPoint = "cuCtxGetCurrent")]
    internal static partial int cuCtxGetCurrent(out nint context);

    [LibraryImport(Lib, EntryPoint = "cuCtxSynchronize")]
    internal static partial int cuCtxSynchronize();

    [LibraryImport(Lib, EntryPoint = "cuMemAlloc_v2")]
    internal static partial int cuMemAlloc(out ulong devicePtr, nuint bytes);

    [LibraryImport(Lib, EntryPoint = "cuMemFree_v2")]
    internal static partial int cuMemFree(ulong devicePtr);

    [LibraryImport(Lib, EntryPoint = "cuMemHostAlloc")]
    internal static partial int cuMemHostAlloc(out nint hostPtr, nuint bytes, uint flags);

    [LibraryImport(Lib, EntryPoint = "cuMemFreeHost")]
    internal static partial int cuMemFreeHost(nint hostPtr);

    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoD_v2")]
    internal static partial int cuMemcpyHtoD(ulong dst, void* src, nuint bytes);

    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoH_v2")]
    internal static partial int cuMemcpyDtoH(void* dst, ulong src, nuint bytes);

    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoD_v2")]
    internal static partial int cuMemcpyDtoD(ulong dst, ulong src, nuint bytes);

    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoDAsync_v2")]
    internal static partial int cuMemcpyHtoDAsync(ulong dst, void* src, nuint bytes, nint stream);

    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoHAsync_v2")]
    internal static partial int cuMemcpyDtoHAsync(void* dst, ulong src, nuint bytes, nint stream);

    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoDAsync_v2")]
    internal static partial int cuMemcpyDtoDAsync(ulong dst, ulong src, nuint bytes, nint stream);

    [LibraryImport(Lib, EntryPoint = "cuMemsetD32Async")]
    internal static partial int cuMemsetD32Async(ulong dst, uint value, nuint count, nint stream);

    [LibraryImport(Lib, EntryPoint = "cuStreamCreate")]
    internal static partial int cuStreamCreate(out nint stream, uint flags);

    [LibraryImport(Lib, EntryPoint = "cuStreamDestroy_v2")]
    internal static partial int cuStreamDestroy(nint stream);

    [LibraryImport(Lib, EntryPoint = "cuStreamSynchronize")]
    internal static partial int cuStreamSynchronize(nint stream);

    [LibraryImport(Lib, EntryPoint = "cuStreamWaitEvent")]
    internal static partial int cuStreamWaitEvent(nint stream, nint evt, uint flags);

    [LibraryImport(Lib, EntryPoint = "cuEventCreate")]
    internal static partial int cuEventCreate(out nint evt, uint flags);

    [LibraryImport(Lib, EntryPoint = "cuEventDestroy_v2")]
    internal static partial int cuEventDestroy(nint evt);

    [LibraryImport(Lib, EntryPoint = "cuEventRecord")]
    internal static partial int cuEventRecord(nint evt, nint stream);

    [LibraryImport(Lib, EntryPoint = "cuEventSynchronize")]
    internal static partial int cuEventSynchronize(nint evt);

    [LibraryImport(Lib, EntryPoint = "cuEventQuery")]
    internal static partial int cuEventQuery(nint evt);

    [LibraryImport(Lib, EntryPoint = "cuEventElapsedTime")]
    internal static partial int cuEventElapsedTime(out float milliseconds, nint start, nint end);

    [LibraryImport(Lib, EntryPoint = "cuModuleLoadData")]
    internal static partial int cuModuleLoadData(out nint module, void* image);

    [LibraryImport(Lib, EntryPoint = "cuModuleGetFunction", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int cuModuleGetFunction(out nint function, nint module, string name);

    [LibraryImport(Lib, EntryPoint = "cuModuleUnload")]
    internal static partial int cuModuleUnload(nint module);

    [LibraryImport(Lib, EntryPoint = "cuFuncGetAttribute")]
    internal static partial int cuFuncGetAttribute(out int value, int attribute, nint function);

    [LibraryImport(Lib, EntryPoint = "cuFuncSetAttribute")]
    internal static partial int cuFuncSetAttribute(nint function, int attribute, int value);

    [LibraryImport(Lib, EntryPoint = "cuLaunchKernel")]
    internal static partial int cuLaunchKernel(nint function, uint gridX, uint gridY, uint gridZ, uint blockX,
        uint blockY, uint blockZ, uint sharedBytes, nint stream, void** kernelParams, void** extra);

    [LibraryImport(Lib, EntryPoint = "cuGetErrorString")]
    internal static partial int cuGetErrorString(int error, out nint text);
}
