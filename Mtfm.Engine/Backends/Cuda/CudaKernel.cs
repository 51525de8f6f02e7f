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

    public override string ToString() => $"{SourceFile}:{Name}";
}
