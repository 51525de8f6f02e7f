using System.Runtime.CompilerServices;

namespace Mtfm.Engine.Data;

/// <summary>Append-only growable array (amortised doubling), exposing its backing array.</summary>
internal struct GrowBuffer<T>
{
    public T[] Items;
    public int Count;

    public GrowBuffer(int capacity) { Items = new T[Math.Max(4, capacity)]; Count = 0; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(T v)
    {
        if (Count == Items.Length) Grow(Count + 1);
        Items[Count++] = v;
    }

    public void Grow(int min)
    {
        int n = Math.Max(min, Items.Length * 2);
        Array.Resize(ref Items, n);
    }

    public readonly Span<T> Span => Items.AsSpan(0, Count);
    public readonly T[] ToArray() => Items.AsSpan(0, Count).ToArray();
    public void Clear() => Count = 0;
}
