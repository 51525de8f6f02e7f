using Mtfm.Engine.Backends;

namespace Mtfm.Engine.Tensors;

/// <summary>
/// A dense, contiguous, row-major tensor: a shape, a dtype and an element range of a backend-owned
/// <see cref="TensorStorage"/>. Either owns its storage (disposing it frees the memory) or is a view that shares
/// another tensor's storage (<see cref="Rows"/>, <see cref="Reshape"/>; disposing a view frees nothing).
/// A jagged batch is rows of one <c>[totalTokens, d]</c> tensor plus offsets: <c>t.Rows(offsets[b], len)</c>.
/// </summary>
internal sealed class Tensor : IDisposable
{
    private readonly int[] _shape;

    private Tensor(TensorStorage storage, long offset, int[] shape, bool ownsStorage)
    {
        Storage = storage;
        Offset = offset;
        _shape = shape;
        OwnsStorage = ownsStorage;
        Length = CheckedLength(shape);
        if (offset < 0 || offset + Length > storage.Elements)
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"View [{offset}, {offset + Length}) exceeds a storage of {storage.Elements} elements.");
    }

    /// <summary>Wraps freshly allocated storage as an owning tensor of the given shape.</summary>
    internal static Tensor Owning(TensorStorage storage, ReadOnlySpan<int> shape) => new(storage, 0, shape.ToArray(), true);

    /// <summary>Backing storage (shared by views).</summary>
    public TensorStorage Storage { get; }

    /// <summary>The backend that owns the storage.</summary>
    public IBackend Backend => Storage.Backend;

    /// <summary>First element of this tensor within <see cref="Storage"/>.</summary>
    public long Offset { get; }

    /// <summary>Element type.</summary>
    public DType DType => Storage.DType;

    /// <summary>Dimensions, outermost first.</summary>
    public ReadOnlySpan<int> Shape => _shape;

    /// <summary>Number of dimensions.</summary>
    public int Rank => _shape.Length;

    /// <summary>Total number of elements.</summary>
    public long Length { get; }

    /// <summary>True when disposing this tensor frees its storage (false for views).</summary>
    public bool OwnsStorage { get; }

    /// <summary>Size of dimension <paramref name="axis"/> (negative counts from the end).</summary>
    public int Dim(int axis)
    {
        int a = axis < 0 ? axis + Rank : axis;
        if ((uint)a >= (uint)Rank) throw new ArgumentOutOfRangeException(nameof(axis), axis, $"Tensor of rank {Rank} has no axis {axis}.");
        return _shape[a];
    }

    /// <summary>Size of the first dimension (1 for a scalar of rank 0).</summary>
    public int RowCount => Rank == 0 ? 1 : _shape[0];

    /// <summary>Elements per row: the product of all dimensions but the first.</summary>
    public long RowLength => Rank == 0 ? 1 : ProductFrom(1);

    /// <summary>Size of the last dimension (the feature axis).</summary>
    public int LastDim => Rank == 0 ? 1 : _shape[^1];

    /// <summary>A view of rows [<paramref name="start"/>, start+<paramref name="count"/>) sharing this storage.</summary>
    public Tensor Rows(int start, int count)
    {
        Storage.ThrowIfDisposed();
        if (Rank == 0) throw new InvalidOperationException("A rank-0 tensor has no rows.");
        if (start < 0 || start > _shape[0]) throw new ArgumentOutOfRangeException(nameof(start), start, $"Row start must lie in [0, {_shape[0]}].");
        if (count < 0 || start + (long)count > _shape[0]) throw new ArgumentOutOfRangeException(nameof(count), count, $"Rows [{start}, {start + (long)count}) exceed the {_shape[0]} rows of the tensor.");
        var shape = (int[])_shape.Clone();
        shape[0] = count;
        return new Tensor(Storage, Offset + start * RowLength, shape, false);
    }

    /// <summary>A view with the same elements and another shape (one dimension may be -1: inferred).</summary>
    public Tensor Reshape(params ReadOnlySpan<int> shape)
    {
        Storage.ThrowIfDisposed();
        var s = shape.ToArray();
        int infer = -1;
        long known = 1;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException($"Only one dimension may be -1 in [{string.Join(", ", s)}].", nameof(shape));
                infer = i;
            }
            else if (s[i] < 0) throw new ArgumentOutOfRangeException(nameof(shape), s[i], $"Dimension {i} of [{string.Join(", ", s)}] is negative.");
            else known *= s[i];
        }
        if (infer >= 0)
        {
            if (known == 0 || Length % known != 0) throw new ArgumentException($"Cannot infer a dimension of [{string.Join(", ", s)}] for {Length} elements.", nameof(shape));
            s[infer] = (int)(Length / known);
        }
        if (CheckedLength(s) != Length)
            throw new ArgumentException($"Shape [{string.Join(", ", s)}] holds {CheckedLength(s)} elements, the tensor {ShapeString} holds {Length}.", nameof(shape));
        return new Tensor(Storage, Offset, s, false);
    }

    /// <summary>The shape as text, e.g. <c>[3, 7]</c>.</summary>
    public string ShapeString => "[" + string.Join(", ", _shape) + "]";

    /// <summary>True when the shapes are equal.</summary>
    public bool SameShape(Tensor other) => Shape.SequenceEqual(other.Shape);

    /// <summary>Frees the storage if this tensor owns it; a view frees nothing.</summary>
    public void Dispose()
    {
        if (OwnsStorage) Storage.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() => $"Tensor<{DType}>{ShapeString}{(OwnsStorage ? "" : " view")}";

    private long ProductFrom(int axis)
    {
        long p = 1;
        for (int i = axis; i < _shape.Length; i++) p *= _shape[i];
        return p;
    }

    internal static long CheckedLength(ReadOnlySpan<int> shape)
    {
        long n = 1;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] < 0) throw new ArgumentOutOfRangeException(nameof(shape), shape[i], $"Dimension {i} of [{string.Join(", ", shape.ToArray())}] is negative.");
            n = checked(n * shape[i]);
        }
        return n;
    }
}
