namespace Mtfm.Bench;

/// <summary>
/// One GEMM problem size for the benchmarks: op(A) is M × K, op(B) is K × N. Printed as "MxNxK" plus N/T for whether A
/// and B are transposed.
/// </summary>
public readonly record struct GemmShape(string Name, int M, int N, int K, bool TransA = false, bool TransB = false)
{
    /// <summary>The sizes typical of MTFM that the GEMM benchmarks run.</summary>
    public static readonly GemmShape[] All =
    [
        new("tokens 4096x256 * 256x1024", 4096, 1024, 256),
        new("tokens 4096x256 * (1024x256)^T", 4096, 1024, 256, TransB: true),
        new("grad (4096x256)^T * 4096x1024", 256, 1024, 4096, TransA: true),
        new("square 512", 512, 512, 512),
        new("square 1024", 1024, 1024, 1024),
        new("skinny 4096x64 * 64x16", 4096, 16, 64),
        new("tower 256x16 * 16x64", 256, 64, 16),
        new("tiny wgrad (4020x64)^T * 4020x64", 64, 64, 4020, TransA: true),
        new("tiny wgrad (4020x64)^T * 4020x128", 64, 128, 4020, TransA: true),
        new("tiny wgrad (1811x64)^T * 1811x64", 64, 64, 1811, TransA: true),
        new("small wgrad (11264x128)^T * 11264x128", 128, 128, 11264, TransA: true),
        new("small wgrad (673x128)^T * 673x128", 128, 128, 673, TransA: true),
        new("tiny wgrad (230x64)^T * 230x64", 64, 64, 230, TransA: true),
        new("tiny tokenizer 1811x48 * 48x64", 1811, 64, 48),
        new("small wgrad (11264x128)^T * 11264x512", 128, 512, 11264, TransA: true),
        new("small wgrad (11264x128)^T * 11264x64", 128, 64, 11264, TransA: true),
        new("small fwd 11264x128 * 128x64", 11264, 64, 128),
        new("small dX 11264x64 * (128x64)^T", 11264, 128, 64, TransB: true),
    ];

    /// <inheritdoc/>
    public override string ToString() => $"{M}x{N}x{K} {(TransA ? 'T' : 'N')}{(TransB ? 'T' : 'N')}";
}
