namespace Mtfm.Engine.Backends.Cuda;

internal sealed partial class CudaBackend
{
    /// <summary>
    /// Which kernel computes the attention forward: <see cref="CudaAttentionPrecision.Fp32"/> (default) or
    /// <see cref="CudaAttentionPrecision.Bf16"/> (tensor cores; head widths the bf16 kernel does not support, dqk above
    /// <see cref="CudaOps.HstuAttentionBf16MaxDqk"/>, run the fp32 kernel). The backward is fp32 either way.
    /// </summary>
    internal CudaAttentionPrecision AttentionPrecision { get; set; } = CudaAttentionPrecision.Fp32;

    /// <summary>The attention forward with the kernel <see cref="AttentionPrecision"/> selects.</summary>
    private void LaunchAttentionForward(CudaAttentionLayoutCache cache, AttentionLayout layout, bool targetQueries,
        int heads, int kvHeads, ulong q, ulong k, ulong v, ulong rab, ulong o, int dqk, int dv)
    {
        ulong targets = targetQueries ? cache.Targets : 0;
        float alpha = 1f / MathF.Sqrt(dqk);
        var (plan, tiles, _) = cache.Plan(targetQueries, AttentionForwardTileSize(dqk, dv, AttentionPrecision));
        if (UsesBf16Forward(AttentionPrecision, dqk, dv))
        {
            Ops.HstuAttentionForwardBf16(q, k, v, rab, cache.Kinds, cache.Times, targets, tiles, plan, o, heads, kvHeads,
                dqk, dv, layout.NumBuckets, layout.UnitSeconds, alpha, _stream);
        }
        else
        {
            Ops.HstuAttentionForward(q, k, v, rab, cache.Kinds, cache.Times, targets, tiles, plan, o, heads, kvHeads,
                dqk, dv, layout.NumBuckets, layout.UnitSeconds, alpha, _stream);
        }
    }
}
