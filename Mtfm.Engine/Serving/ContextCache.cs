using System.Buffers.Binary;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;

namespace Mtfm.Engine.Serving;

/// <summary>
/// Least-recently-used cache of <see cref="EncodedContext"/>s (spec §6: H/R K/V computed once and reused until new
/// events arrive), bounded by the bytes of K/V it holds. The key is the exact encoded content of the H/R tokens (groups,
/// times, table rows, numeric bits), so a user's new event, a request time that lets another R event in, or a new window
/// is a different key: a hit is always the same computation. Not thread-safe (the <see cref="Scorer"/> serialises calls).
/// </summary>
internal sealed class ContextCache(long maxBytes) : IDisposable
{
    private readonly Dictionary<string, LinkedListNode<(string Key, EncodedContext Context)>> _map = new(StringComparer.Ordinal);
    private readonly LinkedList<(string Key, EncodedContext Context)> _lru = new();

    public long MaxBytes { get; } = maxBytes > 0 ? maxBytes : throw new ArgumentOutOfRangeException(nameof(maxBytes), maxBytes, "must be > 0");
    public int Count => _map.Count;
    public long Bytes { get; private set; }
    public long Hits { get; private set; }
    public long Misses { get; private set; }

    /// <summary>The cached context for <paramref name="key"/>, marked most recently used; false (a miss) when absent.</summary>
    public bool TryGet(string key, out EncodedContext context)
    {
        if (_map.TryGetValue(key, out var node))
        {
            Hits++;
            _lru.Remove(node);
            _lru.AddFirst(node);
            context = node.Value.Context;
            return true;
        }
        Misses++;
        context = null!;
        return false;
    }

    /// <summary>
    /// Keeps <paramref name="context"/> under <paramref name="key"/>, evicting least recently used entries to stay within
    /// <see cref="MaxBytes"/>. Returns false when it alone exceeds the budget: then it is not kept and the caller disposes it.
    /// </summary>
    public bool Add(string key, EncodedContext context)
    {
        long size = context.Bytes;
        if (size > MaxBytes) return false;
        _map.Add(key, _lru.AddFirst((key, context)));
        Bytes += size;
        while (Bytes > MaxBytes)
        {
            var last = _lru.Last!;
            _lru.RemoveLast();
            _map.Remove(last.Value.Key);
            Bytes -= last.Value.Context.Bytes;
            last.Value.Context.Dispose();
        }
        return true;
    }

    internal static string KeyOf(JaggedBatch b, int n)
    {
        int size = 4;
        for (int t = 0; t < n; t++)
        {
            var blk = b.Blocks[b.Group[t]];
            size += 12 + 4 * (blk.CategoricalWidth + blk.NumericWidth);
        }
        var bytes = new byte[size];
        var span = bytes.AsSpan();
        BinaryPrimitives.WriteInt32LittleEndian(span, n); span = span[4..];
        for (int t = 0; t < n; t++)
        {
            var blk = b.Blocks[b.Group[t]];
            int r = b.RowInGroup[t];
            BinaryPrimitives.WriteInt32LittleEndian(span, b.Group[t]);
            BinaryPrimitives.WriteInt64LittleEndian(span[4..], b.Time[t]);
            span = span[12..];
            foreach (int c in blk.Categorical.AsSpan(r * blk.CategoricalWidth, blk.CategoricalWidth)) { BinaryPrimitives.WriteInt32LittleEndian(span, c); span = span[4..]; }
            foreach (float f in blk.Numeric.AsSpan(r * blk.NumericWidth, blk.NumericWidth)) { BinaryPrimitives.WriteSingleLittleEndian(span, f); span = span[4..]; }
        }
        return Convert.ToBase64String(bytes);
    }

    public void Dispose()
    {
        foreach (var (_, ctx) in _lru) ctx.Dispose();
        _lru.Clear();
        _map.Clear();
        Bytes = 0;
    }
}
