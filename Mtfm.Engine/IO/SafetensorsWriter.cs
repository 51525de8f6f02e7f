using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Mtfm.Engine.IO;

/// <summary>
/// Builds a safetensors file: an 8-byte little-endian header length N, N bytes of UTF-8 JSON header
/// <c>{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {string: string}}</c> padded with spaces
/// so the data section starts 8-byte aligned, then the tensors' raw little-endian bytes back to back (no gaps).
/// Tensors are laid out by element size, largest first (I64, then F32/I32), each group in insertion order, so every
/// tensor is aligned to its element size. The writer adds the integrity records of <see cref="SafetensorsIntegrity"/>.
/// <see cref="Save"/> is atomic: it writes a temporary file in the target directory, flushes it to disk and renames it
/// over the target, so an existing checkpoint is never left half-written.
/// Data is copied when added (spans are not kept).
/// </summary>
internal sealed class SafetensorsWriter
{
    private readonly List<Entry> _tensors = new();
    private readonly Dictionary<string, Entry> _byName = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, string> _metadata = new(StringComparer.Ordinal);

    /// <summary>Adds an fp32 tensor.</summary>
    /// <param name="name">Unique, non-empty tensor name (not "__metadata__").</param>
    /// <param name="data">Row-major elements; length must equal the product of <paramref name="shape"/>.</param>
    /// <param name="shape">Dimensions (each ≥ 0); empty for a scalar.</param>
    public void AddFloat32(string name, ReadOnlySpan<float> data, params ReadOnlySpan<long> shape) =>
        Add(name, SafetensorsDType.F32, MemoryMarshal.AsBytes(data), data.Length, shape);

    /// <summary>Adds an int32 tensor (see <see cref="AddFloat32"/>).</summary>
    public void AddInt32(string name, ReadOnlySpan<int> data, params ReadOnlySpan<long> shape) =>
        Add(name, SafetensorsDType.I32, MemoryMarshal.AsBytes(data), data.Length, shape);

    /// <summary>Adds an int64 tensor (see <see cref="AddFloat32"/>).</summary>
    public void AddInt64(string name, ReadOnlySpan<long> data, params ReadOnlySpan<long> shape) =>
        Add(name, SafetensorsDType.I64, MemoryMarshal.AsBytes(data), data.Length, shape);

    /// <summary>
    /// Sets a metadata string (model config, feature schema, vocabularies … typically JSON text). Keys starting with
    /// <c>mtfm.sha256.</c> and <c>mtfm.header_sha256</c> are reserved for the integrity records.
    /// </summary>
    public void SetMetadata(string key, string value)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(value);
        if (SafetensorsIntegrity.IsReservedKey(key)) throw new ArgumentException($"metadata key '{key}' is reserved for integrity records.", nameof(key));
        _metadata[key] = value;
    }

    /// <summary>Number of tensors added.</summary>
    public int Count => _tensors.Count;

    private void Add(string name, SafetensorsDType dtype, ReadOnlySpan<byte> bytes, int elements, ReadOnlySpan<long> shape)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name == "__metadata__") throw new ArgumentException("tensor name '__metadata__' is reserved by the format.", nameof(name));
        if (_byName.ContainsKey(name)) throw new ArgumentException($"tensor '{name}' was already added.", nameof(name));
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors writing needs a little-endian host.");
        long product = 1;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] < 0) throw new ArgumentException($"shape[{i}] = {shape[i]} of tensor '{name}': dimensions must be ≥ 0.", nameof(shape));
            product = checked(product * shape[i]);
        }
        if (product != elements) throw new ArgumentException($"tensor '{name}' has {elements} elements but shape [{string.Join(", ", shape.ToArray())}] holds {product}.", nameof(shape));
        var e = new Entry(name, dtype, shape.ToArray(), bytes.ToArray(), SafetensorsIntegrity.Sha256Hex(bytes));
        _tensors.Add(e);
        _byName.Add(name, e);
    }

    /// <summary>Writes the file atomically and durably (temp file in the same directory, flush to disk, rename over <paramref name="path"/>, flush the directory).</summary>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full) ?? throw new ArgumentException($"path '{path}' has no directory.", nameof(path));
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory '{dir}' does not exist.");
        byte[] header = BuildHeader(out var ordered);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                WriteTo(fs, header, ordered);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
            DurableFile.SyncDirectory(dir);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>Writes the whole file (length, header, data) to <paramref name="stream"/>; the caller makes it durable.</summary>
    internal void WriteTo(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        byte[] header = BuildHeader(out var ordered);
        WriteTo(stream, header, ordered);
    }

    private static void WriteTo(Stream stream, byte[] header, List<Entry> ordered)
    {
        Span<byte> len = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
        stream.Write(len);
        stream.Write(header);
        foreach (var e in ordered) stream.Write(e.Bytes);
    }

    private byte[] BuildHeader(out List<Entry> ordered)
    {
        ordered = _tensors.Where(t => SafetensorsDTypes.Size(t.DType) == 8).Concat(_tensors.Where(t => SafetensorsDTypes.Size(t.DType) == 4)).ToList();
        var infos = new List<SafetensorsTensorInfo>(ordered.Count);
        long offset = 0;
        foreach (var e in ordered)
        {
            infos.Add(new SafetensorsTensorInfo(e.Name, e.DType, e.Shape, offset, offset + e.Bytes.Length));
            offset += e.Bytes.Length;
        }
        var meta = new SortedDictionary<string, string>(_metadata, StringComparer.Ordinal);
        foreach (var e in ordered) meta[SafetensorsIntegrity.TensorHashPrefix + e.Name] = e.Sha256;
        meta[SafetensorsIntegrity.HeaderHashKey] = SafetensorsIntegrity.HeaderDigest(infos, meta);

        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteStartObject("__metadata__");
            foreach (var kv in meta) w.WriteString(kv.Key, kv.Value);
            w.WriteEndObject();
            foreach (var t in infos)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", SafetensorsDTypes.Name(t.DType));
                w.WriteStartArray("shape");
                foreach (long d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(t.Begin);
                w.WriteNumberValue(t.End);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int n = buffer.WrittenCount;
        int padded = (n + 7) & ~7; // 8 + padded is a multiple of 8: the data section is 8-byte aligned
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(n).Fill((byte)' ');
        return header;
    }

    private sealed record Entry(string Name, SafetensorsDType DType, long[] Shape, byte[] Bytes, string Sha256);
}
