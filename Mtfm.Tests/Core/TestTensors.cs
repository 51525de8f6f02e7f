using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Tensors;

namespace Mtfm.Tests.Core;

/// <summary>Random test data: normal values (never exactly zero) uploaded to a backend.</summary>
internal static class TestTensors
{
    /// <summary>n standard-normal floats, |x| ≥ 0.05 (no zeros, no values at a ReLU-like kink).</summary>
    public static float[] Randn(Random rng, int n, double scale = 1.0)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++)
        {
            double v;
            do
            {
                double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
                v = Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
            } while (Math.Abs(v) < 0.05);
            a[i] = (float)(v * scale);
        }
        return a;
    }

    /// <summary>An owning fp32 tensor with the given data.</summary>
    public static Tensor Tensor(IBackend be, float[] data, params int[] shape)
    {
        var t = be.Allocate(DType.Float32, shape);
        be.Upload<float>(data, t);
        return t;
    }

    /// <summary>An owning Int32 tensor with the given data.</summary>
    public static Tensor Ints(IBackend be, int[] data, params int[] shape)
    {
        var t = be.Allocate(DType.Int32, shape.Length == 0 ? [data.Length] : shape);
        be.Upload<int>(data, t);
        return t;
    }

    /// <summary>A random leaf variable that requires a gradient (owning tensor, freed by the caller's scope).</summary>
    public static Variable Leaf(IBackend be, TensorScope scope, Random rng, string name, params int[] shape)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        var t = scope.Adopt(Tensor(be, Randn(rng, (int)n), shape));
        return new Variable(t, requiresGrad: true, name);
    }

    /// <summary>Downloads an fp32 tensor.</summary>
    public static float[] Read(Tensor t)
    {
        var a = new float[t.Length];
        t.Backend.Download<float>(t, a);
        return a;
    }

    /// <summary>Downloads an Int32 tensor.</summary>
    public static int[] ReadInts(Tensor t)
    {
        var a = new int[t.Length];
        t.Backend.Download<int>(t, a);
        return a;
    }
}
