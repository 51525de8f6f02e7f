using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Training.Cuda;

/// <summary>
/// Training on a <see cref="CudaBackend"/> without host synchronisation inside a step: <see cref="CudaOptimizerStep"/>,
/// losses summed on the device and read back asynchronously (<see cref="CudaLossReadback"/>), the next batch's inputs
/// uploaded on the copy stream while this step runs (<see cref="CudaBatchPrefetch"/>). A non-finite loss surfaces
/// through the readback (up to one window late); the optimizer state is not exported, so checkpoints and resume are
/// not available on this device yet.
/// </summary>
internal sealed class CudaTrainingDevice(CudaBackend backend, IReadOnlyList<Parameter> parameters) : TrainingDevice
{
    private readonly CudaOptimizerStep _step = new(backend, parameters);

    public override IOptimizerStep Step => _step;

    public override LossReadback NewLossReadback() => new CudaLossReadback(backend);

    public override IEnumerable<StagedBatch> Stage(IEnumerable<JaggedBatch> batches, DataLayout layout, MtfmConfig config) =>
        CudaBatchPrefetch.StageAhead(backend, layout, batches, model: config);

    public override string? NonFinite(Tensor loss) => null;

    public override bool SupportsCheckpoints => false;

    public override void AddState(SafetensorsWriter w, float[][]? best) => throw Unsupported();

    public override float[][]? LoadState(SafetensorsFile f) => throw Unsupported();

    private static NotSupportedException Unsupported() =>
        new("training checkpoints and resume are implemented for the CPU backend only; the CUDA optimizer state is not exported yet.");
}
