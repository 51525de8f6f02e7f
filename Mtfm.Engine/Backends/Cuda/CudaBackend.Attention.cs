using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends.Cuda;

internal sealed unsafe partial class CudaBackend
{
    /// <summary>Staged asynchronous upload of host data into raw device memory (for caches owned by this backend).</summary>
    internal void UploadRaw<T>(ReadOnlySpan<T> src, ulong dst, CudaUploadCategory category) where T : unmanaged
    {
        fixed (T* p = src) StageUpload(dst, p, (long)src.Length * sizeof(T), category);
    }

    /// <summary>
    /// Creates <paramref name="layout"/>'s device cache now (kinds, times, T list) unless it has one, and builds and
    /// uploads the given <paramref name="tilings"/> (query form, tile size; see <see cref="AttentionForwardTileSize"/>
    /// and <see cref="AttentionBackwardTileSize"/>); tilings not given are built lazily at the first attention call.
    /// Inside a copy-stream section this stages all of it with the batch's other inputs.
    /// </summary>
    internal void StageAttentionLayout(AttentionLayout layout, IEnumerable<(bool TargetQueries, int TileSize)>? tilings = null)
    {
        ArgumentNullException.ThrowIfNull(layout);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (layout.DeviceCache is { } other && !(other is CudaAttentionLayoutCache c && ReferenceEquals(c.Owner, this)))
            return; // cached for another backend: each call of this one uses a private copy, nothing to stage
        var cache = LayoutCache(layout, out _);
        if (tilings is not null)
            foreach (var (target, tile) in tilings) cache.Plan(target, tile);
    }

    /// <summary>
    /// The tile size whose tiling <see cref="HstuAttention"/> asks the layout cache for, for head widths dqk and dv and the
    /// forward kernel <paramref name="precision"/> selects (bf16 only where <see cref="CudaOps.HstuAttentionBf16Supports"/>).
    /// </summary>
    internal static int AttentionForwardTileSize(int dqk, int dv, CudaAttentionPrecision precision = CudaAttentionPrecision.Fp32) =>
        UsesBf16Forward(precision, dqk, dv) ? CudaOps.HstuAttentionBf16TileSize : CudaOps.HstuAttentionTileSize(dqk, dv);

    private static bool UsesBf16Forward(CudaAttentionPrecision precision, int dqk, int dv) =>
        precision == CudaAttentionPrecision.Bf16 && CudaOps.HstuAttentionBf16Supports(dqk, dv);

    /// <summary>The tile size whose tiling <see cref="HstuAttentionBackward"/> asks the layout cache for.</summary>
    internal static int AttentionBackwardTileSize(int dqk, int dv) => CudaOps.HstuAttentionBackwardTileSize(dqk, dv);

    /// <summary>Gives a pooled buffer back (no-op after dispose: the pool freed everything).</summary>
    internal void ReturnToPool(DeviceBuffer b)
    {
        if (!_disposed) _pool.Return(b);
    }

    /// <summary>How many attention layouts keep their device copies (the most recently cached ones).</summary>
    public const int MaxLayoutCaches = 8;

    private readonly LinkedList<CudaAttentionLayoutCache> _layoutCaches = new();

    /// <summary>Attention layout caches currently held (at most <see cref="MaxLayoutCaches"/>).</summary>
    internal int LayoutCacheCount => _layoutCaches.Count;

    internal void ForgetLayoutCache(CudaAttentionLayoutCache cache) => _layoutCaches.Remove(cache);

    /// <summary>The layout's device cache of this backend (created and attached on first use).</summary>
    private CudaAttentionLayoutCache LayoutCache(AttentionLayout layout, out bool temporary)
    {
        temporary = false;
        if (layout.DeviceCache is CudaAttentionLayoutCache c && ReferenceEquals(c.Owner, this)) return c;
        var cache = new CudaAttentionLayoutCache(this, layout);
        if (layout.DeviceCache is null)
        {
            layout.DeviceCache = cache;
            _layoutCaches.AddLast(cache);
            while (_layoutCaches.Count > MaxLayoutCaches) _layoutCaches.First!.Value.Dispose();
        }
        else temporary = true; // the layout is cached for another backend: use a private copy for this call
        return cache;
    }

    /// <inheritdoc />
    public void HstuAttention(AttentionLayout layout, bool targetQueries, int heads, int kvHeads,
        Tensor q, Tensor k, Tensor v, Tensor rab, Tensor o)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var (dqk, dv) = layout.CheckShapes(targetQueries, heads, kvHeads, q, k, v, rab);
        AttentionLayout.CheckRows(o, q.RowCount, heads * dv, nameof(o));
        ulong pq = F(q, nameof(q)), pk = F(k, nameof(k)), pv = F(v, nameof(v)), pr = F(rab, nameof(rab)), po = F(o, nameof(o));
        if (o.Length == 0) return;
        var cache = LayoutCache(layout, out bool temporary);
        LaunchAttentionForward(cache, layout, targetQueries, heads, kvHeads, pq, pk, pv, pr, po, dqk, dv);
        if (temporary) cache.Dispose();
    }

    /// <inheritdoc />
    public void HstuAttentionBackward(AttentionLayout layout, bool targetQueries, int heads, int kvHeads,
        Tensor q, Tensor k, Tensor v, Tensor rab, Tensor dO, Tensor? dq, Tensor? dk, Tensor? dv, Tensor? drab, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var (dqkW, dvW) = layout.CheckShapes(targetQueries, heads, kvHeads, q, k, v, rab);
        AttentionLayout.CheckRows(dO, q.RowCount, heads * dvW, nameof(dO));
        ulong pq = F(q, nameof(q)), pk = F(k, nameof(k)), pv = F(v, nameof(v)), pr = F(rab, nameof(rab)), pdo = F(dO, nameof(dO));
        if (dq is not null) { F(dq, nameof(dq)); CheckSameLength(q, dq, nameof(dq)); }
        if (dk is not null) { F(dk, nameof(dk)); CheckSameLength(k, dk, nameof(dk)); }
        if (dv is not null) { F(dv, nameof(dv)); CheckSameLength(v, dv, nameof(dv)); }
        if (drab is not null) { F(drab, nameof(drab)); CheckSameLength(rab, drab, nameof(drab)); }
        var cache = LayoutCache(layout, out bool temporary);
        var (plan, tiles, keyTiles) = cache.Plan(targetQueries, AttentionBackwardTileSize(dqkW, dvW));
        // The kernels overwrite dq/dk/dv: compute into scratch and add (this seam accumulates), or straight into the
        // outputs when told to overwrite them. drab accumulates in place.
        bool sq = !(overwrite && dq is not null), sk = !(overwrite && dk is not null), sv = !(overwrite && dv is not null);
        DeviceBuffer tq = sq ? Scratch(Math.Max(1, q.Length) * sizeof(float)) : default;
        DeviceBuffer tk = sk ? Scratch(Math.Max(1, k.Length) * sizeof(float)) : default;
        DeviceBuffer tv = sv ? Scratch(Math.Max(1, v.Length) * sizeof(float)) : default;
        var counts = Scratch(Math.Max(1, q.RowCount) * sizeof(float));
        int nb2 = layout.RabWidth;
        DeviceBuffer? parts = drab is null ? null : Scratch(Math.Max(1L, (long)plan.NumTiles * heads * nb2) * sizeof(float));
        Ops.HstuAttentionBackward(pq, pk, pv, pr, cache.Kinds, cache.Times, targetQueries ? cache.Targets : 0, tiles, keyTiles, plan,
            pdo, sq ? tq.Pointer : Ptr(dq!), sk ? tk.Pointer : Ptr(dk!), sv ? tv.Pointer : Ptr(dv!), drab is null ? 0 : Ptr(drab), accumulateRab: true, counts.Pointer,
            parts?.Pointer ?? 0, heads, kvHeads, dqkW, dvW, layout.NumBuckets, layout.UnitSeconds, 1f / MathF.Sqrt(dqkW), _stream);
        if (dq is not null && sq) AxpyRaw(tq.Pointer, Ptr(dq), q.Length);
        if (dk is not null && sk) AxpyRaw(tk.Pointer, Ptr(dk), k.Length);
        if (dv is not null && sv) AxpyRaw(tv.Pointer, Ptr(dv), v.Length);
        if (sq) Release(tq);
        if (sk) Release(tk);
        if (sv) Release(tv);
        Release(counts);
        if (parts is { } p) Release(p);
        if (temporary) cache.Dispose();
    }

    private void AxpyRaw(ulong x, ulong y, long n) =>
        Launch1D("elementwise.cu", "mtfm_axpy", n, (ref CudaKernelArgs a) => { a.F32(1f); a.Ptr(x); a.Ptr(y); a.I64(n); });
}
