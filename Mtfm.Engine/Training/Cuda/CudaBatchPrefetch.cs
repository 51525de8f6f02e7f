using Mtfm.Engine.Autograd;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;

using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Native;

namespace Mtfm.Engine.Training.Cuda;

/// <summary>
/// One batch's inputs (<see cref="BatchInputs"/>, and its attention layout's device cache) uploaded ahead on the
/// <see cref="CudaBackend"/>'s copy stream, in a scope of their own; handed to the model's forward on that batch
/// (<see cref="Inputs"/>, <c>MtfmModel.Forward(tape, batch, staged: …)</c>) it takes them instead of uploading again, and
/// taking them makes the compute stream wait (on the device) for the copy stream. Dispose after the step that used
/// them has been enqueued (their pooled memory is then stream-ordered behind that step).
/// </summary>
internal sealed class CudaBatchPrefetch : IDisposable
{
    private readonly JaggedBatch _batch;
    private readonly Tape _tape;
    private readonly CudaBackend _backend;
    private readonly nint _done;
    private bool _disposed;

    /// <summary>
    /// Stages <paramref name="batch"/>'s inputs for <paramref name="layout"/> on the copy stream. With
    /// <paramref name="model"/> (the configuration of the model that will train on the batch) the attention layout
    /// gets the model's time buckets and the tilings its layers will ask for (<see cref="AttentionTilings"/>) ride
    /// along; without it the layout has the default bucket count and the tilings are built at the first attention call,
    /// on the compute stream.
    /// </summary>
    public CudaBatchPrefetch(CudaBackend backend, JaggedBatch batch, DataLayout layout, MtfmConfig? model = null)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(layout);
        _batch = batch;
        _backend = backend;
        _tape = new Tape(backend, gradEnabled: false);
        BatchInputs inputs;
        backend.BeginCopyStreamUploads();
        try
        {
            inputs = new BatchInputs(_tape, batch, layout, model?.TimeBuckets ?? MtfmConfig.DefaultTimeBuckets);
            // kinds, times and T list ride along, and the tilings the model's attention layers will use
            backend.StageAttentionLayout(inputs.Attention, model is null ? null : AttentionTilings(model, precision: backend.AttentionPrecision));
        }
        catch
        {
            backend.WaitForCopies(backend.EndCopyStreamUploads()); // order the memory's reuse behind what was copied
            _tape.Dispose();
            throw;
        }
        _done = backend.EndCopyStreamUploads();
        inputs.MarkStaged(layout, () => { Taken = true; backend.WaitForCopies(_done); });
        Inputs = inputs;
    }

    /// <summary>The batch these inputs were staged for.</summary>
    public JaggedBatch Batch => _batch;

    /// <summary>The staged inputs, to hand to the forward on <see cref="Batch"/>.</summary>
    public BatchInputs Inputs { get; }

    /// <summary>
    /// The attention tilings (query form, tile size) a training step of a model with <paramref name="config"/> asks
    /// the layout cache for: for each form its layers use (full: every token queries; target: the T tokens), the
    /// forward's tile size and, with <paramref name="backward"/>, the backward's — from the backend's own tile-size
    /// functions, the head widths <c>Dqk</c>, <c>Dv</c> and the forward kernel <paramref name="precision"/> selects.
    /// </summary>
    public static IReadOnlyList<(bool TargetQueries, int TileSize)> AttentionTilings(MtfmConfig config, bool backward = true,
        CudaAttentionPrecision precision = CudaAttentionPrecision.Fp32)
    {
        ArgumentNullException.ThrowIfNull(config);
        var tilings = new List<(bool, int)>();
        for (int layer = 0; layer < config.Layers; layer++)
        {
            bool target = !config.IsFullLayer(layer);
            int fwd = CudaBackend.AttentionForwardTileSize(config.Dqk, config.Dv, precision);
            if (!tilings.Contains((target, fwd))) tilings.Add((target, fwd));
            if (!backward) continue;
            int bwd = CudaBackend.AttentionBackwardTileSize(config.Dqk, config.Dv);
            if (!tilings.Contains((target, bwd))) tilings.Add((target, bwd));
        }
        return tilings;
    }

    /// <summary>True once a forward pass took the staged inputs.</summary>
    public bool Taken { get; private set; }

    /// <summary>
    /// Yields <paramref name="batches"/> in order, each one's inputs already staged, and the next batch's inputs staged
    /// before the current one is yielded (so its copy overlaps the current step). Each staging is disposed when the
    /// consumer moves past its batch. When the consumer moves past a batch (its step is enqueued) an event is recorded on
    /// the compute stream; if more than <paramref name="maxStepsInFlight"/> steps are then still running on the device,
    /// the host waits for the oldest (a counted event synchronisation at the step boundary: back-pressure that bounds the
    /// pinned ring; it never happens while the device keeps up). <paramref name="model"/>: see the constructor.
    /// </summary>
    public static IEnumerable<StagedBatch> StageAhead(CudaBackend backend, DataLayout layout, IEnumerable<JaggedBatch> batches,
        int maxStepsInFlight = DefaultMaxStepsInFlight, MtfmConfig? model = null)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(batches);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxStepsInFlight, 1);
        var driver = backend.Driver;
        var inFlight = new Queue<nint>();
        var freeEvents = new Stack<nint>();
        CudaBatchPrefetch? current = null, next = null;
        try
        {
            foreach (var b in batches)
            {
                next = new CudaBatchPrefetch(backend, b, layout, model);
                if (current is not null)
                {
                    yield return new StagedBatch(current._batch, current.Inputs);
                    StepEnqueued();
                    current.Dispose();
                }
                current = next;
                next = null;
            }
            if (current is not null) yield return new StagedBatch(current._batch, current.Inputs);
        }
        finally
        {
            next?.Dispose();
            current?.Dispose();
            if (!backend.IsDisposed)
            {
                foreach (var e in inFlight) driver.DestroyEvent(e); // destroying a pending event is allowed
                foreach (var e in freeEvents) driver.DestroyEvent(e);
            }
        }

        void StepEnqueued()
        {
            while (inFlight.TryPeek(out var oldest) && driver.IsEventComplete(oldest)) freeEvents.Push(inFlight.Dequeue());
            if (!freeEvents.TryPop(out var evt)) evt = driver.CreateEvent();
            driver.RecordEvent(evt, backend.Stream);
            inFlight.Enqueue(evt);
            if (inFlight.Count > maxStepsInFlight)
            {
                var oldest = inFlight.Dequeue();
                driver.SynchronizeEvent(oldest);
                freeEvents.Push(oldest);
            }
        }
    }

    /// <summary>Steps the host may run ahead of the device before <see cref="StageAhead"/> waits.</summary>
    public const int DefaultMaxStepsInFlight = 8;

    /// <summary>Frees the inputs (ordered behind their copies when no forward took them).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        // Never taken: the compute stream has not waited for these copies yet, but may reuse the memory once it is
        // back in the pool. Order it behind the copies (a device-side wait, no host synchronisation).
        if (!Taken && !_backend.IsDisposed) _backend.WaitForCopies(_done);
        _tape.Dispose();
    }
}

/// <summary>A batch of a training epoch and, on CUDA, its inputs staged ahead (null: the forward uploads them).</summary>
internal readonly record struct StagedBatch(JaggedBatch Batch, BatchInputs? Inputs);
