namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// Register and cache blocking of the packed SGEMM for one instruction set, with its micro-kernel. MC is a multiple of
/// MR and NC of NR. The per-element k-summation order depends only on KC, never on how C is split across threads.
/// </summary>
internal readonly unsafe struct GemmBlocking
{
    /// <summary>Rows of C per micro-tile.</summary>
    public readonly int Mr;

    /// <summary>Columns of C per micro-tile.</summary>
    public readonly int Nr;

    /// <summary>Rows of A per packed block (fits L2 together with a B micro-panel in L1).</summary>
    public readonly int Mc;

    /// <summary>Depth of one packed panel (k-block).</summary>
    public readonly int Kc;

    /// <summary>Columns of B per packed panel (L3-resident).</summary>
    public readonly int Nc;

    /// <summary>The micro-kernel: (kc, packedA, packedB, c, ldc, alpha, beta, validRows, validCols).</summary>
    public readonly delegate*<int, float*, float*, float*, int, float, float, int, int, void> Kernel;

    /// <summary>
    /// The same micro-kernel with each operand's k-step distance as an argument: (kc, a, sa, b, sb, c, ldc, alpha, beta,
    /// validRows, validCols); null where the instruction set has none (then every operand is packed).
    /// </summary>
    public readonly delegate*<int, float*, int, float*, int, float*, int, float, float, int, int, void> StridedKernel;

    private GemmBlocking(int mr, int nr, int mc, int kc, int nc, delegate*<int, float*, float*, float*, int, float, float, int, int, void> kernel,
        delegate*<int, float*, int, float*, int, float*, int, float, float, int, int, void> strided = null)
    {
        Mr = mr; Nr = nr; Mc = mc; Kc = kc; Nc = nc; Kernel = kernel; StridedKernel = strided;
    }

    /// <summary>
    /// The blocking used for <paramref name="isa"/> on a problem with <paramref name="n"/> columns (narrow C gets a
    /// narrower, taller micro-tile). Alternatives for one ISA share KC, so they sum every element in the same order.
    /// </summary>
    public static GemmBlocking For(GemmIsa isa, int n) => isa switch
    {
        GemmIsa.Avx512 when n <= 16 => new GemmBlocking(24, 16, 240, 512, 1024, &GemmMicroKernels.Avx512_24x16, &GemmMicroKernels.Avx512_24x16_Strided),
        GemmIsa.Avx512 => new GemmBlocking(12, 32, 240, 512, 1024, &GemmMicroKernels.Avx512_12x32, &GemmMicroKernels.Avx512_12x32_Strided),
        GemmIsa.Avx2 => new GemmBlocking(6, 16, 144, 256, 2048, &GemmMicroKernels.Avx2_6x16),
        _ => new GemmBlocking(GemmMicroKernels.ScalarMr, GemmMicroKernels.ScalarNr, 128, 256, 1024, &GemmMicroKernels.Scalar_4x4),
    };
}
