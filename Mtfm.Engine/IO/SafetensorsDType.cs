namespace Mtfm.Engine.IO;

/// <summary>Element types this engine writes and reads in safetensors files (names as in the format: F32, I32, I64).</summary>
internal enum SafetensorsDType
{
    /// <summary>IEEE-754 binary32, little-endian.</summary>
    F32,

    /// <summary>Signed 32-bit integer, little-endian.</summary>
    I32,

    /// <summary>Signed 64-bit integer, little-endian.</summary>
    I64,
}

/// <summary>Sizes and names of <see cref="SafetensorsDType"/>.</summary>
internal static class SafetensorsDTypes
{
    public static int Size(SafetensorsDType t) => t == SafetensorsDType.I64 ? 8 : 4;

    public static string Name(SafetensorsDType t) => t switch
    {
        SafetensorsDType.F32 => "F32",
        SafetensorsDType.I32 => "I32",
        SafetensorsDType.I64 => "I64",
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown dtype"),
    };

    public static bool TryParse(string s, out SafetensorsDType t)
    {
        switch (s)
        {
            case "F32": t = SafetensorsDType.F32; return true;
            case "I32": t = SafetensorsDType.I32; return true;
            case "I64": t = SafetensorsDType.I64; return true;
            default: t = default; return false;
        }
    }
}
