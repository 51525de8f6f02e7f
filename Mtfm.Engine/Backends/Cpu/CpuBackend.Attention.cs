using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends.Cpu;

internal sealed unsafe partial class CpuBackend
{
    /// <inheritdoc />
    public void HstuAttention(AttentionLayout layout, bool targetQueries, int heads, int kvHeads,
        Tensor q, Tensor k, Tensor v, Tensor rab, Tensor o)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var (dqk, dv) = layout.CheckShapes(targetQueries, heads, kvHeads, q, k, v, rab);
        AttentionLayout.CheckRows(o, q.RowCount, heads * dv, nameof(o));
        fixed (int* offsets = layout.Offsets)
        fixed (byte* kind = layout.Kind)
        fixed (long* time = layout.Time)
        fixed (int* targets = layout.TargetTokens)
        {
            var args = Args(layout, targetQueries, heads, kvHeads, dqk, dv, offsets, kind, time, targets);
            CpuHstuAttention.Forward(_pool, args, F(q, nameof(q)), heads * dqk, F(k, nameof(k)), kvHeads * dqk,
                F(v, nameof(v)), kvHeads * dv, F(rab, nameof(rab)), F(o, nameof(o)), heads * dv);
        }
    }

    /// <inheritdoc />
    public void HstuAttentionBackward(AttentionLayout layout, bool targetQueries, int heads, int kvHeads,
        Tensor q, Tensor k, Tensor v, Tensor rab, Tensor dO, Tensor? dq, Tensor? dk, Tensor? dv, Tensor? drab, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var (dqkW, dvW) = layout.CheckShapes(targetQueries, heads, kvHeads, q, k, v, rab);
        AttentionLayout.CheckRows(dO, q.RowCount, heads * dvW, nameof(dO));
        // The kernel overwrites its outputs; this seam accumulates unless told to overwrite, so it computes into
        // temporaries and adds (and always for drab, and for an output nobody wants).
        if (overwrite)
        {
            if (dq is not null) CheckSameLength(q, dq, nameof(dq));
            if (dk is not null) CheckSameLength(k, dk, nameof(dk));
            if (dv is not null) CheckSameLength(v, dv, nameof(dv));
        }
        using var tq = overwrite && dq is not null ? null : Allocate(DType.Float32, q.Shape);
        using var tk = overwrite && dk is not null ? null : Allocate(DType.Float32, k.Shape);
        using var tv = overwrite && dv is not null ? null : Allocate(DType.Float32, v.Shape);
        using var tr = Allocate(DType.Float32, rab.Shape);
        fixed (int* offsets = layout.Offsets)
        fixed (byte* kind = layout.Kind)
        fixed (long* time = layout.Time)
        fixed (int* targets = layout.TargetTokens)
        {
            var args = Args(layout, targetQueries, heads, kvHeads, dqkW, dvW, offsets, kind, time, targets);
            CpuHstuAttention.Backward(_pool, args, F(q, nameof(q)), heads * dqkW, F(k, nameof(k)), kvHeads * dqkW,
                F(v, nameof(v)), kvHeads * dvW, F(rab, nameof(rab)), F(dO, nameof(dO)), heads * dvW,
                F(tq ?? dq!, "dq"), heads * dqkW, F(tk ?? dk!, "dk"), kvHeads * dqkW, F(tv ?? dv!, "dv"), kvHeads * dvW, F(tr, "drab"));
        }
        if (dq is not null && tq is not null) Axpy(1f, tq, dq);
        if (dk is not null && tk is not null) Axpy(1f, tk, dk);
        if (dv is not null && tv is not null) Axpy(1f, tv, dv);
        if (drab is not null) Axpy(1f, tr, drab);
    }

    private static HstuAttentionArgs Args(AttentionLayout layout, bool targetQueries, int heads, int kvHeads, int dqk, int dv,
        int* offsets, byte* kind, long* time, int* targets)
        => new(layout.Batch, offsets, kind, time, targetQueries ? targets : null,
            targetQueries ? layout.TargetTokens.Length : layout.TokenCount, heads, kvHeads, dqk, dv)
        {
            NumBuckets = layout.NumBuckets,
            UnitSeconds = layout.UnitSeconds,
        };
}
