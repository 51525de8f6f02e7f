namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// The one launch path of the CUDA backend: every kernel of <c>cuda/*.cu</c> the engine runs is launched through
/// <see cref="Launch"/> (directly, through the grid-stride and warp-per-row shapes <see cref="Launch1D"/> and
/// <see cref="LaunchWarpRows"/>, or through a typed launcher below that validates sizes on the host and packs the
/// arguments in the kernel's exact order). All pointers are device pointers (0 = null where a kernel allows it);
/// every launch is asynchronous on <c>stream</c>. Zero-sized work launches nothing.
/// </summary>
internal sealed partial class CudaOps(ICudaDriver driver)
{
    private const int Threads = 256;
    private const int MaxGrid = 4096;

    /// <summary>Blocks (and so partial pairs) <see cref="BceForward"/> uses at most: size its partials buffer 2× this.</summary>
    public const int BceMaxBlocks = 256;

    public ICudaDriver Driver { get; } = driver;

    private CudaKernel K(string file, string name) => Driver.GetKernel(file, name);

    /// <summary>Fills a kernel's arguments in its parameter order.</summary>
    public delegate void ArgsBuilder(ref CudaKernelArgs a);

    /// <summary>Launches kernel <paramref name="name"/> of <paramref name="file"/>: the one call that reaches the driver.</summary>
    public void Launch(string file, string name, Dim3 grid, Dim3 block, uint sharedBytes, nint stream, ref CudaKernelArgs args) =>
        Driver.Launch(K(file, name), grid, block, sharedBytes, stream, ref args);

    /// <summary>Launches a 1-D grid-stride kernel over <paramref name="work"/> items (256 threads; nothing when empty).</summary>
    public void Launch1D(string file, string name, long work, nint stream, ArgsBuilder build)
    {
        if (work <= 0) return;
        var a = new CudaKernelArgs();
        build(ref a);
        Launch(file, name, Grid(work), Threads, 0, stream, ref a);
    }

    /// <summary>Launches a one-warp-per-row kernel over <paramref name="rows"/> rows (128 threads = 4 rows per block).</summary>
    public void LaunchWarpRows(string file, string name, int rows, nint stream, ArgsBuilder build)
    {
        if (rows <= 0) return;
        var a = new CudaKernelArgs();
        build(ref a);
        Launch(file, name, (uint)Math.Min((rows + 3) / 4, MaxGrid), 128, 0, stream, ref a);
    }

    private static uint Grid(long work, int threads = Threads) =>
        (uint)Math.Clamp((work + threads - 1) / threads, 1, MaxGrid);

    private static uint RowThreads(int width) => (uint)Math.Clamp((width + 31) / 32 * 32, 32, 256);

    private static void NonNegative(long value, string name)
    {
        if (value < 0)
            throw new ArgumentOutOfRangeException(name, value, "must not be negative");
    }

    // ---- elementwise.cu ----------------------------------------------------------------------------

    /// <summary>y = silu(x) over <paramref name="n"/> floats (y may equal x).</summary>
    public void SiluForward(ulong x, ulong y, long n, nint stream)
    {
        NonNegative(n, nameof(n));
        if (n == 0)
            return;
        var a = new CudaKernelArgs();
        a.Ptr(x); a.Ptr(y); a.I64(n);
        Launch("elementwise.cu", "mtfm_silu_fwd", Grid(n), Threads, 0, stream, ref a);
    }

    /// <summary>dx = dy · silu'(x) (dx may equal dy).</summary>
    public void SiluBackward(ulong x, ulong dy, ulong dx, long n, nint stream)
    {
        NonNegative(n, nameof(n));
        if (n == 0)
            return;
        var a = new CudaKernelArgs();
        a.Ptr(x); a.Ptr(dy); a.Ptr(dx); a.I64(n);
        Launch("elementwise.cu", "mtfm_silu_bwd", Grid(n), Threads, 0, stream, ref a);
    }

    /// <summary>y[r, c] = x[r, c] + bias[c] over a row-major [rows, cols] matrix (y may equal x).</summary>
    public void BiasAdd(ulong x, ulong bias, ulong y, int rows, int cols, nint stream)
    {
        NonNegative(rows, nameof(rows));
        NonNegative(cols, nameof(cols));
        if ((long)rows * cols == 0)
            return;
        var a = new CudaKernelArgs();
        a.Ptr(x); a.Ptr(bias); a.Ptr(y); a.I32(rows); a.I32(cols);
        Launch("elementwise.cu", "mtfm_bias_add", Grid((long)rows * cols), Threads, 0, stream, ref a);
    }

    /// <summary>dbias[c] (+)= Σ_r dy[r, c], deterministic.</summary>
    public void BiasGrad(ulong dy, ulong dbias, int rows, int cols, bool accumulate, nint stream)
    {
        NonNegative(rows, nameof(rows));
        NonNegative(cols, nameof(cols));
        if (cols == 0)
            return;
        var a = new CudaKernelArgs();
        a.Ptr(dy); a.Ptr(dbias); a.I32(rows); a.I32(cols); a.I32(accumulate ? 1 : 0);
        Launch("elementwise.cu", "mtfm_bias_grad", (uint)((cols + 127) / 128), 128, 0, stream, ref a);
    }

    // ---- backend_rows.cu ---------------------------------------------------------------------------

    /// <summary>
    /// dst[i, :] = src[idx[i], :] for i &lt; <paramref name="m"/>, rows of <paramref name="cols"/> floats; Int32 or Int64
    /// indices (<paramref name="is64"/>), already validated on the host (<c>CudaBackend.GatherRows</c> checks them; this
    /// launcher is its launch, also called directly by the benchmarks).
    /// </summary>
    public void GatherRows(ulong src, ulong idx, bool is64, ulong dst, int m, int cols, nint stream)
    {
        NonNegative(m, nameof(m));
        NonNegative(cols, nameof(cols));
        long work = (long)m * cols;
        if (work == 0)
            return;
        var a = new CudaKernelArgs();
        a.Ptr(src); a.Ptr(idx); a.I32(is64 ? 1 : 0); a.Ptr(dst); a.I32(m); a.I32(cols);
        Launch("rows.cu", "mtfm_gather_rows", Grid(work), Threads, 0, stream, ref a);
    }

    // ---- group_layernorm.cu ------------------------------------------------------------------------

    /// <summary>
    /// y = LN(x) · gamma[group] + beta[group] per token; gamma = 0 gives plain LayerNorm (group, beta ignored).
    /// Saves mean and rstd [n] for the backward pass.
    /// </summary>
    public void GroupLayerNormForward(ulong x, ulong group, ulong gamma, ulong beta, ulong y, ulong mean, ulong rstd,
        int n, int d, int numGroups, float eps, nint stream)
    {
        NonNegative(n, nameof(n));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(d);
        if (gamma != 0)
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numGroups);
        if (n == 0)
            return;
        var a = new CudaKernelArgs();
        a.Ptr(x); a.Ptr(group); a.Ptr(gamma); a.Ptr(beta); a.Ptr(y); a.Ptr(mean); a.Ptr(rstd);
        a.I32(n); a.I32(d); a.I32(numGroups); a.F32(eps);
        Launch("group_layernorm.cu", "mtfm_group_layernorm_fwd", (uint)Math.Min(n, 65535), RowThreads(d), 0,
            stream, ref a);
    }

    /// <summary>dx (+)= LayerNorm backward for the input.</summary>
    public void GroupLayerNormBackwardInput(ulong dy, ulong x, ulong group, ulong gamma, ulong mean, ulong rstd,
        ulong dx, int n, int d, int numGroups, bool accumulate, nint stream)
    {
        NonNegative(n, nameof(n));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(d);
        if (n == 0)
            return;
        var a = new CudaKernelArgs();
        a.Ptr(dy); a.Ptr(x); a.Ptr(group); a.Ptr(gamma); a.Ptr(mean); a.Ptr(rstd); a.Ptr(dx);
        a.I32(n); a.I32(d); a.I32(numGroups); a.I32(accumulate ? 1 : 0);
        Launch("group_layernorm.cu", "mtfm_group_layernorm_bwd_x", (uint)Math.Min(n, 65535), RowThreads(d),
            0, stream, ref a);
    }

    /// <summary>
    /// dgamma/dbeta [numGroups, d] (+)= per-group sums over tokens; tokens pre-sorted by group (tokenOrder [n],
    /// groupOffsets [numGroups + 1]). Deterministic.
    /// </summary>
    public void GroupLayerNormBackwardParams(ulong dy, ulong x, ulong tokenOrder, ulong groupOffsets, ulong mean,
        ulong rstd, ulong dgamma, ulong dbeta, int numGroups, int d, bool accumulate, nint stream)
    {
        NonNegative(numGroups, nameof(numGroups));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(d);
        if (numGroups == 0)
            return;
        var a = new CudaKernelArgs();
        a.Ptr(dy); a.Ptr(x); a.Ptr(tokenOrder); a.Ptr(groupOffsets); a.Ptr(mean); a.Ptr(rstd); a.Ptr(dgamma);
        a.Ptr(dbeta); a.I32(numGroups); a.I32(d); a.I32(accumulate ? 1 : 0);
        Launch("group_layernorm.cu", "mtfm_group_layernorm_bwd_params",
            new Dim3((uint)((d + 63) / 64), (uint)Math.Min(numGroups, 65535)), 64, 0, stream, ref a);
    }

    // ---- loss.cu -----------------------------------------------------------------------------------

    /// <summary>
    /// Masked BCE on logits, accumulated on the device: stats[0..1] = (loss sum, count) of this batch, added to
    /// accum[0..1] when accum ≠ 0. partials must hold 2·<see cref="BceMaxBlocks"/> floats. mask = 0: all count.
    /// </summary>
    public void BceForward(ulong logits, ulong labels, ulong mask, int n, ulong partials, ulong stats, ulong accum,
        nint stream)
    {
        NonNegative(n, nameof(n));
        var blocks = (int)Math.Clamp((n + Threads - 1) / (long)Threads, 1, BceMaxBlocks);
        var a = new CudaKernelArgs();
        a.Ptr(logits); a.Ptr(labels); a.Ptr(mask); a.Ptr(partials); a.I32(n);
        Launch("loss.cu", "mtfm_bce_fwd", (uint)blocks, Threads, 0, stream, ref a);
        var f = new CudaKernelArgs();
        f.Ptr(partials); f.I32(blocks); f.Ptr(stats); f.Ptr(accum);
        Launch("loss.cu", "mtfm_bce_finalize", 1, Threads, 0, stream, ref f);
    }

    // ---- optimizer.cu ------------------------------------------------------------------------------

    /// <summary>
    /// One AdamW step over many tensors. tensorTable: device array of numTensors × (param, grad, m, v) pointers;
    /// offsets: device array of numTensors + 1 cumulative element counts (offsets[numTensors] = totalElements, also
    /// given here for the grid size). step ≥ 1 gives the bias corrections. gradScale: device scalar or 0.
    /// </summary>
    public void AdamWMulti(ulong tensorTable, ulong offsets, int numTensors, long totalElements, float lr, float beta1,
        float beta2, float eps, float weightDecay, long step, ulong gradScale, nint stream)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numTensors);
        NonNegative(totalElements, nameof(totalElements));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(step);
        if (totalElements == 0)
            return;
        var a = new CudaKernelArgs();
        a.Ptr(tensorTable); a.Ptr(offsets); a.I32(numTensors); a.F32(lr); a.F32(beta1); a.F32(beta2); a.F32(eps);
        a.F32(weightDecay); a.F32(BiasCorrection(beta1, step)); a.F32(BiasCorrection(beta2, step)); a.Ptr(gradScale);
        Launch("optimizer.cu", "mtfm_adamw_multi", Grid(totalElements), Threads, 0, stream, ref a);
    }

    // ---- hstu_attention.cu -------------------------------------------------------------------------

    /// <summary>Dynamic shared memory of the attention kernel for a tile size.</summary>
    public static int HstuAttentionSharedBytes(int tileSize, int dqk, int dv) =>
        4 * (2 * tileSize * dqk + 2 * tileSize * dv + 2 * tileSize * tileSize);

    /// <summary>The largest tile (32, 16, 8, … 1) whose shared memory fits the default 48 KiB per block.</summary>
    public static int HstuAttentionTileSize(int dqk, int dv)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dqk);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dv);
        for (var t = 32; t >= 1; t /= 2)
            if (HstuAttentionSharedBytes(t, dqk, dv) <= 48 * 1024)
                return t;
        throw new NotSupportedException($"head widths dqk={dqk}, dv={dv} need more than 48 KiB of shared memory per block");
    }

    /// <summary>
    /// Fused jagged HSTU attention forward (full layer when queryTokens = 0, target layer otherwise). q [numQueries,
    /// h, dqk]; k [tokens, g, dqk]; v [tokens, g, dv]; output [numQueries, h, dv]; rab [h, 2·numBuckets − 1] or 0;
    /// kinds [tokens] (0 H, 1 R, 2 T); times [tokens] (int64 seconds); tiles: the uploaded
    /// <see cref="HstuAttentionPlan.Tiles"/> of a plan built with <see cref="HstuAttentionTileSize"/>.
    /// </summary>
    public void HstuAttentionForward(ulong q, ulong k, ulong v, ulong rab, ulong kinds, ulong times, ulong queryTokens,
        ulong tiles, HstuAttentionPlan plan, ulong output, int numHeads, int numKvHeads, int dqk, int dv,
        int numBuckets, long timeUnitSeconds, float alpha, nint stream)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numKvHeads);
        if (numHeads % numKvHeads != 0)
            throw new ArgumentException($"numKvHeads {numKvHeads} must divide numHeads {numHeads}", nameof(numKvHeads));
        if (numBuckets < 2)
            throw new ArgumentOutOfRangeException(nameof(numBuckets), numBuckets, "must be at least 2");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(timeUnitSeconds);
        if (plan.TileSize != HstuAttentionTileSize(dqk, dv))
            throw new ArgumentException($"plan tile size {plan.TileSize} differs from {HstuAttentionTileSize(dqk, dv)} for dqk={dqk}, dv={dv}", nameof(plan));
        if (plan.NumTiles == 0)
            return;
        var t = plan.TileSize;
        var a = new CudaKernelArgs();
        a.Ptr(q); a.Ptr(k); a.Ptr(v); a.Ptr(rab); a.Ptr(kinds); a.Ptr(times); a.Ptr(queryTokens); a.Ptr(tiles);
        a.I32(plan.NumTiles); a.Ptr(output); a.I32(numHeads); a.I32(numKvHeads); a.I32(dqk); a.I32(dv);
        a.I32(numBuckets); a.I64(timeUnitSeconds); a.F32(alpha); a.I32(t); a.I32(t);
        Launch("hstu_attention.cu", "mtfm_hstu_attention_fwd",
            new Dim3((uint)Math.Min(plan.NumTiles, 1 << 20), (uint)numHeads), 128,
            (uint)HstuAttentionSharedBytes(t, dqk, dv), stream, ref a);
    }

    /// <summary>The most time buckets (<c>MtfmConfig.TimeBuckets</c>) the attention backward supports.</summary>
    public const int HstuAttentionMaxBuckets = 128;

    /// <summary>
    /// Dynamic shared memory of the backward dQ kernel for a tile size: Q, dQ, K, V, dO tiles, dS and visibility
    /// [t, t] floats, time buckets [t, t] ints and the tile's bucket sums (2·numBuckets − 1 floats).
    /// </summary>
    public static int HstuAttentionBackwardDqSharedBytes(int tileSize, int dqk, int dv, int numBuckets) =>
        4 * (3 * tileSize * dqk + 2 * tileSize * dv + 3 * tileSize * tileSize + 2 * numBuckets - 1);

    /// <summary>Dynamic shared memory of the backward dK/dV kernel for a tile size.</summary>
    public static int HstuAttentionBackwardDkvSharedBytes(int tileSize, int dqk, int dv) =>
        4 * (3 * tileSize * dqk + 3 * tileSize * dv + 3 * tileSize * tileSize);

    /// <summary>
    /// Dynamic shared memory the backward needs per block for a tile size (the larger of the dQ kernel at
    /// <see cref="HstuAttentionMaxBuckets"/> buckets and the dK/dV kernel), so the tile size does not depend on the
    /// bucket count.
    /// </summary>
    public static int HstuAttentionBackwardSharedBytes(int tileSize, int dqk, int dv) =>
        Math.Max(HstuAttentionBackwardDqSharedBytes(tileSize, dqk, dv, HstuAttentionMaxBuckets),
            HstuAttentionBackwardDkvSharedBytes(tileSize, dqk, dv));

    /// <summary>The largest backward tile (32, 16, … 1) whose shared memory fits 48 KiB per block.</summary>
    public static int HstuAttentionBackwardTileSize(int dqk, int dv)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dqk);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dv);
        for (var t = 32; t >= 1; t /= 2)
            if (HstuAttentionBackwardSharedBytes(t, dqk, dv) <= 48 * 1024)
                return t;
        throw new NotSupportedException($"head widths dqk={dqk}, dv={dv} need more than 48 KiB of shared memory per block");
    }

    /// <summary>
    /// Backward of <see cref="HstuAttentionForward"/>: writes dq [numQueries, h, dqk], dk [tokens, g, dqk],
    /// dv [tokens, g, dv] and, when drab ≠ 0, drab [h, 2·numBuckets − 1] (+)= its gradient. Scratch (device):
    /// counts [numQueries] floats and, for drab, rabPartials [plan.NumTiles · h · (2·numBuckets − 1)] floats.
    /// tiles/keyTiles: the uploaded <see cref="HstuAttentionPlan.Tiles"/>/<see cref="HstuAttentionPlan.KeyTiles"/>
    /// of a plan built with <see cref="HstuAttentionBackwardTileSize"/>. Deterministic.
    /// </summary>
    public void HstuAttentionBackward(ulong q, ulong k, ulong v, ulong rab, ulong kinds, ulong times,
        ulong queryTokens, ulong tiles, ulong keyTiles, HstuAttentionPlan plan, ulong dout, ulong dq, ulong dk,
        ulong dv, ulong drab, bool accumulateRab, ulong counts, ulong rabPartials, int numHeads, int numKvHeads,
        int dqk, int dvWidth, int numBuckets, long timeUnitSeconds, float alpha, nint stream)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numKvHeads);
        if (numHeads % numKvHeads != 0)
            throw new ArgumentException($"numKvHeads {numKvHeads} must divide numHeads {numHeads}", nameof(numKvHeads));
        if (numBuckets is < 2 or > HstuAttentionMaxBuckets)
            throw new ArgumentOutOfRangeException(nameof(numBuckets), numBuckets, $"must be in [2, {HstuAttentionMaxBuckets}]");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(timeUnitSeconds);
        var t = HstuAttentionBackwardTileSize(dqk, dvWidth);
        if (plan.TileSize != t)
            throw new ArgumentException($"plan tile size {plan.TileSize} differs from {t} for dqk={dqk}, dv={dvWidth}", nameof(plan));
        if (drab != 0 && rabPartials == 0)
            throw new ArgumentException("rabPartials scratch is required when drab is requested", nameof(rabPartials));
        var nb2 = 2 * numBuckets - 1;
        if (plan.NumTiles > 0)
        {
            var c = new CudaKernelArgs();
            c.Ptr(kinds); c.Ptr(times); c.Ptr(queryTokens); c.Ptr(tiles); c.I32(plan.NumTiles); c.Ptr(counts);
            Launch("hstu_attention_bwd.cu", "mtfm_hstu_attention_counts", (uint)Math.Min(plan.NumTiles, 1 << 20),
                32, 0, stream, ref c);
            var a = new CudaKernelArgs();
            a.Ptr(q); a.Ptr(k); a.Ptr(v); a.Ptr(rab); a.Ptr(kinds); a.Ptr(times); a.Ptr(queryTokens); a.Ptr(tiles);
            a.I32(plan.NumTiles); a.Ptr(counts); a.Ptr(dout); a.Ptr(dq); a.Ptr(drab != 0 ? rabPartials : 0);
            a.I32(numHeads); a.I32(numKvHeads); a.I32(dqk); a.I32(dvWidth); a.I32(numBuckets); a.I64(timeUnitSeconds);
            a.F32(alpha); a.I32(t); a.I32(t);
            Launch("hstu_attention_bwd.cu", "mtfm_hstu_attention_bwd_dq",
                new Dim3((uint)Math.Min(plan.NumTiles, 1 << 20), (uint)numHeads), 128,
                (uint)HstuAttentionBackwardDqSharedBytes(t, dqk, dvWidth, numBuckets), stream, ref a);
            if (drab != 0)
            {
                var r = new CudaKernelArgs();
                r.Ptr(rabPartials); r.I32(plan.NumTiles); r.I32(numHeads); r.I32(nb2); r.Ptr(drab); r.I32(accumulateRab ? 1 : 0);
                Launch("hstu_attention_bwd.cu", "mtfm_hstu_attention_rab_reduce",
                    (uint)((numHeads * nb2 + 127) / 128), 128, 0, stream, ref r);
            }
        }
        else if (drab != 0 && !accumulateRab)
        {
            Driver.MemsetD32Async(drab, 0, (long)numHeads * nb2, stream);
        }
        if (plan.NumKeyTiles > 0)
        {
            var a = new CudaKernelArgs();
            a.Ptr(q); a.Ptr(k); a.Ptr(v); a.Ptr(rab); a.Ptr(kinds); a.Ptr(times); a.Ptr(queryTokens); a.Ptr(keyTiles);
            a.I32(plan.NumKeyTiles); a.Ptr(counts); a.Ptr(dout); a.Ptr(dk); a.Ptr(dv);
            a.I32(numHeads); a.I32(numKvHeads); a.I32(dqk); a.I32(dvWidth); a.I32(numBuckets); a.I64(timeUnitSeconds);
            a.F32(alpha); a.I32(t); a.I32(t);
            Launch("hstu_attention_bwd.cu", "mtfm_hstu_attention_bwd_dkv",
                new Dim3((uint)Math.Min(plan.NumKeyTiles, 1 << 20), (uint)numKvHeads), 128,
                (uint)HstuAttentionBackwardDkvSharedBytes(t, dqk, dvWidth), stream, ref a);
        }
    }

    /// <summary>1 − beta^step in single precision (what the kernels expect).</summary>
    public static float BiasCorrection(float beta, long step) => (float)(1.0 - Math.Pow(beta, step));
}
