using System.Text;

namespace Mtfm.Engine.Data;

/// <summary>Deterministic 64-bit FNV-1a over UTF-8 (identical on every run and platform; never <c>string.GetHashCode</c>).</summary>
internal static class StableHash
{
    /// <summary>FNV-1a 64 of the UTF-8 bytes of <paramref name="s"/>.</summary>
    public static ulong Fnv1a64(ReadOnlySpan<char> s)
    {
        ulong h = 14695981039346656037UL;
        Span<byte> buf = stackalloc byte[4];
        foreach (var r in s.EnumerateRunes())
        {
            int n = r.EncodeToUtf8(buf);
            for (int i = 0; i < n; i++) { h ^= buf[i]; h *= 1099511628211UL; }
        }
        return h;
    }

    /// <summary>Bucket in [0, buckets) of <paramref name="s"/>.</summary>
    public static int Bucket(ReadOnlySpan<char> s, int buckets) => (int)(Fnv1a64(s) % (ulong)buckets);
}
