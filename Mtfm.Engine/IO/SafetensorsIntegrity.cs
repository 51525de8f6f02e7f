using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Mtfm.Engine.IO;

/// <summary>
/// The integrity records that this engine adds to the <c>__metadata__</c> of the safetensors files it writes:
/// <list type="bullet">
/// <item><c>mtfm.sha256.&lt;tensor name&gt;</c>: lowercase hex SHA-256 of the tensor's raw bytes;</item>
/// <item><c>mtfm.header_sha256</c>: SHA-256 of a canonical encoding of every other header fact (tensor names, dtypes,
/// shapes, offsets, all other metadata), so a corrupted header that still parses is caught too.</item>
/// </list>
/// </summary>
internal static class SafetensorsIntegrity
{
    /// <summary>Prefix of the per-tensor SHA-256 metadata keys.</summary>
    public const string TensorHashPrefix = "mtfm.sha256.";

    /// <summary>Key of the header digest.</summary>
    public const string HeaderHashKey = "mtfm.header_sha256";

    /// <summary>True for keys that the writer manages itself (callers may not set them).</summary>
    public static bool IsReservedKey(string key) => key.StartsWith(TensorHashPrefix, StringComparison.Ordinal) || key == HeaderHashKey;

    /// <summary>Lowercase hex SHA-256 of <paramref name="bytes"/>.</summary>
    public static string Sha256Hex(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>
    /// Canonical digest of the header: tensors sorted by name (ordinal) as (name, dtype, rank, dims…, begin, end), then
    /// metadata sorted by key (ordinal) except <see cref="HeaderHashKey"/>, as (key, value); every string as a
    /// little-endian int32 UTF-8 byte length followed by the bytes, every integer as little-endian int64.
    /// </summary>
    internal static string HeaderDigest(IEnumerable<SafetensorsTensorInfo> tensors, IEnumerable<KeyValuePair<string, string>> metadata)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buf = new byte[8];
        void Str(string s)
        {
            var b = Encoding.UTF8.GetBytes(s);
            BinaryPrimitives.WriteInt32LittleEndian(buf, b.Length);
            h.AppendData(buf, 0, 4);
            h.AppendData(b);
        }
        void I64(long v)
        {
            BinaryPrimitives.WriteInt64LittleEndian(buf, v);
            h.AppendData(buf);
        }
        Str("mtfm-safetensors-header/1");
        foreach (var t in tensors.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            Str(t.Name);
            Str(SafetensorsDTypes.Name(t.DType));
            I64(t.Shape.Count);
            foreach (long d in t.Shape) I64(d);
            I64(t.Begin);
            I64(t.End);
        }
        foreach (var kv in metadata.Where(kv => kv.Key != HeaderHashKey).OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            Str(kv.Key);
            Str(kv.Value);
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }
}
