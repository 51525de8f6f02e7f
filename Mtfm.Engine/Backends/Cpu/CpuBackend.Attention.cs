using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends.Cpu;

internal sealed unsafe partial class CpuBackend
{
    /// <inheritdoc />
    public void HstuAttention(AttentionLayout layout, bool targetQueries, int heads, int kvHeads,
        Tensor q, Tensor k, Tensor v, Tensor rab, Tensor o)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var (dqk, dv) = AttentionWidths(layout, targetQueries, heads, kvHeads, q, k, v, rab);
        CheckRows(o, q.RowCount, heads * dv, nameof(o));
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
        Tensor q, Tensor k, Tensor v, Tensor rab, Tensor dO, Tensor? dq, Tensor? dk, Tensor? dv, Tensor? drab)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var (dqkW, dvW) = AttentionWidths(layout, targetQueries, heads, kvHeads, q, k, v, rab);
        CheckRows(dO, q.RowCount, heads * dvW, nameof(dO));
        // The kernel overwrites its outputs; this seam accumulates, so compute into temporaries and add.
        using var tq = Allocate(DType.Float32, q.Shape);
        using var tk = Allocate(DType.Float32, k.Shape);
        using var tv = Allocate(DType.Float32, v.Shape);
        using var tr = Allocate(DType.Float32, rab.Shape);
        fixed (int* offsets = layout.Offsets)
        fixed (byte* kind = layout.Kind)
        fixed (long* time = layout.Time)
        fixed (int* targets = layout.TargetTokens)
        {
            var args = Args(layout, targetQueries, heads, kvHeads, dqkW, dvW, offsets, kind, time, targets);
            CpuHstuAttention.Backward(_pool, args, F(q, nameof(q)), heads * dqkW, F(k, nameof(k)), kvHeads * dqkW,
                F(v, nameof(v)), kvHeads * dvW, F(rab, nameof(rab)), F(dO, nameof(dO)), heads * dvW,
                F(tq, "dq"), heads * dqkW, F(tk, "dk"), kvHeads * dqkW, F(tv, "dv"), kvHeads * dvW, F(tr, "drab"));
        }
        if (dq is not null) Axpy(1f, tq, dq);
        if (dk is not null) Axpy(1f, tk, dk);
        if (dv is not null) Axpy(1f, tv, dv);
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

    private static (int Dqk, int Dv) AttentionWidths(AttentionLayout layout, bool targetQueries, int heads, int kvHeads,
        Tensor q, Tensor k, Tensor v, Tensor rab)
    {
        if (heads < 1) throw new ArgumentOutOfRangeException(nameof(heads), heads, "heads must be ≥ 1.");
        if (kvHeads < 1 || heads % kvHeads != 0) throw new ArgumentOutOfRangeException(nameof(kvHeads), kvHeads, $"kvHeads must divide heads = {heads}.");
        int rows = targetQueries ? layout.TargetTokens.Length : layout.TokenCount;
        int n = layout.TokenCount;
        if (q.Rank != 2 || q.RowCount != rows || q.LastDim % heads != 0)
            throw new ArgumentException($"q must be [{rows}, heads·dqk] with heads = {heads}, its shape is {q.ShapeString}.", nameof(q));
        int dqk = q.LastDim / heads;
        CheckRows(k, n, kvHeads * dqk, nameof(k));
        if (v.Rank != 2 || v.RowCount != n || v.LastDim % kvHeads != 0)
            throw new ArgumentException($"v must be [{n}, kvHeads·dv] with kvHeads = {kvHeads}, its shape is {v.ShapeString}.", nameof(v));
        if (rab.Length != (long)heads * layout.RabWidth)
            throw new ArgumentException($"rab must hold heads·(2·NB − 1) = {heads * layout.RabWidth} values, its shape is {rab.ShapeString}.", nameof(rab));
        return (dqk, v.LastDim / kvHeads);
    }

    private static void CheckRows(Tensor t, int rows, int cols, string name)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        if (t.Rank != 2 || t.RowCount != rows || t.LastDim != cols)
            throw new ArgumentException($"{name} must be [{rows}, {cols}], its shape is {t.ShapeString}.", name);
    }
}
