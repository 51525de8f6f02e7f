namespace Mtfm.Engine.Backends.Cuda;

/// <summary>A launchable kernel: its name and, on a real device, the CUfunction handle (0 on the emulated device).</summary>
internal sealed class CudaKernel(string sourceFile, string name, nint function)
{
    /// <summary>The <c>cuda/*.cu</c> file that defines the kernel.</summary>
    public string SourceFile { get; } = sourceFile;

    /// <summary>The kernel's <c>extern "C"</c> name (prefix <c>mtfm_</c>).</summary>
    public string Name { get; } = name;

    /// <summary>CUfunction on a real device; 0 on the emulated one (looked up by name).</summary>
    public nint Function { get; } = function;

    /// <summary>
    /// Real device: the largest dynamic shared memory (bytes) a launch may request without raising the kernel's
    /// <c>CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES</c> (48 KiB minus the static shared memory until raised).
    /// </summary>
    internal int DynamicSharedLimit { get; set; }

    /// <summary>Real device: the kernel's static <c>__shared__</c> bytes (<c>CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES</c>).</summary>
    internal int StaticSharedBytes { get; init; }

    public override string ToString() => $"{SourceFile}:{Name}";
}
