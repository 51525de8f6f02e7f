using Mtfm.Engine.Autograd;
using Mtfm.Engine.Tensors;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Native;

namespace Mtfm.Engine.Training.Cuda;

/// <summary>
/// The trainer's optimizer step on a <see cref="CudaBackend"/>, with the semantics of the CPU path of
/// <see cref="MtfmTrainer"/>: global-norm clipping over dense and row-sparse gradients, AdamW on dense parameters (one
/// step count per parameter; weight decay where <see cref="Parameter.WeightDecay"/>) and lazy row-sparse Adam on embedding
/// tables (one step count per row). Everything stays on the device and nothing synchronises: the clip factor is
/// computed by a kernel and read by the update kernels; dense tensors are updated by <c>mtfm_adamw_multi</c> (one launch
/// per group of equal step count and decay), embedding rows by <c>mtfm_adam_rows_lazy</c>. Optimizer state lives in
/// the backend's pool and is freed with the backend.
/// </summary>
internal sealed class CudaOptimizerStep : IOptimizerStep
{
    private const int SumBlocks = 64;

    private readonly CudaBackend _backend;
    private readonly IReadOnlyList<Parameter> _parameters;
    private readonly DeviceBuffer?[] _m, _v;
    private readonly DeviceBuffer?[] _rowSteps;
    private readonly long[] _steps;
    private DeviceBuffer? _scale; // [0] clip factor (0: skipped step), [1] norm, [2] skipped, [3] first non-finite parameter
    private bool _guarded;

    public CudaOptimizerStep(CudaBackend backend, IReadOnlyList<Parameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(parameters);
        foreach (var p in parameters)
            if (!ReferenceEquals(p.Value.Backend, backend)) throw new ArgumentException($"parameter {p.Name} lives on '{p.Value.Backend.Name}', not on this CUDA backend.", nameof(parameters));
        _backend = backend;
        _parameters = parameters;
        _m = new DeviceBuffer?[parameters.Count];
        _v = new DeviceBuffer?[parameters.Count];
        _rowSteps = new DeviceBuffer?[parameters.Count];
        _steps = new long[parameters.Count];
    }

    private ICudaDriver Driver => _backend.Driver;

    /// <summary>Dense AdamW step count of parameter <paramref name="index"/> (as <see cref="AdamWState.Step"/>).</summary>
    public long Step(int index) => _steps[index];

    /// <summary>
    /// The non-finite guard of this step, on the device: the gradient norm per parameter and over all of them, and
    /// whether <paramref name="loss"/> or any gradient is not finite. The next <see cref="Clip"/> turns the verdict into
    /// the factor the update kernels read: 0 on a skipped step, which then changes no parameter, moment or row step
    /// count. (The host's dense AdamW step count, which chooses the bias correction, still advances on such a step.)
    /// The verdict is read back with the step's loss (<see cref="CudaLossReadback"/>).
    /// </summary>
    public void Guard(Tensor loss)
    {
        ArgumentNullException.ThrowIfNull(loss);
        int slots = Math.Max(1, _parameters.Count);
        var partials = _backend.Pool.Rent((long)slots * SumBlocks * sizeof(float));
        Driver.MemsetD32Async(partials.Pointer, 0, slots * SumBlocks, _backend.Stream);
        for (int i = 0; i < _parameters.Count; i++)
        {
            var p = _parameters[i];
            var g = p.Grad is { Length: > 0 } dense ? dense : p.SparseGradient is { } sg && sg.Values.Length > 0 ? sg.Values : null;
            if (g is not null) SumOfSquares(g, partials.At<float>((long)i * SumBlocks));
        }
        _scale ??= _backend.Pool.Rent(4 * sizeof(float));
        var a = new CudaKernelArgs();
        a.Ptr(partials.Pointer); a.I32(slots); a.I32(SumBlocks); a.Ptr(_backend.DevicePointer(loss)); a.Ptr(_scale.Value.Pointer);
        _backend.Ops.Launch("optimizer.cu", "mtfm_step_guard", 1, 256, 0, _backend.Stream, ref a);
        _backend.ReturnToPool(partials);
        _guarded = true;
    }

    /// <summary>The device buffer holding this step's guard verdict (0 when <see cref="Guard"/> has not run since the last update).</summary>
    public ulong GuardVerdict => _guarded ? _scale!.Value.Pointer : 0;

    private void SumOfSquares(Tensor g, ulong partials)
    {
        var a = new CudaKernelArgs();
        a.Ptr(_backend.DevicePointer(g)); a.I64(g.Length); a.Ptr(partials);
        // launch shape sized to the tensor (unused partial slots stay zero): most gradients are small
        long n = g.Length;
        int threads = (int)Math.Clamp((n + 31) / 32 * 32, 32, 256);
        int blocks = (int)Math.Clamp((n + threads - 1) / threads, 1, SumBlocks);
        _backend.Ops.Launch("optimizer.cu", "mtfm_sumsq_partials", (uint)blocks, (uint)threads, 0, _backend.Stream, ref a);
    }

    /// <summary>
    /// Computes the clip factor of the current gradients on the device (applied by the next <see cref="Update"/>);
    /// <paramref name="maxNorm"/> ≤ 0 disables clipping. After <see cref="Guard"/> the factor comes from its norm and
    /// verdict (0 on a skipped step).
    /// </summary>
    public void Clip(float maxNorm)
    {
        if (_guarded)
        {
            var c = new CudaKernelArgs();
            c.Ptr(_scale!.Value.Pointer); c.F32(maxNorm);
            _backend.Ops.Launch("optimizer.cu", "mtfm_clip_from_guard", 1, 32, 0, _backend.Stream, ref c);
            return;
        }
        if (maxNorm <= 0)
        {
            if (_scale is { } old) _backend.ReturnToPool(old);
            _scale = null;
            return;
        }
        var grads = new List<Tensor>();
        foreach (var p in _parameters)
        {
            if (p.Grad is { } g && g.Length > 0) grads.Add(g);
            if (p.SparseGradient is { } sg && sg.Values.Length > 0) grads.Add(sg.Values);
        }
        var partials = _backend.Pool.Rent(Math.Max(1, grads.Count) * SumBlocks * sizeof(float));
        Driver.MemsetD32Async(partials.Pointer, 0, Math.Max(1, grads.Count) * SumBlocks, _backend.Stream);
        for (int i = 0; i < grads.Count; i++) SumOfSquares(grads[i], partials.At<float>((long)i * SumBlocks));
        _scale ??= _backend.Pool.Rent(4 * sizeof(float));
        var f = new CudaKernelArgs();
        f.Ptr(partials.Pointer); f.I32(Math.Max(1, grads.Count) * SumBlocks); f.F32(maxNorm); f.Ptr(_scale.Value.Pointer);
        _backend.Ops.Launch("optimizer.cu", "mtfm_clip_scale", 1, 256, 0, _backend.Stream, ref f);
        _backend.ReturnToPool(partials);
    }

    /// <summary>One optimizer step (dense learning rate <paramref name="lr"/>, embeddings <paramref name="lrEmb"/>); zeroes the gradients.</summary>
    public void Update(long step, float lr, float lrEmb, AdamOptions denseOpt, AdamOptions embOpt)
    {
        _ = step; // step counts are kept per parameter (dense) and per row (embeddings), as on the CPU
        denseOpt.Validate();
        embOpt.Validate();
        ulong scale = _scale?.Pointer ?? 0;
        var groups = new Dictionary<(bool Decay, long Step), List<int>>();
        for (int i = 0; i < _parameters.Count; i++)
        {
            var p = _parameters[i];
            if (p.SparseGrad)
            {
                if (p.SparseGradient is { } sg && sg.RowCount > 0) SparseUpdate(i, p, sg, lrEmb, embOpt, scale);
            }
            else if (p.Grad is not null && p.Value.Length > 0)
            {
                // Weight decay where the parameter asks for it (Parameter.WeightDecay), as on the CPU.
                bool decay = p.WeightDecay;
                _steps[i]++;
                var key = (decay, _steps[i]);
                if (!groups.TryGetValue(key, out var list)) groups[key] = list = [];
                list.Add(i);
            }
        }
        foreach (var ((decay, st), list) in groups)
        {
            var o = decay ? denseOpt : embOpt;
            var table = new ulong[4 * list.Count];
            var offsets = new long[list.Count + 1];
            for (int j = 0; j < list.Count; j++)
            {
                int i = list[j];
                var p = _parameters[i];
                long n = p.Value.Length;
                _m[i] ??= Zeroed(n * sizeof(float));
                _v[i] ??= Zeroed(n * sizeof(float));
                table[4 * j] = _backend.DevicePointer(p.Value);
                table[4 * j + 1] = _backend.DevicePointer(p.Grad!);
                table[4 * j + 2] = _m[i]!.Value.Pointer;
                table[4 * j + 3] = _v[i]!.Value.Pointer;
                offsets[j + 1] = offsets[j] + n;
            }
            var tb = _backend.Pool.Rent(table.Length * sizeof(ulong));
            var ob = _backend.Pool.Rent(offsets.Length * sizeof(long));
            _backend.UploadRaw<ulong>(table, tb.Pointer, CudaUploadCategory.OptimizerTables);
            _backend.UploadRaw<long>(offsets, ob.Pointer, CudaUploadCategory.OptimizerTables);
            _backend.Ops.AdamWMulti(tb.Pointer, ob.Pointer, list.Count, offsets[^1], lr, o.Beta1, o.Beta2, o.Epsilon,
                o.WeightDecay, st, scale, _backend.Stream);
            _backend.ReturnToPool(tb);
            _backend.ReturnToPool(ob);
        }
        foreach (var p in _parameters) p.ZeroGrad();
        _guarded = false;
    }

    private void SparseUpdate(int i, Parameter p, Autograd.RowSparseGradient sg, float lr, AdamOptions o, ulong scale)
    {
        int rows = p.Value.RowCount, dim = checked((int)p.Value.RowLength);
        var ids = _backend.IndexValues(sg.Indices); // host mirror: validate like RowSparseAdam (range, distinct)
        var seen = new HashSet<long>();
        for (int r = 0; r < ids.Length; r++)
        {
            if ((ulong)ids[r] >= (ulong)rows) throw new ArgumentException($"rowIds[{r}] = {ids[r]}: must be in [0, {rows}).", "rowIds");
            if (!seen.Add(ids[r])) throw new ArgumentException($"rowIds[{r}] = {ids[r]} is repeated; coalesce duplicate rows before the update.", "rowIds");
        }
        long n = p.Value.Length;
        _m[i] ??= Zeroed(n * sizeof(float));
        _v[i] ??= Zeroed(n * sizeof(float));
        _rowSteps[i] ??= Zeroed((long)rows * sizeof(int));
        int numRows = sg.RowCount;
        ulong pids = _backend.DevicePointer(sg.Indices);
        var a = new CudaKernelArgs();
        a.Ptr(_backend.DevicePointer(p.Value)); a.Ptr(_m[i]!.Value.Pointer); a.Ptr(_v[i]!.Value.Pointer); a.Ptr(_rowSteps[i]!.Value.Pointer);
        a.Ptr(pids); a.Ptr(_backend.DevicePointer(sg.Values)); a.I32(numRows); a.I32(dim); a.F32(lr); a.F32(o.Beta1); a.F32(o.Beta2);
        a.F32(o.Epsilon); a.F32(o.WeightDecay); a.Ptr(scale);
        _backend.Ops.Launch("optimizer.cu", "mtfm_adam_rows_lazy", Grid((long)numRows * dim), 256, 0, _backend.Stream, ref a);
        var s = new CudaKernelArgs();
        s.Ptr(_rowSteps[i]!.Value.Pointer); s.Ptr(pids); s.I32(numRows); s.Ptr(scale);
        _backend.Ops.Launch("optimizer.cu", "mtfm_row_steps_increment", Grid(numRows), 256, 0, _backend.Stream, ref s);
    }

    private static uint Grid(long work) => (uint)Math.Clamp((work + 255) / 256, 1, 4096);

    private DeviceBuffer Zeroed(long bytes)
    {
        var b = _backend.Pool.Rent(Math.Max(4, bytes));
        Driver.MemsetD32Async(b.Pointer, 0, Math.Max(1, bytes / 4), _backend.Stream);
        return b;
    }

    /// <summary>
    /// The optimizer state of parameter <paramref name="index"/> copied to the host in the CPU optimizers' form
    /// (synchronises; for checkpoints): AdamW moments and step count for a dense parameter, moments and per-row step
    /// counts for an embedding table, none before its first update.
    /// </summary>
    public (AdamWState? Dense, RowSparseAdamState? Sparse) ExportState(int index)
    {
        if (_m[index] is not { } m || _v[index] is not { } v) return (null, null);
        var p = _parameters[index];
        if (p.SparseGrad)
        {
            var s = new RowSparseAdamState(p.Value.RowCount, checked((int)p.Value.RowLength));
            _backend.DownloadRaw<float>(m.Pointer, s.FirstMoment);
            _backend.DownloadRaw<float>(v.Pointer, s.SecondMoment);
            _backend.DownloadRaw<int>(_rowSteps[index]!.Value.Pointer, s.RowSteps);
            return (null, s);
        }
        var d = new AdamWState(checked((int)p.Value.Length)) { Step = _steps[index] };
        _backend.DownloadRaw<float>(m.Pointer, d.FirstMoment);
        _backend.DownloadRaw<float>(v.Pointer, d.SecondMoment);
        return (d, null);
    }

    /// <summary>Replaces the optimizer state of parameter <paramref name="index"/> by <see cref="ExportState"/>'s form (both null: none).</summary>
    /// <exception cref="ArgumentException">The state's kind or size does not fit the parameter.</exception>
    public void ImportState(int index, AdamWState? dense, RowSparseAdamState? sparse)
    {
        var p = _parameters[index];
        if (p.SparseGrad ? dense is not null : sparse is not null)
            throw new ArgumentException($"parameter {p.Name}: {(p.SparseGrad ? "an embedding table takes row-sparse Adam state" : "a dense parameter takes AdamW state")}.");
        foreach (var b in new[] { _m[index], _v[index], _rowSteps[index] })
            if (b is { } buf) _backend.ReturnToPool(buf);
        _m[index] = _v[index] = _rowSteps[index] = null;
        _steps[index] = 0;
        long n = p.Value.Length;
        if (dense is not null)
        {
            if (dense.FirstMoment.Length != n) throw new ArgumentException($"parameter {p.Name}: state of {dense.FirstMoment.Length} elements, the parameter has {n}.");
            _m[index] = Uploaded(dense.FirstMoment);
            _v[index] = Uploaded(dense.SecondMoment);
            _steps[index] = dense.Step;
        }
        else if (sparse is not null)
        {
            if ((long)sparse.Rows * sparse.Dim != n) throw new ArgumentException($"parameter {p.Name}: state of {sparse.Rows}×{sparse.Dim}, the parameter has {n} elements.");
            _m[index] = Uploaded(sparse.FirstMoment);
            _v[index] = Uploaded(sparse.SecondMoment);
            _rowSteps[index] = Uploaded(sparse.RowSteps);
        }
    }

    private DeviceBuffer Uploaded<T>(T[] values) where T : unmanaged
    {
        var b = _backend.Pool.Rent(Math.Max(4, (long)values.Length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>()));
        _backend.UploadRaw<T>(values, b.Pointer, CudaUploadCategory.OptimizerState);
        return b;
    }

    /// <summary>Host copies of every parameter (synchronises: used when validation finds a new best).</summary>
    public float[][] Snapshot()
    {
        var s = new float[_parameters.Count][];
        for (int i = 0; i < s.Length; i++) s[i] = _backend.ToHost<float>(_parameters[i].Value);
        return s;
    }

    /// <summary>Uploads a <see cref="Snapshot"/> back into the parameters.</summary>
    public void Restore(float[][] snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        for (int i = 0; i < snapshot.Length; i++) _backend.Upload<float>(snapshot[i], _parameters[i].Value);
    }
}
