namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// Device copies of one <see cref="AttentionLayout"/> for a <see cref="CudaBackend"/>, kept in
/// <see cref="AttentionLayout.DeviceCache"/>: kinds (Int32), times (Int64), the T token list, and the tilings
/// (<see cref="HstuAttentionPlan"/> + uploaded tiles) per (query form, tile size). Uploaded once per batch (asynchronously;
/// staged batches upload it on the copy stream, see Training.Cuda.CudaBatchPrefetch),
/// reused by every layer forward and backward; returned to the backend's pool on dispose. Layouts are made per batch
/// and nobody is obliged to dispose them, so the backend keeps only the <see cref="CudaBackend.MaxLayoutCaches"/> most
/// recent caches and evicts older ones (detaching them from their layout, which rebuilds its cache if used again).
/// </summary>
internal sealed class CudaAttentionLayoutCache : IDisposable
{
    private readonly CudaBackend _owner;
    private readonly AttentionLayout _layout;
    private readonly List<DeviceBuffer> _buffers = [];
    private readonly Dictionary<(bool Target, int Tile), (HstuAttentionPlan Plan, ulong Tiles, ulong KeyTiles)> _plans = [];

    internal CudaAttentionLayoutCache(CudaBackend owner, AttentionLayout layout)
    {
        _owner = owner;
        _layout = layout;
        var kinds = new int[layout.TokenCount];
        for (int i = 0; i < kinds.Length; i++) kinds[i] = layout.Kind[i];
        Kinds = Upload<int>(kinds);
        Times = Upload<long>(layout.Time);
        Targets = Upload<int>(layout.TargetTokens);
    }

    /// <summary>The layout these buffers describe.</summary>
    public AttentionLayout Layout => _layout;

    /// <summary>The backend that owns the buffers.</summary>
    public CudaBackend Owner => _owner;

    /// <summary>Device [tokens] Int32 segment kinds.</summary>
    public ulong Kinds { get; }

    /// <summary>Device [tokens] Int64 times.</summary>
    public ulong Times { get; }

    /// <summary>Device ascending T token indices.</summary>
    public ulong Targets { get; }

    /// <summary>
    /// The tiling for a query form and tile size, built and uploaded on first use: ahead of the step on the copy stream
    /// when the batch was staged with its model's tilings (<see cref="CudaBackend.StageAttentionLayout"/>), else at the
    /// first attention call on the compute stream.
    /// </summary>
    public (HstuAttentionPlan Plan, ulong Tiles, ulong KeyTiles) Plan(bool targetQueries, int tileSize)
    {
        if (_plans.TryGetValue((targetQueries, tileSize), out var p)) return p;
        var plan = HstuAttentionPlan.Build(_layout.Offsets, targetQueries ? _layout.TargetTokens : null, tileSize);
        p = (plan, Upload<int>(plan.Tiles), Upload<int>(plan.KeyTiles));
        _plans[(targetQueries, tileSize)] = p;
        return p;
    }

    private unsafe ulong Upload<T>(T[] data) where T : unmanaged
    {
        var b = _owner.Pool.Rent(Math.Max(8, (long)data.Length * sizeof(T)));
        _buffers.Add(b);
        _owner.UploadRaw<T>(data, b.Pointer, CudaUploadCategory.AttentionLayout);
        return b.Pointer;
    }

    /// <summary>Returns every buffer to the owner's pool (stream-ordered: safe right after the launches that used them).</summary>
    public void Dispose()
    {
        foreach (var b in _buffers) _owner.ReturnToPool(b);
        _buffers.Clear();
        _plans.Clear();
        if (ReferenceEquals(_layout.DeviceCache, this)) _layout.DeviceCache = null;
        _owner.ForgetLayoutCache(this);
    }
}
