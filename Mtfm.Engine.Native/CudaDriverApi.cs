using System.Runtime.InteropServices;
using System.Text;

namespace Mtfm.Engine.Native;

/// <summary>
/// Checked wrappers over the CUDA driver API: every non-success result becomes a <see cref="CudaException"/>
/// naming the call and the driver's error string. Synchronising calls are counted in <see cref="CudaSyncCounter"/>.
/// Call <see cref="Initialize"/> first: it turns a missing library or device into <see cref="CudaNotAvailableException"/>.
/// </summary>
internal static unsafe class CudaDriverApi
{
    internal const int CUDA_SUCCESS = 0;
    internal const int CUDA_ERROR_NOT_READY = 600;
    internal const int CUDA_ERROR_NO_DEVICE = 100;
    internal const int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    internal const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    internal const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    internal const int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
    internal const int CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1;
    internal const int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
    internal const uint CU_STREAM_NON_BLOCKING = 1;
    internal const uint CU_EVENT_DISABLE_TIMING = 2;
    internal const uint CU_MEMHOSTALLOC_PORTABLE = 1;

    private static readonly object s_initLock = new();
    private static string? s_initError;
    private static bool s_initDone;

    /// <summary>Loads libcuda and calls cuInit once; throws <see cref="CudaNotAvailableException"/> with the reason on failure.</summary>
    internal static void Initialize()
    {
        lock (s_initLock)
        {
            if (!s_initDone)
            {
                s_initDone = true;
                if (!CudaLibraries.TryRequire(CudaLibrary.Driver, out var reason))
                {
                    s_initError = reason;
                }
                else
                {
                    int rc;
                    try
                    {
                        rc = CudaDriverBindings.cuInit(0);
                    }
                    catch (EntryPointNotFoundException e)
                    {
                        s_initError = "libcuda has no cuInit: " + e.Message;
                        rc = 0;
                    }
                    if (s_initError is null && rc != CUDA_SUCCESS)
                        s_initError = $"cuInit failed with {rc} ({ErrorString(rc)})";
                    if (s_initError is null)
                    {
                        var rcCount = CudaDriverBindings.cuDeviceGetCount(out var n);
                        if (rcCount != CUDA_SUCCESS)
                            s_initError = $"cuDeviceGetCount failed with {rcCount} ({ErrorString(rcCount)})";
                        else if (n == 0)
                            s_initError = "the driver reports no CUDA device";
                    }
                }
            }
            if (s_initError is not null)
                throw new CudaNotAvailableException(s_initError);
        }
    }

    /// <summary>The driver's text for a CUresult (never throws).</summary>
    internal static string ErrorString(int code)
    {
        try
        {
            if (CudaDriverBindings.cuGetErrorString(code, out var p) == CUDA_SUCCESS && p != 0)
                return Marshal.PtrToStringUTF8(p) ?? $"CUresult {code}";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
        return $"CUresult {code}";
    }

    internal static void Check(int rc, string call)
    {
        if (rc != CUDA_SUCCESS)
            throw new CudaException(call, rc, ErrorString(rc));
    }

    internal static int DeviceCount()
    {
        Initialize();
        Check(CudaDriverBindings.cuDeviceGetCount(out var n), "cuDeviceGetCount");
        return n;
    }

    internal static int DeviceGet(int ordinal)
    {
        Check(CudaDriverBindings.cuDeviceGet(out var d, ordinal), "cuDeviceGet");
        return d;
    }

    internal static int DeviceAttribute(int device, int attribute)
    {
        Check(CudaDriverBindings.cuDeviceGetAttribute(out var v, attribute, device), "cuDeviceGetAttribute");
        return v;
    }

    internal static string DeviceName(int device)
    {
        var buf = stackalloc byte[256];
        Check(CudaDriverBindings.cuDeviceGetName(buf, 256, device), "cuDeviceGetName");
        var len = 0;
        while (len < 256 && buf[len] != 0)
            len++;
        return Encoding.UTF8.GetString(buf, len);
    }

    internal static long DeviceTotalMemory(int device)
    {
        Check(CudaDriverBindings.cuDeviceTotalMem(out var b, device), "cuDeviceTotalMem");
        return (long)b;
    }

    internal static nint PrimaryContextRetain(int device)
    {
        Check(CudaDriverBindings.cuDevicePrimaryCtxRetain(out var c, device), "cuDevicePrimaryCtxRetain");
        return c;
    }

    internal static void PrimaryContextRelease(int device) =>
        Check(CudaDriverBindings.cuDevicePrimaryCtxRelease(device), "cuDevicePrimaryCtxRelease");

    internal static void ContextSetCurrent(nint context) =>
        Check(CudaDriverBindings.cuCtxSetCurrent(context), "cuCtxSetCurrent");

    /// <summary>The context current on the calling thread (0 when none).</summary>
    internal static nint ContextGetCurrent()
    {
        Check(CudaDriverBindings.cuCtxGetCurrent(out var c), "cuCtxGetCurrent");
        return c;
    }

    internal static void ContextSynchronize()
    {
        CudaSyncCounter.Record("cuCtxSynchronize");
        Check(CudaDriverBindings.cuCtxSynchronize(), "cuCtxSynchronize");
    }

    internal static ulong MemAlloc(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        Check(CudaDriverBindings.cuMemAlloc(out var p, (nuint)bytes), $"cuMemAlloc({bytes} bytes)");
        return p;
    }

    internal static void MemFree(ulong ptr) => Check(CudaDriverBindings.cuMemFree(ptr), "cuMemFree");

    internal static nint MemHostAlloc(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        Check(CudaDriverBindings.cuMemHostAlloc(out var p, (nuint)bytes, CU_MEMHOSTALLOC_PORTABLE),
            $"cuMemHostAlloc({bytes} bytes)");
        return p;
    }

    internal static void MemFreeHost(nint ptr) => Check(CudaDriverBindings.cuMemFreeHost(ptr), "cuMemFreeHost");

    internal static void MemcpyHtoD(ulong dst, void* src, long bytes)
    {
        CudaSyncCounter.Record("cuMemcpyHtoD");
        Check(CudaDriverBindings.cuMemcpyHtoD(dst, src, (nuint)bytes), "cuMemcpyHtoD");
    }

    internal static void MemcpyDtoH(void* dst, ulong src, long bytes)
    {
        CudaSyncCounter.Record("cuMemcpyDtoH");
        Check(CudaDriverBindings.cuMemcpyDtoH(dst, src, (nuint)bytes), "cuMemcpyDtoH");
    }

    internal static void MemcpyDtoD(ulong dst, ulong src, long bytes)
    {
        CudaSyncCounter.Record("cuMemcpyDtoD");
        Check(CudaDriverBindings.cuMemcpyDtoD(dst, src, (nuint)bytes), "cuMemcpyDtoD");
    }

    internal static void MemcpyHtoDAsync(ulong dst, void* src, long bytes, nint stream) =>
        Check(CudaDriverBindings.cuMemcpyHtoDAsync(dst, src, (nuint)bytes, stream), "cuMemcpyHtoDAsync");

    internal static void MemcpyDtoHAsync(void* dst, ulong src, long bytes, nint stream) =>
        Check(CudaDriverBindings.cuMemcpyDtoHAsync(dst, src, (nuint)bytes, stream), "cuMemcpyDtoHAsync");

    internal static void MemcpyDtoDAsync(ulong dst, ulong src, long bytes, nint stream) =>
        Check(CudaDriverBindings.cuMemcpyDtoDAsync(dst, src, (nuint)bytes, stream), "cuMemcpyDtoDAsync");

    internal static void MemsetD32Async(ulong dst, uint value, long count, nint stream) =>
        Check(CudaDriverBindings.cuMemsetD32Async(dst, value, (nuint)count, stream), "cuMemsetD32Async");

    internal static nint StreamCreate()
    {
        Check(CudaDriverBindings.cuStreamCreate(out var s, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
        return s;
    }

    internal static void StreamDestroy(nint stream) =>
        Check(CudaDriverBindings.cuStreamDestroy(stream), "cuStreamDestroy");

    internal static void StreamSynchronize(nint stream)
    {
        CudaSyncCounter.Record("cuStreamSynchronize");
        Check(CudaDriverBindings.cuStreamSynchronize(stream), "cuStreamSynchronize");
    }

    internal static void StreamWaitEvent(nint stream, nint evt) =>
        Check(CudaDriverBindings.cuStreamWaitEvent(stream, evt, 0), "cuStreamWaitEvent");

    internal static nint EventCreate(bool timing = false)
    {
        Check(CudaDriverBindings.cuEventCreate(out var e, timing ? 0 : CU_EVENT_DISABLE_TIMING), "cuEventCreate");
        return e;
    }

    internal static void EventDestroy(nint evt) => Check(CudaDriverBindings.cuEventDestroy(evt), "cuEventDestroy");

    internal static void EventRecord(nint evt, nint stream) =>
        Check(CudaDriverBindings.cuEventRecord(evt, stream), "cuEventRecord");

    internal static void EventSynchronize(nint evt)
    {
        CudaSyncCounter.Record("cuEventSynchronize");
        Check(CudaDriverBindings.cuEventSynchronize(evt), "cuEventSynchronize");
    }

    /// <summary>True when all work before the event has completed; does not block.</summary>
    internal static bool EventQuery(nint evt)
    {
        var rc = CudaDriverBindings.cuEventQuery(evt);
        if (rc == CUDA_ERROR_NOT_READY)
            return false;
        Check(rc, "cuEventQuery");
        return true;
    }

    internal static float EventElapsedMilliseconds(nint start, nint end)
    {
        Check(CudaDriverBindings.cuEventElapsedTime(out var ms, start, end), "cuEventElapsedTime");
        return ms;
    }

    internal static nint ModuleLoadData(ReadOnlySpan<byte> image)
    {
        // PTX must be NUL-terminated; cubins carry their own size.
        var copy = new byte[image.Length + 1];
        image.CopyTo(copy);
        fixed (byte* p = copy)
        {
            Check(CudaDriverBindings.cuModuleLoadData(out var m, p), "cuModuleLoadData");
            return m;
        }
    }

    internal static nint ModuleGetFunction(nint module, string name)
    {
        Check(CudaDriverBindings.cuModuleGetFunction(out var f, module, name), $"cuModuleGetFunction({name})");
        return f;
    }

    internal static void ModuleUnload(nint module) => Check(CudaDriverBindings.cuModuleUnload(module), "cuModuleUnload");

    internal static int FuncGetAttribute(nint function, int attribute)
    {
        Check(CudaDriverBindings.cuFuncGetAttribute(out var v, attribute, function), "cuFuncGetAttribute");
        return v;
    }

    internal static void FuncSetAttribute(nint function, int attribute, int value) =>
        Check(CudaDriverBindings.cuFuncSetAttribute(function, attribute, value), "cuFuncSetAttribute");

    internal static void LaunchKernel(nint function, string name, uint gx, uint gy, uint gz, uint bx, uint by,
        uint bz, uint sharedBytes, nint stream, void** args) =>
        Check(CudaDriverBindings.cuLaunchKernel(function, gx, gy, gz, bx, by, bz, sharedBytes, stream, args, null),
            $"cuLaunchKernel({name})");
}
