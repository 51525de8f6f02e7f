namespace Mtfm.Engine.Native;

/// <summary>
/// A CUDA driver, NVRTC or cuBLAS call returned an error. The message names the call, the numeric code and the
/// library's error string.
/// </summary>
public sealed class CudaException : Exception
{
    /// <summary>Creates the exception for <paramref name="call"/> failing with <paramref name="code"/>.</summary>
    public CudaException(string call, int code, string errorString)
        : base($"{call} failed with {code} ({errorString})")
    {
        Call = call;
        Code = code;
        ErrorString = errorString;
    }

    /// <summary>The failing API call, e.g. <c>cuMemAlloc</c>.</summary>
    public string Call { get; }

    /// <summary>The numeric result code (CUresult, nvrtcResult or cublasStatus_t).</summary>
    public int Code { get; }

    /// <summary>The library's text for <see cref="Code"/>.</summary>
    public string ErrorString { get; }
}
