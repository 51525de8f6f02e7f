namespace Mtfm.Engine.Tensors;

/// <summary>Element type of a <see cref="Tensor"/>: fp32 values or integer indices.</summary>
internal enum DType
{
    /// <summary>32-bit IEEE float (values, activations, gradients).</summary>
    Float32,
    /// <summary>32-bit signed integer (ids, offsets, group ids).</summary>
    Int32,
    /// <summary>64-bit signed integer (ids, timestamps).</summary>
    Int64,
}

/// <summary>Helpers on <see cref="DType"/>.</summary>
internal static class DTypeExtensions
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this DType dtype) => dtype switch
    {
        DType.Float32 => 4,
        DType.Int32 => 4,
        DType.Int64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown dtype."),
    };

    /// <summary>The dtype of an unmanaged element type (float, int, long).</summary>
    public static DType Of<T>() where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return DType.Float32;
        if (typeof(T) == typeof(int)) return DType.Int32;
        if (typeof(T) == typeof(long)) return DType.Int64;
        throw new NotSupportedException($"Element type {typeof(T).Name} has no tensor dtype (use float, int or long).");
    }

    /// <summary>True for the integer (index) dtypes.</summary>
    public static bool IsIndex(this DType dtype) => dtype is DType.Int32 or DType.Int64;
}
