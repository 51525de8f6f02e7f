using System.Buffers.Binary;

namespace Mtfm.Engine.Data;

/// <summary>
/// A structural check of a Parquet file's footer before the Parquet decoder sees it: the file ends in
/// <c>&lt;footer&gt; &lt;4-byte little-endian length&gt; PAR1</c>, and the footer must be one complete Thrift
/// compact-protocol struct inside those bytes, with every string, list, set and map fitting in the bytes that remain
/// and nesting at most <see cref="MaxDepth"/> deep. Found by fuzzing: the decoder spun forever on a truncated footer;
/// this walk reads each byte at most once, so a damaged footer is one error instead of a hang.
/// </summary>
internal static class ParquetFooterCheck
{
    /// <summary>Deepest struct/container nesting accepted (Parquet's own footer nests about 6 deep).</summary>
    public const int MaxDepth = 64;

    /// <summary>Throws <see cref="DataFormatException"/> naming <paramref name="path"/> unless its footer is well formed.</summary>
    public static void Validate(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.RandomAccess);
        long length = fs.Length;
        if (length < 12) throw Bad(path, $"{length} bytes is too short for a Parquet file (at least 12: PAR1, footer length, PAR1)");
        Span<byte> tail = stackalloc byte[8];
        fs.Seek(length - 8, SeekOrigin.Begin);
        fs.ReadExactly(tail);
        if (!tail[4..].SequenceEqual("PAR1"u8)) throw Bad(path, "the file does not end in the Parquet magic PAR1");
        uint footer = BinaryPrimitives.ReadUInt32LittleEndian(tail);
        if (footer == 0 || footer > length - 12) throw Bad(path, $"the footer length {footer} does not fit the file of {length} bytes");
        var bytes = new byte[footer];
        fs.Seek(length - 8 - footer, SeekOrigin.Begin);
        fs.ReadExactly(bytes);
        var walk = new Walk(bytes);
        if (!walk.Struct(0)) throw Bad(path, $"the footer is not a complete Thrift struct ({walk.Problem} at footer byte {walk.Position} of {footer})");
    }

    private static DataFormatException Bad(string path, string problem) =>
        new($"{path}: not a readable Parquet file (reading the footer/schema): {problem}");

    /// <summary>A one-pass walk of Thrift compact-protocol values; every read checks the bytes that remain.</summary>
    private ref struct Walk(ReadOnlySpan<byte> buffer)
    {
        private readonly ReadOnlySpan<byte> _b = buffer;
        public int Position;
        public string Problem = "";

        private bool Fail(string problem)
        {
            Problem = problem;
            return false;
        }

        private bool Byte(out byte value)
        {
            value = 0;
            if (Position >= _b.Length) return Fail("unexpected end");
            value = _b[Position++];
            return true;
        }

        private bool Varint(out ulong value)
        {
            value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (!Byte(out byte b)) return false;
                value |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return true;
            }
            return Fail("a varint longer than 10 bytes");
        }

        private bool Skip(ulong count)
        {
            if (count > (ulong)(_b.Length - Position)) return Fail($"a length of {count} past the end");
            Position += (int)count;
            return true;
        }

        public bool Struct(int depth)
        {
            if (depth > MaxDepth) return Fail($"nesting deeper than {MaxDepth}");
            while (true)
            {
                if (!Byte(out byte header)) return false;
                if (header == 0) return true; // stop field
                int type = header & 0x0F;
                if ((header >> 4) == 0 && !Varint(out _)) return false; // long form: the field id follows
                if (!Value(type, depth)) return false;
            }
        }

        private bool Value(int type, int depth)
        {
            switch (type)
            {
                case 1: case 2: return true;                         // boolean true / false (in the field header)
                case 3: return Skip(1);                              // byte
                case 4: case 5: case 6: return Varint(out _);        // i16, i32, i64 (zigzag varints)
                case 7: return Skip(8);                              // double
                case 8: return Varint(out ulong n) && Skip(n);       // binary / string
                case 9: case 10: return List(depth);                 // list, set
                case 11: return Map(depth);
                case 12: return Struct(depth + 1);
                default: return Fail($"unknown compact type {type}");
            }
        }

        private bool List(int depth)
        {
            if (depth + 1 > MaxDepth) return Fail($"nesting deeper than {MaxDepth}");
            if (!Byte(out byte header)) return false;
            ulong count = (ulong)(header >> 4);
            int element = header & 0x0F;
            if (count == 15 && !Varint(out count)) return false;
            // Every element takes at least one byte: a count above the bytes left cannot be complete.
            if (count > (ulong)(_b.Length - Position)) return Fail($"a list of {count} elements past the end");
            for (ulong i = 0; i < count; i++)
                if (!(element is 1 or 2 ? Skip(1) : Value(element, depth + 1))) return false; // booleans in a list are one byte each
            return true;
        }

        private bool Map(int depth)
        {
            if (depth + 1 > MaxDepth) return Fail($"nesting deeper than {MaxDepth}");
            if (!Varint(out ulong count)) return false;
            if (count == 0) return true;
            if (!Byte(out byte types)) return false;
            if (count > (ulong)(_b.Length - Position) / 2) return Fail($"a map of {count} entries past the end");
            int key = types >> 4, value = types & 0x0F;
            for (ulong i = 0; i < count; i++)
            {
                if (!(key is 1 or 2 ? Skip(1) : Value(key, depth + 1))) return false;
                if (!(value is 1 or 2 ? Skip(1) : Value(value, depth + 1))) return false;
            }
            return true;
        }
    }
}
