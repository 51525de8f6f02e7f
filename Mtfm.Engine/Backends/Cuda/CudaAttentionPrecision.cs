namespace Mtfm.Engine.Backends.Cuda;

/// <summary>Arithmetic of the CUDA attention forward (<see cref="CudaBackend.AttentionPrecision"/>).</summary>
internal enum CudaAttentionPrecision
{
    /// <summary>fp32 CUDA-core FMA (<c>hstu_attention.cu</c>); the default.</summary>
    Fp32 = 0,

    /// <summary>
    /// bf16 tensor cores with fp32 accumulation (<c>hstu_attention_bf16.cu</c>): Q, K, V and the attention weights
    /// rounded to bf16 for the two products; storage, bias, SiLU, mask and normalisation stay fp32. The backward
    /// stays fp32 (it recomputes from the fp32 Q/K/V).
    /// </summary>
    Bf16 = 1,
}
