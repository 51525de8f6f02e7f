using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;

namespace Mtfm.Engine.IO;

/// <summary>
/// A safetensors file loaded and fully validated: header length within the file, header is a JSON object whose
/// entries are well-formed (dtype F32/I32/I64, non-negative shape, offsets matching the shape), offsets within the data
/// section, contiguous without gaps or overlaps and covering it exactly, no duplicate names, and, for files written
/// by <see cref="SafetensorsWriter"/>, the per-tensor and header SHA-256 records of <see cref="SafetensorsIntegrity"/>.
/// Any failure throws <see cref="CheckpointFormatException"/> naming the file and the problem. Tensors are read into
/// memory at load (each tensor at most 2 GiB).
/// </summary>
internal sealed class SafetensorsFile
{
    /// <summary>Largest header accepted (the reference implementation's limit).</summary>
    public const int MaxHeaderBytes = 100_000_000;

    private readonly Dictionary<string, SafetensorsTensorInfo> _infos;
    private readonly Dictionary<string, byte[]> _data;

    private SafetensorsFile(string path, List<SafetensorsTensorInfo> tensors, Dictionary<string, byte[]> data, Dictionary<string, string> metadata)
    {
        FilePath = path;
        Tensors = tensors;
        _infos = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        _data = data;
        Metadata = metadata;
    }

    /// <summary>The file this was loaded from.</summary>
    public string FilePath { get; }

    /// <summary>Tensors in data-section order.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }

    /// <summary>All <c>__metadata__</c> entries (integrity records included).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Whether a tensor of that name exists.</summary>
    public bool Contains(string name) => _infos.ContainsKey(name);

    /// <summary>The header entry of tensor <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such tensor (message names the file).</exception>
    public SafetensorsTensorInfo GetInfo(string name) =>
        _infos.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"checkpoint '{FilePath}' has no tensor '{name}'.");

    /// <summary>A copy of fp32 tensor <paramref name="name"/>.</summary>
    public float[] ReadFloat32(string name) => Read<float>(name, SafetensorsDType.F32);

    /// <summary>A copy of int32 tensor <paramref name="name"/>.</summary>
    public int[] ReadInt32(string name) => Read<int>(name, SafetensorsDType.I32);

    /// <summary>A copy of int64 tensor <paramref name="name"/>.</summary>
    public long[] ReadInt64(string name) => Read<long>(name, SafetensorsDType.I64);

    /// <summary>Copies fp32 tensor <paramref name="name"/> into <paramref name="destination"/> (lengths must match).</summary>
    public void CopyFloat32(string name, Span<float> destination)
    {
        var info = Expect(name, SafetensorsDType.F32);
        if (destination.Length != info.ElementCount)
            throw new ArgumentException($"tensor '{name}' in '{FilePath}' has {info.ElementCount} elements but the destination holds {destination.Length}.", nameof(destination));
        MemoryMarshal.Cast<byte, float>(_data[name]).CopyTo(destination);
    }

    private T[] Read<T>(string name, SafetensorsDType dtype) where T : unmanaged
    {
        Expect(name, dtype);
        return MemoryMarshal.Cast<byte, T>(_data[name]).ToArray();
    }

    private SafetensorsTensorInfo Expect(string name, SafetensorsDType dtype)
    {
        var info = GetInfo(name);
        if (info.DType != dtype) throw new InvalidOperationException($"tensor '{name}' in '{FilePath}' is {info.DType}, not {dtype}.");
        return info;
    }

    /// <summary>Loads and validates <paramref name="path"/>.</summary>
    /// <param name="path">The file.</param>
    /// <param name="requireIntegrity">
    /// True (default): every tensor must have its <c>mtfm.sha256.*</c> record and the header its <c>mtfm.header_sha256</c>.
    /// False: records that are present are still verified, missing ones are tolerated (files from other writers).
    /// </param>
    /// <exception cref="CheckpointFormatException">Anything is wrong with the file.</exception>
    public static SafetensorsFile Load(string path, bool requireIntegrity = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors reading needs a little-endian host.");
        CheckpointFormatException Bad(string problem, Exception? inner = null) => new(path, problem, inner);
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        long fileLength = fs.Length;
        if (fileLength < 8) throw Bad($"file is {fileLength} bytes, shorter than the 8-byte header length (truncated)");
        Span<byte> lenBytes = stackalloc byte[8];
        fs.ReadExactly(lenBytes);
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (headerLen == 0) throw Bad("header length is 0");
        if (headerLen > MaxHeaderBytes) throw Bad($"header length {headerLen} exceeds the limit of {MaxHeaderBytes} bytes");
        if ((long)headerLen > fileLength - 8) throw Bad($"header length {headerLen} runs past the end of the {fileLength}-byte file (truncated)");
        var header = new byte[(int)headerLen];
        fs.ReadExactly(header);
        long dataLength = fileLength - 8 - (long)headerLen;

        var tensors = new List<SafetensorsTensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!System.Text.Unicode.Utf8.IsValid(header)) throw Bad("header is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw Bad($"header is not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Bad($"header is a JSON {doc.RootElement.ValueKind}, expected an object");
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (!names.Add(prop.Name)) throw Bad($"header has the key '{prop.Name}' twice");
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw Bad("__metadata__ is not an object");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw Bad($"__metadata__ entry '{m.Name}' is a {m.Value.ValueKind}, expected a string");
                        if (!metadata.TryAdd(m.Name, m.Value.GetString()!)) throw Bad($"__metadata__ has the key '{m.Name}' twice");
                    }
                    continue;
                }
                tensors.Add(ParseTensor(prop, Bad));
            }
        }

        // Offsets: within the data section, contiguous from 0, no gaps or overlaps, covering it exactly.
        tensors.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        long expected = 0;
        foreach (var t in tensors)
        {
            if (t.End > dataLength) throw Bad($"tensor '{t.Name}' data_offsets [{t.Begin}, {t.End}] run past the {dataLength}-byte data section (truncated or bad offsets)");
            if (t.Begin < expected) throw Bad($"tensor '{t.Name}' data_offsets [{t.Begin}, {t.End}] overlap the previous tensor, which ends at {expected}");
            if (t.Begin > expected) throw Bad($"tensor '{t.Name}' starts at {t.Begin} but the previous tensor ends at {expected}: a gap in the data section");
            expected = t.End;
        }
        if (expected != dataLength) throw Bad($"tensors cover {expected} bytes but the data section holds {dataLength}");

        // Integrity records.
        foreach (var key in metadata.Keys)
            if (key.StartsWith(SafetensorsIntegrity.TensorHashPrefix, StringComparison.Ordinal) && !tensors.Any(t => t.Name == key[SafetensorsIntegrity.TensorHashPrefix.Length..]))
                throw Bad($"metadata '{key}' names a tensor that is not in the file");
        if (metadata.TryGetValue(SafetensorsIntegrity.HeaderHashKey, out var headerHash))
        {
            string actual = SafetensorsIntegrity.HeaderDigest(tensors, metadata);
            if (!string.Equals(actual, headerHash, StringComparison.Ordinal))
                throw Bad($"header SHA-256 mismatch: recorded {headerHash}, computed {actual} (the header is corrupted)");
        }
        else if (requireIntegrity) throw Bad($"header has no '{SafetensorsIntegrity.HeaderHashKey}' record");

        var data = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        long dataStart = 8 + (long)headerLen;
        foreach (var t in tensors)
        {
            long len = t.End - t.Begin;
            if (len > Array.MaxLength) throw Bad($"tensor '{t.Name}' is {len} bytes, larger than this reader supports");
            var bytes = new byte[len];
            fs.Position = dataStart + t.Begin;
            try { fs.ReadExactly(bytes); }
            catch (EndOfStreamException e) { throw Bad($"tensor '{t.Name}' is cut off (truncated)", e); }
            if (metadata.TryGetValue(SafetensorsIntegrity.TensorHashPrefix + t.Name, out var want))
            {
                string got = Convert.ToHexStringLower(SHA256.HashData(bytes));
                if (!string.Equals(got, want, StringComparison.Ordinal))
                    throw Bad($"tensor '{t.Name}' SHA-256 mismatch: recorded {want}, computed {got} (the data is corrupted)");
            }
            else if (requireIntegrity) throw Bad($"tensor '{t.Name}' has no '{SafetensorsIntegrity.TensorHashPrefix}{t.Name}' record");
            data.Add(t.Name, bytes);
        }
        return new SafetensorsFile(path, tensors, data, metadata);
    }

    private static SafetensorsTensorInfo ParseTensor(JsonProperty prop, Func<string, Exception?, CheckpointFormatException> bad)
    {
        string name = prop.Name;
        if (name.Length == 0) throw bad("a tensor has an empty name", null);
        if (prop.Value.ValueKind != JsonValueKind.Object) throw bad($"tensor '{name}' entry is a {prop.Value.ValueKind}, expected an object", null);
        string? dtypeName = null;
        List<long>? shape = null;
        long[]? offsets = null;
        foreach (var f in prop.Value.EnumerateObject())
        {
            switch (f.Name)
            {
                case "dtype" when dtypeName is null:
                    if (f.Value.ValueKind != JsonValueKind.String) throw bad($"tensor '{name}' dtype is not a string", null);
                    dtypeName = f.Value.GetString()!;
                    break;
                case "shape" when shape is null:
                    shape = ReadIntegers(f.Value, name, "shape", bad);
                    break;
                case "data_offsets" when offsets is null:
                    offsets = ReadIntegers(f.Value, name, "data_offsets", bad).ToArray();
                    if (offsets.Length != 2) throw bad($"tensor '{name}' data_offsets has {offsets.Length} numbers, expected 2", null);
                    break;
                default:
                    throw bad($"tensor '{name}' has an unexpected or repeated field '{f.Name}'", null);
            }
        }
        if (dtypeName is null) throw bad($"tensor '{name}' has no dtype", null);
        if (shape is null) throw bad($"tensor '{name}' has no shape", null);
        if (offsets is null) throw bad($"tensor '{name}' has no data_offsets", null);
        if (!SafetensorsDTypes.TryParse(dtypeName, out var dtype)) throw bad($"tensor '{name}' has dtype '{dtypeName}'; this reader supports F32, I32, I64", null);
        long elements = 1;
        foreach (long d in shape)
        {
            try { elements = checked(elements * d); }
            catch (OverflowException) { throw bad($"tensor '{name}' shape [{string.Join(", ", shape)}] overflows", null); }
        }
        if (offsets[1] < offsets[0]) throw bad($"tensor '{name}' data_offsets [{offsets[0]}, {offsets[1]}] end before they begin", null);
        long bytes;
        try { bytes = checked(elements * SafetensorsDTypes.Size(dtype)); }
        catch (OverflowException) { throw bad($"tensor '{name}' shape [{string.Join(", ", shape)}] overflows", null); }
        if (offsets[1] - offsets[0] != bytes)
            throw bad($"tensor '{name}' data_offsets [{offsets[0]}, {offsets[1]}] span {offsets[1] - offsets[0]} bytes but {dtypeName} shape [{string.Join(", ", shape)}] needs {bytes}", null);
        return new SafetensorsTensorInfo(name, dtype, shape, offsets[0], offsets[1]);
    }

    private static List<long> ReadIntegers(JsonElement e, string name, string field, Func<string, Exception?, CheckpointFormatException> bad)
    {
        if (e.ValueKind != JsonValueKind.Array) throw bad($"tensor '{name}' {field} is not an array", null);
        var list = new List<long>();
        foreach (var x in e.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt64(out long v) || v < 0)
                throw bad($"tensor '{name}' {field} holds '{x.GetRawText()}', expected a non-negative integer", null);
            list.Add(v);
        }
        return list;
    }
}
