using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>Which instruction set the CPU SGEMM runs its micro-kernels with.</summary>
internal enum GemmIsa
{
    /// <summary>Portable scalar code.</summary>
    Scalar,

    /// <summary>256-bit vectors with FMA (AVX2 + FMA3).</summary>
    Avx2,

    /// <summary>512-bit vectors with FMA (AVX-512F).</summary>
    Avx512,
}

/// <summary>Detects the instruction sets the SGEMM may use on this machine.</summary>
internal static class GemmIsaSupport
{
    /// <summary>The fastest instruction set available here.</summary>
    public static GemmIsa Best { get; } =
        Avx512F.IsSupported && Vector512.IsHardwareAccelerated ? GemmIsa.Avx512
        : Fma.IsSupported && Avx2.IsSupported && Vector256.IsHardwareAccelerated ? GemmIsa.Avx2
        : GemmIsa.Scalar;

    /// <summary>Whether <paramref name="isa"/> can run on this machine.</summary>
    public static bool IsSupported(GemmIsa isa) => isa switch
    {
        GemmIsa.Scalar => true,
        GemmIsa.Avx2 => Fma.IsSupported && Avx2.IsSupported,
        GemmIsa.Avx512 => Avx512F.IsSupported,
        _ => false,
    };
}
