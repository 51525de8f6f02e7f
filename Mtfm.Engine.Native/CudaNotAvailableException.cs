namespace Mtfm.Engine.Native;

/// <summary>
/// Thrown when CUDA cannot be used on this machine: a library (libcuda, NVRTC, cuBLAS) is missing, the
/// driver does not initialise, or there is no device. The message always starts with "CUDA not available: ".
/// </summary>
public sealed class CudaNotAvailableException : Exception
{
    /// <summary>Creates the exception for <paramref name="reason"/> (what is missing, and where it was looked for).</summary>
    public CudaNotAvailableException(string reason)
        : base("CUDA not available: " + reason) => Reason = reason;

    /// <summary>Creates the exception for <paramref name="reason"/> with the failure that caused it.</summary>
    public CudaNotAvailableException(string reason, Exception inner)
        : base("CUDA not available: " + reason, inner) => Reason = reason;

    /// <summary>Why CUDA is not available, without the common prefix.</summary>
    public string Reason { get; }
}
