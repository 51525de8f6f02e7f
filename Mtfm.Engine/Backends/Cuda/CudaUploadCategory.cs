namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// What a host-to-device upload of the CUDA backend carries, named at its call site. The stream scheduler's test checks
/// the categories of the compute-stream uploads inside a staged training step (docs/cuda.md, "Stream scheduler"):
/// batch inputs and the attention layout must come through the copy stream; the categories marked "unavoidable" are
/// host data computed at the op and may stay on the compute stream.
/// </summary>
internal enum CudaUploadCategory
{
    /// <summary>A tensor's contents through <see cref="IBackend.Upload{T}"/>: batch inputs, constants, weights.</summary>
    Tensor,
    /// <summary>The attention layout (token kinds, times, T list) and its tilings.</summary>
    AttentionLayout,
    /// <summary>Unavoidable: the sort metadata of a row scatter-add, derived from the index contents at the op.</summary>
    ScatterAddSortMetadata,
    /// <summary>Unavoidable: the group order of the Group LayerNorm gradient, derived at the op.</summary>
    GroupLayerNormGradientSort,
    /// <summary>Unavoidable: the unique ids and inverse map of an index, computed on the host mirror.</summary>
    UniqueIndices,
    /// <summary>Unavoidable: the optimizer's per-step pointer and offset tables.</summary>
    OptimizerTables,
    /// <summary>Optimizer moments and step counts restored from a training checkpoint (at a resume, outside any step).</summary>
    OptimizerState,
}
