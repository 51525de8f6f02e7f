using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Data;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Nn;

/// <summary>
/// Creates named, seeded parameters and keeps them in creation order (the order of checkpoints and optimizer state).
/// Initialisation draws from one SplitMix64 stream, so a seed gives the same weights on every machine.
/// </summary>
internal sealed class ParameterFactory
{
    private readonly IBackend _backend;
    private SplitMix64 _rng;
    private readonly List<Parameter> _all = new();

    public ParameterFactory(IBackend backend, ulong seed)
    {
        _backend = backend;
        _rng = new SplitMix64(seed);
    }

    /// <summary>Every parameter created so far, in creation order.</summary>
    public List<Parameter> All => _all;

    /// <summary>A [fanIn, fanOut] weight, Xavier-uniform, with weight decay.</summary>
    public Parameter Weight(string name, int fanIn, int fanOut)
    {
        float limit = MathF.Sqrt(6f / (fanIn + fanOut));
        return Uniform(name, [fanIn, fanOut], limit, sparse: false, decay: true);
    }

    /// <summary>A [rows, dim] embedding table with row-sparse gradients, uniform in ±<paramref name="scale"/>.</summary>
    public Parameter Table(string name, int rows, int dim, float scale = 0.05f) => Uniform(name, [rows, dim], scale, sparse: true, decay: false);

    /// <summary>A tensor filled with <paramref name="value"/> (biases 0, LayerNorm gamma 1, rab 0).</summary>
    public Parameter Constant(string name, int[] shape, float value)
    {
        var t = _backend.Allocate(DType.Float32, shape);
        _backend.Fill(t, value);
        var p = new Parameter(name, t);
        _all.Add(p);
        return p;
    }

    private Parameter Uniform(string name, int[] shape, float limit, bool sparse, bool decay)
    {
        long n = Tensor.CheckedLength(shape);
        var host = new float[n];
        for (long i = 0; i < n; i++) host[i] = (float)((_rng.NextDouble() * 2 - 1) * limit);
        var t = _backend.Allocate(DType.Float32, shape);
        _backend.Upload<float>(host, t);
        var p = new Parameter(name, t, sparse, decay);
        _all.Add(p);
        return p;
    }
}
