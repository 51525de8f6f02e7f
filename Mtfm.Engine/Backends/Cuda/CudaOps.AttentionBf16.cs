namespace Mtfm.Engine.Backends.Cuda;

internal sealed partial class CudaOps
{
    // ---- hstu_attention_bf16.cu --------------------------------------------------------------------

    /// <summary>Query rows per tile of the bf16 attention forward (4 warps × 16 rows): the plan's tile size.</summary>
    public const int HstuAttentionBf16TileSize = 64;

    /// <summary>The widest query/key head the bf16 forward supports (Q fragments are held in registers).</summary>
    public const int HstuAttentionBf16MaxDqk = 256;

    private const int Bf16Threads = 128;

    /// <summary>Whether the bf16 tensor-core forward handles these head widths (dqk ≤ 256; any dv).</summary>
    public static bool HstuAttentionBf16Supports(int dqk, int dv) => dqk is >= 1 and <= HstuAttentionBf16MaxDqk && dv >= 1;

    /// <summary>Entry point and output-channel chunk per block: the small-head variant when both widths are ≤ 64.</summary>
    private static (string Kernel, int Chunk) Bf16Variant(int dqk, int dv) =>
        dqk <= 64 && dv <= 64 ? ("mtfm_hstu_attention_fwd_bf16_d64", 64) : ("mtfm_hstu_attention_fwd_bf16", 128);

    /// <summary>Dynamic shared memory of the bf16 forward for a key tile: K as bf16 [keyTile][round16(dqk) + 8] and
    /// V transposed as bf16 [round8(channel chunk)][keyTile + 8].</summary>
    public static int HstuAttentionBf16SharedBytes(int keyTile, int dqk, int dv)
    {
        var chunk = Bf16Variant(dqk, dv).Chunk;
        int dqkPad = (dqk + 15) & ~15, dvcPad = (Math.Min(dv, chunk) + 7) & ~7;
        return 4 * (keyTile * (dqkPad / 2 + 4) + dvcPad * (keyTile / 2 + 4));
    }

    /// <summary>Keys per tile of the bf16 forward: 64 when that fits the default 48 KiB of shared memory, else 32.</summary>
    public static int HstuAttentionBf16KeyTile(int dqk, int dv) =>
        HstuAttentionBf16SharedBytes(64, dqk, dv) <= 48 * 1024 ? 64 : 32;

    /// <summary>
    /// The fused jagged HSTU attention forward on the bf16 tensor cores (<c>mma.sync m16n8k16</c>, fp32 accumulation):
    /// the same arguments, layouts and function as <see cref="HstuAttentionForward"/> (fp32 in, fp32 out; Q, K, V and
    /// the attention weights rounded to bf16 for the two products; bias, SiLU, mask and n(q) in fp32). tiles: the uploaded
    /// <see cref="HstuAttentionPlan.Tiles"/> of a plan built with <see cref="HstuAttentionBf16TileSize"/>. Head widths
    /// with dqk above <see cref="HstuAttentionBf16MaxDqk"/> are rejected (use the fp32 kernel).
    /// </summary>
    public void HstuAttentionForwardBf16(ulong q, ulong k, ulong v, ulong rab, ulong kinds, ulong times, ulong queryTokens,
        ulong tiles, HstuAttentionPlan plan, ulong output, int numHeads, int numKvHeads, int dqk, int dv,
        int numBuckets, long timeUnitSeconds, float alpha, nint stream)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numKvHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dqk);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dv);
        if (numHeads % numKvHeads != 0)
            throw new ArgumentException($"numKvHeads {numKvHeads} must divide numHeads {numHeads}", nameof(numKvHeads));
        if (numBuckets < 2)
            throw new ArgumentOutOfRangeException(nameof(numBuckets), numBuckets, "must be at least 2");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(timeUnitSeconds);
        if (!HstuAttentionBf16Supports(dqk, dv))
            throw new NotSupportedException(
                $"the bf16 attention forward supports dqk ≤ {HstuAttentionBf16MaxDqk}; dqk = {dqk}: use the fp32 kernel (HstuAttentionForward)");
        if (plan.TileSize != HstuAttentionBf16TileSize)
            throw new ArgumentException($"plan tile size {plan.TileSize} differs from {HstuAttentionBf16TileSize} (the bf16 forward's query tile)", nameof(plan));
        if (plan.NumTiles == 0)
            return;
        var (kernel, chunk) = Bf16Variant(dqk, dv);
        var bk = HstuAttentionBf16KeyTile(dqk, dv);
        var a = new CudaKernelArgs();
        a.Ptr(q); a.Ptr(k); a.Ptr(v); a.Ptr(rab); a.Ptr(kinds); a.Ptr(times); a.Ptr(queryTokens); a.Ptr(tiles);
        a.I32(plan.NumTiles); a.Ptr(output); a.I32(numHeads); a.I32(numKvHeads); a.I32(dqk); a.I32(dv);
        a.I32(numBuckets); a.I64(timeUnitSeconds); a.F32(alpha); a.I32(HstuAttentionBf16TileSize); a.I32(bk);
        Launch("hstu_attention_bf16.cu", kernel,
            new Dim3((uint)Math.Min(plan.NumTiles, 1 << 20), (uint)numHeads, (uint)((dv + chunk - 1) / chunk)), Bf16Threads,
            (uint)HstuAttentionBf16SharedBytes(bk, dqk, dv), stream, ref a);
    }
}
