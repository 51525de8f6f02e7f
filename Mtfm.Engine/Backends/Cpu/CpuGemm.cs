using System.Numerics.Tensors;
namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// Single-precision GEMM on the CPU: C = alpha·op(A)·op(B) + beta·C, row-major. Large problems run a packed,
/// register-blocked algorithm (GotoBLAS/BLIS style: B packed into KC × NC panels, A into MC × KC blocks, an MR × NR
/// micro-kernel of FMAs holding its block of C in registers); small or thin ones run a direct path (row axpy, or one dot
/// product per element when C has few columns). The path depends only on (m, n, k), and each element of C is summed in the
/// same k order whatever the thread count, so on one machine results are bit-for-bit identical for 1 or N threads.
/// alpha = 0 or k = 0 gives C = beta·C without reading A or B; beta = 0 never reads C (NaN there does not propagate).
/// Calls with a pool must not be made from inside a body that pool is running.
/// </summary>
internal static unsafe class CpuGemm
{
    /// <summary>Below this many multiply-adds (m·n·k) a problem stays on one thread.</summary>
    private const long ParallelMinWork = 1L << 18;

    /// <summary>
    /// The path a validated problem takes on <paramref name="threads"/> threads: what <see cref="Run"/> dispatches on
    /// (and what tests check their sizes against). A pure function of the problem's shape.
    /// </summary>
    internal static GemmPath PathFor(int threads, GemmIsa isa, bool transB, int m, int n, int k, float alpha)
    {
        if (m == 0 || n == 0) return GemmPath.None;
        if (k == 0 || alpha == 0f) return GemmPath.ScaleOnly;
        bool parallel = threads > 1 && (long)m * n * k >= 2 * ParallelMinWork;
        if (UseDirect(m, n, k))
        {
            bool dot = n <= 8 || (m <= 4 && transB);
            bool rows = m >= 4 * threads || m >= n;
            return (dot ? GemmPath.DirectDot : GemmPath.DirectAxpy) | (!parallel ? 0 : rows ? GemmPath.Rows : GemmPath.Columns);
        }
        if (!parallel) return GemmPath.Packed;
        var bl = GemmBlocking.For(isa, n);
        return m >= n || n < 2 * bl.Nr ? GemmPath.PackedRows : GemmPath.PackedColumns;
    }

    /// <summary>
    /// Row-major SGEMM, parallel over <paramref name="pool"/> when given. op(A) is [m,k], op(B) is [k,n], C is [m,n]. With <paramref name="transA"/>, A is stored [k,m]
    /// (lda ≥ m); otherwise [m,k] (lda ≥ k). Likewise B: [n,k] when transposed, else [k,n]. beta = 0 ignores C's contents.
    /// </summary>
    public static void Sgemm(CpuWorkerPool? pool, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
        => Sgemm(pool, GemmIsaSupport.Best, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    /// <summary>Single-threaded row-major SGEMM; see the pooled overload for the layout.</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
        => Sgemm(null, GemmIsaSupport.Best, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    /// <summary>SGEMM with an explicit instruction set (tests use it to cover every kernel on one machine).</summary>
    internal static void Sgemm(CpuWorkerPool? pool, GemmIsa isa, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        Validate(isa, transA, transB, m, n, k, a, lda, b, ldb, c, ldc);
        Run(pool, isa, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }

    /// <summary>
    /// Strided batched SGEMM: for each i in [0, batch), C_i = alpha·op(A_i)·op(B_i) + beta·C_i with A_i = a + i·strideA,
    /// B_i = b + i·strideB, C_i = c + i·strideC (layouts as in <see cref="Sgemm(CpuWorkerPool?, bool, bool, int, int, int, float, float*, int, float*, int, float, float*, int)"/>).
    /// strideA/strideB may be 0 (broadcast operand); the C matrices must not overlap. Results equal per-item Sgemm calls.
    /// </summary>
    public static void SgemmStridedBatched(CpuWorkerPool? pool, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, long strideA, float* b, int ldb, long strideB, float beta, float* c, int ldc, long strideC, int batch)
        => SgemmStridedBatched(pool, GemmIsaSupport.Best, transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB,
            beta, c, ldc, strideC, batch);

    /// <summary>Strided batched SGEMM with an explicit instruction set.</summary>
    internal static void SgemmStridedBatched(CpuWorkerPool? pool, GemmIsa isa, bool transA, bool transB, int m, int n, int k,
        float alpha, float* a, int lda, long strideA, float* b, int ldb, long strideB, float beta, float* c, int ldc,
        long strideC, int batch)
    {
        if (batch < 0) throw new ArgumentOutOfRangeException(nameof(batch), batch, "batch must be ≥ 0.");
        Validate(isa, transA, transB, m, n, k, a, lda, b, ldb, c, ldc, checkPointers: batch > 0);
        if (strideA < 0) throw new ArgumentOutOfRangeException(nameof(strideA), strideA, "strideA must be ≥ 0.");
        if (strideB < 0) throw new ArgumentOutOfRangeException(nameof(strideB), strideB, "strideB must be ≥ 0.");
        if (batch > 1 && m > 0 && n > 0 && strideC < (long)(m - 1) * ldc + n)
            throw new ArgumentOutOfRangeException(nameof(strideC), strideC,
                $"strideC must be ≥ (m-1)·ldc + n = {(long)(m - 1) * ldc + n} so that the {batch} C matrices do not overlap.");
        if (batch == 0 || m == 0 || n == 0) return;

        int threads = pool?.ThreadCount ?? 1;
        long work = (long)m * n * k;
        if (threads > 1 && batch >= threads && work * batch >= ParallelMinWork)
        {
            var body = new BatchBody
            {
                Isa = isa, TransA = transA, TransB = transB, M = m, N = n, K = k, Alpha = alpha, A = a, Lda = lda,
                StrideA = strideA, B = b, Ldb = ldb, StrideB = strideB, Beta = beta, C = c, Ldc = ldc, StrideC = strideC,
            };
            int minChunk = (int)Math.Clamp(ParallelMinWork / Math.Max(1, work), 1, batch);
            pool!.For(batch, minChunk, ref body);
            return;
        }
        for (int i = 0; i < batch; i++)
            Run(pool, isa, transA, transB, m, n, k, alpha, a + i * strideA, lda, b + i * strideB, ldb, beta, c + i * strideC, ldc);
    }

    private static void Validate(GemmIsa isa, bool transA, bool transB, int m, int n, int k, float* a, int lda, float* b, int ldb, float* c, int ldc,
        bool checkPointers = true)
    {
        if (!GemmIsaSupport.IsSupported(isa)) throw new ArgumentOutOfRangeException(nameof(isa), isa, "isa is not supported on this CPU.");
        if (m < 0) throw new ArgumentOutOfRangeException(nameof(m), m, "m must be ≥ 0.");
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), n, "n must be ≥ 0.");
        if (k < 0) throw new ArgumentOutOfRangeException(nameof(k), k, "k must be ≥ 0.");
        int minLda = transA ? m : k, minLdb = transB ? k : n;
        if (lda < minLda) throw new ArgumentOutOfRangeException(nameof(lda), lda, $"lda must be ≥ {(transA ? "m" : "k")} = {minLda} (transA = {transA}).");
        if (ldb < minLdb) throw new ArgumentOutOfRangeException(nameof(ldb), ldb, $"ldb must be ≥ {(transB ? "k" : "n")} = {minLdb} (transB = {transB}).");
        if (ldc < n) throw new ArgumentOutOfRangeException(nameof(ldc), ldc, $"ldc must be ≥ n = {n}.");
        if (checkPointers && m > 0 && n > 0)
        {
            if (c == null) throw new ArgumentNullException(nameof(c), "c is null but C has m·n > 0 elements.");
            if (k > 0 && a == null) throw new ArgumentNullException(nameof(a), "a is null but op(A) has m·k > 0 elements.");
            if (k > 0 && b == null) throw new ArgumentNullException(nameof(b), "b is null but op(B) has k·n > 0 elements.");
        }
    }

    /// <summary>Dispatches one validated problem by its <see cref="PathFor"/>: scale-only, direct, or packed; split across the pool when large.</summary>
    private static void Run(CpuWorkerPool? pool, GemmIsa isa, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        var path = PathFor(pool?.ThreadCount ?? 1, isa, transB, m, n, k, alpha);
        if (path == GemmPath.None) return;
        if (path == GemmPath.ScaleOnly)
        {
            ScaleC(m, n, beta, c, ldc);
            return;
        }
        if ((path & (GemmPath.DirectDot | GemmPath.DirectAxpy)) != 0)
        {
            RunDirect(pool, isa, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, path);
            return;
        }
        var bl = GemmBlocking.For(isa, n);
        if (KSplit(in bl, transA, transB, m, n, k))
        {
            KSplitTN(pool, in bl, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        if (path == GemmPath.Packed)
        {
            Packed(in bl, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        // Split C into contiguous strips of whole micro-tiles along its longer side; each strip is an independent
        // sub-GEMM over the full k, blocked by the same KC, so every element sums in the same order as single-threaded.
        bool splitRows = path == GemmPath.PackedRows;
        var split = new SplitBody
        {
            Blocking = bl, SplitRows = splitRows, TransA = transA, TransB = transB, M = m, N = n, K = k, Alpha = alpha,
            A = a, Lda = lda, B = b, Ldb = ldb, Beta = beta, C = c, Ldc = ldc,
        };
        int unit = splitRows ? bl.Mr : bl.Nr;
        int units = ((splitRows ? m : n) + unit - 1) / unit;
        long workPerUnit = (long)unit * (splitRows ? n : m) * k;
        int minUnits = (int)Math.Clamp(ParallelMinWork / Math.Max(1, workPerUnit), 1, units);
        pool!.For(units, minUnits, ref split);
    }

    /// <summary>
    /// The unpacked path: the dot form when C has few columns (or few rows and Bᵀ is given), else the axpy form; split over
    /// rows of C, or over 16-column strips when C has too few rows to share.
    /// </summary>
    private static void RunDirect(CpuWorkerPool? pool, GemmIsa isa, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, GemmPath path)
    {
        bool parallel = (path & (GemmPath.Rows | GemmPath.Columns)) != 0;
        var scratch = GemmScratch.Current;
        var body = new DirectBody { Isa = isa, TransA = transA, M = m, N = n, K = k, Alpha = alpha, Beta = beta, C = c, Ldc = ldc };
        body.DotForm = (path & GemmPath.DirectDot) != 0;
        if (body.DotForm)
        {
            body.A = a; body.Lda = lda; body.B = b; body.Ldb = ldb;
            if (transA)
            {
                body.A = scratch.PackA((long)m * k);
                GemmDirect.Transpose(a, lda, k, m, body.A);
                body.Lda = k;
            }
            if (!transB)
            {
                body.B = scratch.PackB((long)k * n);
                GemmDirect.Transpose(b, ldb, k, n, body.B);
                body.Ldb = k;
            }
        }
        else
        {
            body.A = a; body.Lda = lda; body.B = b; body.Ldb = ldb;
            if (transB)
            {
                body.B = scratch.PackB((long)k * n);
                GemmDirect.Transpose(b, ldb, n, k, body.B);
                body.Ldb = n;
            }
        }
        int threads = pool?.ThreadCount ?? 1;
        body.SplitRows = m >= 4 * threads || m >= n; // the same rule as PathFor (also for the one-thread run's units)
        int units = body.SplitRows ? m : (n + DirectStrip - 1) / DirectStrip;
        if (!parallel)
        {
            body.Run(0, units);
            return;
        }
        long workPerUnit = body.SplitRows ? (long)n * k : (long)DirectStrip * m * k;
        int minUnits = (int)Math.Clamp(ParallelMinWork / Math.Max(1, workPerUnit), 1, units);
        pool!.For(units, minUnits, ref body);
    }

    /// <summary>Columns per parallel strip of the direct path when it splits over columns.</summary>
    private const int DirectStrip = 16;

    /// <summary>Thin or tiny problems skip packing: packing would cost as much as the arithmetic or pad it heavily.</summary>
    internal static bool UseDirect(int m, int n, int k) => m <= 4 || n <= 8 || (long)m * n * k <= 16L * 16 * 64;

    private static void ScaleC(int m, int n, float beta, float* c, int ldc)
    {
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + (long)i * ldc, n);
            if (beta == 0f) row.Clear();
            else if (beta != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
        }
    }

    /// <summary>
    /// Whether op(A)ᵀ·op(B) with these operands is read in place (Aᵀ and untransposed B already hold each k step as a
    /// contiguous run): only the partial edge panels are packed. Worth it when C is small against k (weight
    /// gradients: packing would move as many bytes as the micro-kernel does FMAs).
    /// </summary>
    /// <summary>Shortest k that <see cref="KSplitTN"/> takes (two halves of at least 512).</summary>
    internal const int KSplitMinK = 1024;

    /// <summary>
    /// Whether an Aᵀ·B is summed as two k halves (<see cref="KSplitTN"/>): the in-place shapes (small C, long k: the
    /// weight gradients) with k ≥ <see cref="KSplitMinK"/>. A property of the shape only, never of the thread count, so
    /// the bits are the same on one thread and on many.
    /// </summary>
    internal static bool KSplit(in GemmBlocking bl, bool transA, bool transB, int m, int n, int k)
        => k >= KSplitMinK && InPlace(in bl, transA, transB, m, n, k);

    /// <summary>
    /// C = alpha·Aᵀ·B + beta·C as two halves over k: the first k0 = ⌊k/2⌋ rounded down to 16 rows into C (with beta),
    /// the rest into a partial, then C += partial row by row. Each half is <see cref="InPlaceTN"/>; on a pool the two
    /// run on two threads, so each reads half of A and half of B (the row or column split reads one operand twice: this
    /// shape is bound by that traffic, not by the FMAs). The same operations in the same order whatever the pool.
    /// </summary>
    private static void KSplitTN(CpuWorkerPool? pool, in GemmBlocking bl, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        int k0 = (k / 2) & ~15;
        float* part = GemmScratch.Current.Partial((long)m * n);
        var body = new KSplitBody
        {
            Blocking = bl, M = m, N = n, K = k, K0 = k0, Alpha = alpha, Beta = beta,
            A = a, Lda = lda, B = b, Ldb = ldb, C = c, Ldc = ldc, Part = part,
        };
        if (pool is null || pool.ThreadCount < 2) body.Run(0, 2);
        else pool.For(2, 1, ref body);
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + (long)i * ldc, n);
            TensorPrimitives.Add(row, new ReadOnlySpan<float>(part + (long)i * n, n), row);
        }
    }

    private struct KSplitBody : IRangeBody
    {
        public GemmBlocking Blocking;
        public int M, N, K, K0, Lda, Ldb, Ldc;
        public float Alpha, Beta;
        public float* A, B, C, Part;

        public readonly void Run(int start, int end)
        {
            for (int u = start; u < end; u++)
            {
                if (u == 0) InPlaceTN(in Blocking, M, N, K0, Alpha, A, Lda, B, Ldb, Beta, C, Ldc);
                else InPlaceTN(in Blocking, M, N, K - K0, Alpha, A + (long)K0 * Lda, Lda, B + (long)K0 * Ldb, Ldb, 0f, Part, N);
            }
        }
    }

    internal static bool InPlace(in GemmBlocking bl, bool transA, bool transB, int m, int n, int k)
        => bl.StridedKernel != null && transA && !transB && (long)m * n <= 256L * 256 && k >= 4 * Math.Max(m, n);

    /// <summary>The packed, cache-blocked algorithm on one thread (<paramref name="inPlace"/> false: tests pack every operand).</summary>
    internal static void Packed(in GemmBlocking bl, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, bool inPlace = true)
    {
        if (inPlace && InPlace(in bl, transA, transB, m, n, k))
        {
            InPlaceTN(in bl, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        int mr = bl.Mr, nr = bl.Nr;
        int mcMax = Math.Min(bl.Mc, GemmPacking.RoundUp(m, mr));
        int kcMax = Math.Min(bl.Kc, k);
        int ncMax = Math.Min(bl.Nc, GemmPacking.RoundUp(n, nr));
        var scratch = GemmScratch.Current;
        float* pa = scratch.PackA((long)mcMax * kcMax);
        float* pb = scratch.PackB((long)ncMax * kcMax);
        var kernel = bl.Kernel;
        for (int jc = 0; jc < n; jc += bl.Nc)
        {
            int nc = Math.Min(bl.Nc, n - jc);
            for (int pc = 0; pc < k; pc += bl.Kc)
            {
                int kc = Math.Min(bl.Kc, k - pc);
                float* bBlock = transB ? b + (long)jc * ldb + pc : b + (long)pc * ldb + jc;
                GemmPacking.PackB(transB, bBlock, ldb, kc, nc, nr, pb);
                float betaBlock = pc == 0 ? beta : 1f;
                for (int ic = 0; ic < m; ic += bl.Mc)
                {
                    int mc = Math.Min(bl.Mc, m - ic);
                    float* aBlock = transA ? a + (long)pc * lda + ic : a + (long)ic * lda + pc;
                    GemmPacking.PackA(transA, aBlock, lda, mc, kc, mr, pa);
                    for (int jr = 0; jr < nc; jr += nr)
                    {
                        int nrValid = Math.Min(nr, nc - jr);
                        float* pbPanel = pb + (long)jr * kc;
                        float* cCol = c + (long)ic * ldc + jc + jr;
                        for (int ir = 0; ir < mc; ir += mr)
                        {
                            kernel(kc, pa + (long)ir * kc, pbPanel, cCol + (long)ir * ldc, ldc, alpha, betaBlock,
                                Math.Min(mr, mc - ir), nrValid);
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// <see cref="Packed"/> for Aᵀ·B with both operands read in place: the same KC blocks, tiles and FMA order (so the same
    /// bits; with nothing of A packed, MC blocking has no use); only a partial last row panel of A or column panel of B is
    /// packed (zero-padded) so no tile reads past m or n.
    /// </summary>
    private static void InPlaceTN(in GemmBlocking bl, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        int mr = bl.Mr, nr = bl.Nr;
        int kcMax = Math.Min(bl.Kc, k);
        var scratch = GemmScratch.Current;
        float* pa = scratch.PackA((long)mr * kcMax);
        float* pb = scratch.PackB((long)nr * kcMax);
        var kernel = bl.StridedKernel;
        int mFull = m / mr * mr, nFull = n / nr * nr;
        for (int jc = 0; jc < n; jc += bl.Nc)
        {
            int nc = Math.Min(bl.Nc, n - jc);
            for (int pc = 0; pc < k; pc += bl.Kc)
            {
                int kc = Math.Min(bl.Kc, k - pc);
                float betaBlock = pc == 0 ? beta : 1f;
                if (nFull < jc + nc) GemmPacking.PackB(false, b + (long)pc * ldb + nFull, ldb, kc, n - nFull, nr, pb);
                if (mFull < m) GemmPacking.PackA(true, a + (long)pc * lda + mFull, lda, m - mFull, kc, mr, pa);
                for (int jr = 0; jr < nc; jr += nr)
                {
                    int j = jc + jr;
                    bool edgeB = j >= nFull;
                    float* bp = edgeB ? pb : b + (long)pc * ldb + j;
                    int sb = edgeB ? nr : ldb;
                    for (int i = 0; i < m; i += mr)
                    {
                        bool edgeA = i >= mFull;
                        float* ap = edgeA ? pa : a + (long)pc * lda + i;
                        kernel(kc, ap, edgeA ? mr : lda, bp, sb, c + (long)i * ldc + j, ldc, alpha, betaBlock,
                            Math.Min(mr, m - i), Math.Min(nr, nc - jr));
                    }
                }
            }
        }
    }

    /// <summary>Which algorithm and which parallel split one SGEMM call used.</summary>
    [Flags]
    internal enum GemmPath
    {
        /// <summary>Nothing ran (empty C).</summary>
        None = 0,
        /// <summary>Only C = beta·C (k = 0 or alpha = 0).</summary>
        ScaleOnly = 1,
        /// <summary>Direct axpy form.</summary>
        DirectAxpy = 2,
        /// <summary>Direct dot form.</summary>
        DirectDot = 4,
        /// <summary>Packed micro-kernel algorithm.</summary>
        Packed = 8,
        /// <summary>Split over rows of C across the pool.</summary>
        Rows = 16,
        /// <summary>Split over columns of C across the pool.</summary>
        Columns = 32,
        /// <summary>Packed, split over rows.</summary>
        PackedRows = Packed | Rows,
        /// <summary>Packed, split over columns.</summary>
        PackedColumns = Packed | Columns,
    }

    private struct SplitBody : IRangeBody
    {
        public GemmBlocking Blocking;
        public bool SplitRows, TransA, TransB;
        public int M, N, K, Lda, Ldb, Ldc;
        public float Alpha, Beta;
        public float* A, B, C;

        public readonly void Run(int start, int end)
        {
            if (SplitRows)
            {
                int i0 = start * Blocking.Mr, i1 = Math.Min(M, end * Blocking.Mr);
                if (i0 >= i1) return;
                float* a = TransA ? A + i0 : A + (long)i0 * Lda;
                Packed(in Blocking, TransA, TransB, i1 - i0, N, K, Alpha, a, Lda, B, Ldb, Beta, C + (long)i0 * Ldc, Ldc);
            }
            else
            {
                int j0 = start * Blocking.Nr, j1 = Math.Min(N, end * Blocking.Nr);
                if (j0 >= j1) return;
                float* b = TransB ? B + (long)j0 * Ldb : B + j0;
                Packed(in Blocking, TransA, TransB, M, j1 - j0, K, Alpha, A, Lda, b, Ldb, Beta, C + j0, Ldc);
            }
        }
    }

    private struct DirectBody : IRangeBody
    {
        public GemmIsa Isa;
        public bool TransA, DotForm, SplitRows;
        public int M, N, K, Lda, Ldb, Ldc;
        public float Alpha, Beta;
        public float* A, B, C;

        public readonly void Run(int start, int end)
        {
            int i0 = 0, i1 = M, j0 = 0, j1 = N;
            if (SplitRows) { i0 = start; i1 = end; }
            else { j0 = start * DirectStrip; j1 = Math.Min(N, end * DirectStrip); }
            if (DotForm) GemmDirect.DotRows(i0, i1, j0, j1, K, Alpha, A, Lda, B, Ldb, Beta, C, Ldc);
            else GemmDirect.AxpyRows(Isa, TransA, i0, i1, j0, j1, K, Alpha, A, Lda, B, Ldb, Beta, C, Ldc);
        }
    }

    private struct BatchBody : IRangeBody
    {
        public GemmIsa Isa;
        public bool TransA, TransB;
        public int M, N, K, Lda, Ldb, Ldc;
        public float Alpha, Beta;
        public float* A, B, C;
        public long StrideA, StrideB, StrideC;

        public readonly void Run(int start, int end)
        {
            for (int i = start; i < end; i++)
                CpuGemm.Run(null, Isa, TransA, TransB, M, N, K, Alpha, A + i * StrideA, Lda, B + i * StrideB, Ldb, Beta, C + i * StrideC, Ldc);
        }
    }
}
