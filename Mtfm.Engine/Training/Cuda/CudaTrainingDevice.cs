using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Training.Cuda;

/// <summary>
/// Training on a <see cref="CudaBackend"/> without host synchronisation inside a step: <see cref="CudaOptimizerStep"/>,
/// losses summed on the device and read back asynchronously (<see cref="CudaLossReadback"/>), the next batch's inputs
/// uploaded on the copy stream while this step runs (<see cref="CudaBatchPrefetch"/>). A step whose loss or a gradient is
/// not finite is skipped on the device (<see cref="CudaOptimizerStep.Guard"/>) and reported with its loss window, up to
/// one window late. Checkpoints copy the weights and the optimizer state to the host in the
/// CPU's form (<see cref="CudaOptimizerStep.ExportState"/>): one checkpoint format for both devices.
/// </summary>
internal sealed class CudaTrainingDevice(CudaBackend backend, IReadOnlyList<Parameter> parameters) : TrainingDevice
{
    private readonly CudaOptimizerStep _step = new(backend, parameters);

    public override IOptimizerStep Step => _step;

    /// <summary>The host only enqueues work during a step: a core is free.</summary>
    public override bool FreeCoreForBatches => true;

    public override LossReadback NewLossReadback() => new CudaLossReadback(backend, _step);

    public override IEnumerable<StagedBatch> Stage(IEnumerable<JaggedBatch> batches, DataLayout layout, MtfmConfig config) =>
        CudaBatchPrefetch.StageAhead(backend, layout, batches, model: config);

    /// <summary>Runs the step's guard on the device (<see cref="CudaOptimizerStep.Guard"/>); the verdict reaches the host
    /// with the loss window, so this returns null and the trainer learns of skipped steps from the readback.</summary>
    public override string? NonFinite(Tensor loss)
    {
        _step.Guard(loss);
        return null;
    }

    protected override IReadOnlyList<Parameter> Parameters => parameters;

    protected override ReadOnlySpan<float> HostValue(Tensor t) => backend.ToHost<float>(t);

    protected override void SetValue(Tensor t, ReadOnlySpan<float> value) => backend.Upload(value, t);

    protected override (AdamWState? Dense, RowSparseAdamState? Sparse) OptimizerState(int index) => _step.ExportState(index);

    protected override void SetOptimizerState(int index, AdamWState? dense, RowSparseAdamState? sparse) => _step.ImportState(index, dense, sparse);
}
