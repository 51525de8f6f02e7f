using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends;

/// <summary>Host-side conveniences on any <see cref="IBackend"/>.</summary>
internal static class BackendExtensions
{
    /// <summary>A new owning tensor of <paramref name="shape"/> holding <paramref name="data"/> (dtype from T: float, int, long).</summary>
    public static Tensor FromHost<T>(this IBackend backend, ReadOnlySpan<T> data, params ReadOnlySpan<int> shape) where T : unmanaged
    {
        var t = backend.Allocate(DTypeExtensions.Of<T>(), shape);
        try
        {
            backend.Upload(data, t);
        }
        catch
        {
            t.Dispose();
            throw;
        }
        return t;
    }

    /// <summary>A new host array with the contents of <paramref name="tensor"/>.</summary>
    public static T[] ToHost<T>(this IBackend backend, Tensor tensor) where T : unmanaged
    {
        var a = new T[tensor.Length];
        backend.Download<T>(tensor, a);
        return a;
    }
}
