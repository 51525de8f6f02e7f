using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Backends.Cuda;

namespace Mtfm.Engine.Backends;

/// <summary>
/// Where a model trains and evaluates: the SIMD CPU backend with a thread count, or the first CUDA GPU. A device is a
/// description; the backend it names is opened by whoever takes it (<c>TrainedModel.Train</c>, <c>TrainedModel.Load</c>,
/// <c>Scorer.Load</c>) and freed with what they return.
/// </summary>
public sealed class ComputeDevice
{
    private readonly bool _cuda;

    private ComputeDevice(bool cuda, int threads)
    {
        _cuda = cuda;
        Threads = threads;
    }

    /// <summary>The CPU backend with <paramref name="threads"/> worker threads (0 = one per core).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is negative.</exception>
    public static ComputeDevice Cpu(int threads = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        return new ComputeDevice(cuda: false, threads);
    }

    /// <summary>
    /// The first CUDA GPU (driver API, NVRTC-compiled kernels). Opening it on a machine without a usable GPU, driver or
    /// NVRTC throws <see cref="Native.CudaNotAvailableException"/> whose message starts with "CUDA not available: " and
    /// names what is missing.
    /// </summary>
    public static ComputeDevice Cuda() => new(cuda: true, threads: 0);

    /// <summary><c>cpu</c> or <c>cuda</c>.</summary>
    public string Kind => _cuda ? "cuda" : "cpu";

    /// <summary>CPU worker threads requested (0 = one per core); 0 for CUDA.</summary>
    public int Threads { get; }

    /// <summary>The device as text, e.g. <c>cpu (4 threads)</c>.</summary>
    public override string ToString() => _cuda ? "cuda" : Threads == 0 ? "cpu (one thread per core)" : $"cpu ({Threads} threads)";

    /// <summary>Opens the backend (the caller owns and disposes it).</summary>
    internal IBackend Open() => _cuda ? CudaBackend.OpenDevice() : new CpuBackend(Threads);
}
