using Mtfm.Engine.Backends;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

/// <summary>
/// A reverse-mode autograd tape and the memory scope of one step. Ops (see <see cref="Ops"/>) allocate their outputs
/// from <see cref="Scope"/> and, while recording, append a node holding a backward callback. <see cref="Backward(Variable, bool, bool)"/>
/// runs the nodes in reverse; every backward ADDS into the gradients of its inputs, so a variable used twice receives
/// both contributions. Disposing the tape frees every activation and activation gradient it allocated; parameter
/// gradients stay with their <see cref="Parameter"/>.
/// </summary>
internal sealed class Tape : IDisposable
{
    private readonly List<Node> _nodes = new();
    private readonly List<Variable> _gradsOwned = new();
    private readonly bool _gradEnabled;
    private int _noGradDepth;
    private bool _backwardDone;
    private bool _disposed;
    private bool _handOff; // inside a Backward that frees activation gradients as it goes

    private sealed record Node(Variable[] Outputs, Variable[] Inputs, Action Backward);

    /// <summary>Creates a tape over <paramref name="backend"/>; with <paramref name="gradEnabled"/> false it never records (inference).</summary>
    public Tape(IBackend backend, bool gradEnabled = true)
    {
        Backend = backend ?? throw new ArgumentNullException(nameof(backend));
        Scope = new TensorScope(backend);
        _gradEnabled = gradEnabled;
    }

    /// <summary>The backend every op of this tape runs on.</summary>
    public IBackend Backend { get; }

    /// <summary>The arena holding this tape's activations and their gradients.</summary>
    public TensorScope Scope { get; }

    /// <summary>True while ops record backward nodes (grad enabled and outside every <see cref="NoGrad"/> scope).</summary>
    public bool IsRecording => _gradEnabled && _noGradDepth == 0 && !_backwardDone;

    /// <summary>Number of recorded nodes.</summary>
    public int NodeCount => _nodes.Count;

    /// <summary>Suspends recording until the returned scope is disposed (nested scopes are fine).</summary>
    public NoGradScope NoGrad()
    {
        _noGradDepth++;
        return new NoGradScope(this);
    }

    /// <summary>Restores recording when disposed; see <see cref="NoGrad"/>.</summary>
    public readonly struct NoGradScope : IDisposable
    {
        private readonly Tape _tape;

        internal NoGradScope(Tape tape) => _tape = tape;

        /// <summary>Leaves the no-grad region.</summary>
        public void Dispose()
        {
            if (_tape is not null) _tape._noGradDepth--;
        }
    }

    /// <summary>Allocates a tensor in the tape's scope (freed with the tape).</summary>
    public Tensor Allocate(DType dtype, ReadOnlySpan<int> shape, bool zero = false) => Scope.Allocate(dtype, shape, zero);

    /// <summary>Allocates an fp32 tensor in the tape's scope.</summary>
    public Tensor Allocate(params ReadOnlySpan<int> shape) => Scope.Allocate(DType.Float32, shape);

    /// <summary>Wraps an fp32 activation tensor allocated for an op's output (no grad until <see cref="Record"/>).</summary>
    public Variable Output(Tensor value) => new(value);

    /// <summary>Uploads host data into a new tensor of the tape's scope and wraps it (a batch input, a constant).</summary>
    public Variable Input(ReadOnlySpan<float> data, ReadOnlySpan<int> shape, bool requiresGrad = false)
    {
        var t = Allocate(DType.Float32, shape);
        Backend.Upload(data, t);
        return new Variable(t, requiresGrad);
    }

    /// <summary>Uploads host ids into a new index tensor of the tape's scope.</summary>
    public Tensor Ids(ReadOnlySpan<int> data, ReadOnlySpan<int> shape)
    {
        var t = Allocate(DType.Int32, shape);
        Backend.Upload(data, t);
        return t;
    }

    /// <summary>
    /// Records a custom op: <paramref name="outputs"/> were computed from <paramref name="inputs"/>; <paramref name="backward"/>
    /// later reads output gradients with <see cref="GradOf"/> and ADDS input gradients into <see cref="GradFor"/>.
    /// Does nothing when not recording or when no input requires a gradient; otherwise marks the outputs as requiring one.
    /// Returns true when the node was recorded.
    /// </summary>
    public bool Record(Variable[] outputs, Variable[] inputs, Action backward)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(backward);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!IsRecording) return false;
        bool any = false;
        foreach (var v in inputs) any |= v.RequiresGrad;
        if (!any) return false;
        foreach (var o in outputs) o.RequiresGrad = true;
        _nodes.Add(new Node(outputs, inputs, backward));
        return true;
    }

    /// <summary>The gradient that reached <paramref name="output"/> during backward, or null if none did.</summary>
    public Tensor? GradOf(Variable output) => output.Grad;

    /// <summary>
    /// The gradient buffer of <paramref name="input"/> to ADD into (allocated zeroed on first use), or null when the
    /// input does not require a gradient. Parameter gradients live in the parameter; all others in this tape's scope.
    /// </summary>
    public Tensor? GradFor(Variable input) => Grad(input, zero: true, out _);

    /// <summary>
    /// As <see cref="GradFor"/>, for a backward that can WRITE its gradient instead of adding it: when this call
    /// allocates the buffer (the first gradient to reach a non-parameter <paramref name="input"/>), it is not zeroed and
    /// <paramref name="overwrite"/> is true, and the caller must then write every element (e.g. a GEMM with beta 0, a
    /// copy). Otherwise it is <see cref="GradFor"/>'s buffer, to add into. Saves zeroing a buffer that is overwritten.
    /// </summary>
    public Tensor? GradForWrite(Variable input, out bool overwrite) => Grad(input, zero: false, out overwrite);

    /// <summary>
    /// Inside a <see cref="Backward(Variable, Tensor, bool, bool)"/> that frees activation gradients as it goes: when
    /// <paramref name="to"/> (an activation that needs a gradient) has none yet and <paramref name="from"/>'s gradient
    /// has its shape, that buffer becomes <paramref name="to"/>'s gradient, <paramref name="from"/>'s is set to null,
    /// and the call returns true: the first gradient to reach <paramref name="to"/> without a copy. The caller must have
    /// finished reading <paramref name="from"/>'s gradient (its backward would free it right after anyway). Returns
    /// false, changing nothing, otherwise.
    /// </summary>
    public bool TryHandOffGrad(Variable from, Variable to)
    {
        if (!_handOff || !to.RequiresGrad || to is Parameter || to.Grad is not null || from is Parameter || ReferenceEquals(from, to)) return false;
        if (from.Grad is not { } g || g.DType != DType.Float32 || !g.SameShape(to.Value)) return false;
        to.Grad = g;
        from.Grad = null;
        _gradsOwned.Add(to);
        return true;
    }

    /// <summary>The gradient buffer of <paramref name="input"/>; <paramref name="allocated"/> when this call allocated it (zeroed with <paramref name="zero"/>).</summary>
    private Tensor? Grad(Variable input, bool zero, out bool allocated)
    {
        allocated = false;
        if (!input.RequiresGrad) return null;
        if (input is Parameter p) return p.EnsureGrad();
        if (input.Grad is null)
        {
            input.Grad = Scope.Allocate(DType.Float32, input.Value.Shape, zero);
            _gradsOwned.Add(input);
            allocated = true;
        }
        return input.Grad;
    }

    /// <summary>Backpropagates from a one-element <paramref name="loss"/> with seed gradient 1 (see the seeded overload).</summary>
    public void Backward(Variable loss, bool releaseActivationGradients = false, bool releaseActivations = false)
    {
        if (loss.Value.Length != 1) throw new ArgumentException($"Backward(loss) needs a one-element loss, its shape is {loss.Value.ShapeString}; pass a seed gradient otherwise.", nameof(loss));
        var seed = Backend.Allocate(DType.Float32, loss.Value.Shape);
        try
        {
            Backend.Fill(seed, 1f);
            Backward(loss, seed, releaseActivationGradients, releaseActivations);
        }
        finally { seed.Dispose(); }
    }

    /// <summary>
    /// Backpropagates from <paramref name="output"/> with gradient <paramref name="seed"/> (same shape). Runs once per
    /// tape. With <paramref name="releaseActivationGradients"/>, the gradient of each op output is freed as soon as that
    /// op's backward has run (all its consumers ran before it), which bounds peak memory; leaf and parameter gradients stay.
    /// With <paramref name="releaseActivations"/>, the storage of each op output is freed at the same moment: only that op
    /// and its consumers (recorded later, so already run) can reference it. Views free nothing, and the storage of
    /// <paramref name="output"/> itself stays readable; other op outputs must not be read after such a backward.
    /// </summary>
    public void Backward(Variable output, Tensor seed, bool releaseActivationGradients = false, bool releaseActivations = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_backwardDone) throw new InvalidOperationException("Backward already ran on this tape; record a new tape for another pass.");
        if (!output.RequiresGrad) throw new ArgumentException($"{output} does not require a gradient: nothing recorded leads to it (NoGrad, or no input requires grad).", nameof(output));
        if (seed.Length != output.Value.Length) throw new ArgumentException($"seed {seed.ShapeString} must match the output {output.Value.ShapeString}.", nameof(seed));
        _backwardDone = true;
        _handOff = releaseActivationGradients;
        Backend.Axpy(1f, seed, GradFor(output)!);
        for (int i = _nodes.Count - 1; i >= 0; i--)
        {
            var node = _nodes[i];
            bool reached = false;
            foreach (var o in node.Outputs) reached |= o.Grad is not null;
            if (!reached) continue;
            node.Backward();
            if (releaseActivations)
                foreach (var o in node.Outputs)
                    if (o is not Parameter && o.Value.OwnsStorage && !ReferenceEquals(o.Value.Storage, output.Value.Storage)) o.Value.Dispose();
            if (!releaseActivationGradients) continue;
            foreach (var o in node.Outputs)
            {
                if (o is Parameter || o.Grad is null) continue;
                o.Grad.Dispose();
                o.Grad = null;
            }
        }
    }

    /// <summary>Frees the tape's activations and activation gradients and forgets the graph.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var v in _gradsOwned) v.Grad = null;
        _gradsOwned.Clear();
        _nodes.Clear();
        Scope.Dispose();
    }
}
