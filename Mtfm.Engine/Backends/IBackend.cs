using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends;

/// <summary>
/// The seam between autograd/ops and a compute device. A backend owns allocation, host⇄backend copies and every
/// primitive kernel, forward and backward. Ops never touch storage memory themselves, so a device backend (CUDA:
/// device pointers, streams, kernels that run asynchronously) implements exactly this interface.
/// <para>Conventions: all tensors are contiguous row-major and belong to this backend. "Rows" means the first
/// dimension, the "feature axis" the last; a tensor of rank r is treated as <c>[RowCount, RowLength]</c> where a kernel
/// says so. Kernels whose name ends in <c>Backward</c>, and every parameter called <c>accumulate</c> when true, ADD
/// into their gradient outputs (gradients accumulate); everything else overwrites. Scalars that live on the backend
/// (a loss, the gradient of a loss) are rank-1 tensors of one element, read by the kernels without a host round trip.
/// Index tensors are Int32 or Int64. Reductions are deterministic for a fixed thread count / launch configuration.</para>
/// </summary>
internal interface IBackend : IDisposable
{
    /// <summary>Short name (<c>cpu</c>, <c>cuda</c>).</summary>
    string Name { get; }

    // ---------------------------------------------------------------- memory

    /// <summary>Allocates an owning tensor; contents are undefined unless <paramref name="zero"/>.</summary>
    Tensor Allocate(DType dtype, ReadOnlySpan<int> shape, bool zero = false);

    /// <summary>Number of storages allocated and not yet freed.</summary>
    long LiveAllocations { get; }

    /// <summary>Bytes allocated and not yet freed.</summary>
    long LiveBytes { get; }

    /// <summary>Copies host data into <paramref name="dst"/> (element type must match its dtype, lengths equal).</summary>
    void Upload<T>(ReadOnlySpan<T> src, Tensor dst) where T : unmanaged;

    /// <summary>Copies <paramref name="src"/> to host memory (synchronises with pending work on a device).</summary>
    void Download<T>(Tensor src, Span<T> dst) where T : unmanaged;

    /// <summary>dst = src (same length; same dtype, or Int32⇄Int64 index conversion with a range check).</summary>
    void Copy(Tensor src, Tensor dst);

    /// <summary>Sets every element of an fp32 tensor to <paramref name="value"/>.</summary>
    void Fill(Tensor dst, float value);

    // ---------------------------------------------------------------- GEMM

    /// <summary>C = alpha·op(A)·op(B) + beta·C for rank-2 tensors; op(A) [m,k], op(B) [k,n], C [m,n].</summary>
    void Gemm(bool transA, bool transB, float alpha, Tensor a, Tensor b, float beta, Tensor c);

    /// <summary>Batched <see cref="Gemm"/> over the first axis of rank-3 tensors: A [bt,·,·], B [bt,·,·], C [bt,m,n].</summary>
    void BatchedGemm(bool transA, bool transB, float alpha, Tensor a, Tensor b, float beta, Tensor c);

    // ---------------------------------------------------------------- element-wise (same length unless said)

    /// <summary>y = a + b.</summary>
    void Add(Tensor a, Tensor b, Tensor y);

    /// <summary>y = a ⊙ b.</summary>
    void Mul(Tensor a, Tensor b, Tensor y);

    /// <summary>y += a ⊙ b (the backward of <see cref="Mul"/>).</summary>
    void MulAccumulate(Tensor a, Tensor b, Tensor y);

    /// <summary>y = alpha·x.</summary>
    void Scale(Tensor x, float alpha, Tensor y);

    /// <summary>y += alpha·x.</summary>
    void Axpy(float alpha, Tensor x, Tensor y);

    /// <summary>y[i,:] = x[i,:] + bias for x, y [n,d] and bias [d].</summary>
    void AddBias(Tensor x, Tensor bias, Tensor y);

    /// <summary>y = x·sigmoid(x).</summary>
    void Silu(Tensor x, Tensor y);

    /// <summary>dx += dy·σ(x)·(1 + x·(1−σ(x))).</summary>
    void SiluBackward(Tensor x, Tensor dy, Tensor dx);

    /// <summary>
    /// y[:, yCol..yCol+cols) = SiLU(x[:, xCol..xCol+cols)) for x [n,dx], y [n,dy] (y must not be x): the SiLU of a column
    /// range written straight into its part, instead of a full SiLU then a split. Each element equals <see cref="Silu"/>'s.
    /// </summary>
    void SiluColumns(Tensor x, int xCol, Tensor y, int yCol, int cols);

    /// <summary>
    /// dx[:, dxCol..+cols) (+)= dy[:, dyCol..+cols)·SiLU'(x[:, xCol..+cols)): the backward of <see cref="SiluColumns"/>;
    /// without <paramref name="accumulate"/> the columns are overwritten (the same bits as adding into zeros).
    /// </summary>
    void SiluColumnsBackward(Tensor x, int xCol, Tensor dy, int dyCol, Tensor dx, int dxCol, int cols, bool accumulate);

    /// <summary>
    /// <see cref="SiluColumns"/> of consecutive column ranges in one call: parts[i] [n, w_i] = SiLU of columns
    /// [w_0 + … + w_(i−1), + w_i) of x [n, Σ w] (no part may be x). A backend may pass over each row of x once instead of
    /// once per part; each element equals <see cref="Silu"/>'s.
    /// </summary>
    void SiluSplit(Tensor x, Tensor[] parts);

    /// <summary>
    /// The backward of <see cref="SiluSplit"/>: for each part i with a gradient (<paramref name="partGrads"/>[i] [n, w_i],
    /// w_i = <paramref name="widths"/>[i]), dx's columns of that part (+)= partGrads[i]·SiLU'(x) as
    /// <see cref="SiluColumnsBackward"/> does; the columns of a part without one (null) are left as they are.
    /// </summary>
    void SiluSplitBackward(Tensor x, int[] widths, Tensor?[] partGrads, Tensor dx, bool accumulate);

    // ---------------------------------------------------------------- reductions

    /// <summary>y[0] = alpha·Σ x (y has one element).</summary>
    void SumAll(Tensor x, float alpha, Tensor y);

    /// <summary>dx += alpha·dy[0] for every element (the backward of <see cref="SumAll"/>).</summary>
    void AddScalar(Tensor dy, float alpha, Tensor dx);

    /// <summary>y[i] = alpha·Σ_j x[i,j] for x [n,d], y [n] (sum over the feature axis).</summary>
    void SumLastAxis(Tensor x, float alpha, Tensor y);

    /// <summary>dx[i,j] += alpha·dy[i] (the backward of <see cref="SumLastAxis"/>).</summary>
    void SumLastAxisBackward(Tensor dy, float alpha, Tensor dx);

    /// <summary>y[j] (+)= Σ_i x[i,j] for x [n,d], y [d] (sum over rows: the bias gradient).</summary>
    void SumRows(Tensor x, Tensor y, bool accumulate);

    // ---------------------------------------------------------------- normalisation

    /// <summary>
    /// (Group) LayerNorm over the feature axis of x [n,d]: y = (x−μ)·rstd·γ[g] + β[g], with mean/rstd [n] saved.
    /// gamma/beta are [G,d] (or [d] = one group) or null (no affine). groupIds [n] selects the row g of each token;
    /// null means group 0. Ids outside [0,G) throw naming <c>groupIds</c>, the value and its position.
    /// </summary>
    void LayerNorm(Tensor x, Tensor? gamma, Tensor? beta, Tensor? groupIds, float eps, Tensor y, Tensor mean, Tensor rstd);

    /// <summary>Backward of <see cref="LayerNorm"/>: dx (if not null), dgamma, dbeta (per group) accumulate.</summary>
    void LayerNormBackward(Tensor x, Tensor mean, Tensor rstd, Tensor? gamma, Tensor? groupIds, Tensor dy,
        Tensor? dx, Tensor? dgamma, Tensor? dbeta);

    /// <summary>
    /// z = LN(o) ⊙ u (plain LayerNorm over the last axis, o, u, z [n, w]), writing o's row statistics into mean and rstd.
    /// The default composes <see cref="LayerNorm"/> and <see cref="Mul"/> through a scratch LN(o); a backend may fuse
    /// them (the CPU does, with the same bits).
    /// </summary>
    void LayerNormMul(Tensor o, Tensor u, float eps, Tensor z, Tensor mean, Tensor rstd)
    {
        using var ln = Allocate(DType.Float32, o.Shape);
        LayerNorm(o, null, null, null, eps, ln, mean, rstd);
        Mul(ln, u, z);
    }

    /// <summary>
    /// Backward of <see cref="LayerNormMul"/> from the saved row statistics: du (null = none) (+)= dz ⊙ LN(o) and dO
    /// (null = none) (+)= LayerNorm's backward of dz ⊙ u, each added to (accumulate) or written (its old contents never
    /// read). The default composes LayerNorm, Mul and <see cref="LayerNormBackward"/> (LN(o) recomputed with
    /// <paramref name="eps"/>); the CPU fuses them per row with the same bits.
    /// </summary>
    void LayerNormMulBackward(Tensor o, Tensor u, Tensor mean, Tensor rstd, float eps, Tensor dz,
        Tensor? du, bool accumulateDu, Tensor? dO, bool accumulateDo)
    {
        using var ln = Allocate(DType.Float32, o.Shape);
        LayerNorm(o, null, null, null, eps, ln, mean, rstd); // the same values again
        using var dln = Allocate(DType.Float32, o.Shape);
        Mul(dz, u, dln);
        if (du is not null) { if (accumulateDu) MulAccumulate(dz, ln, du); else Mul(dz, ln, du); }
        if (dO is null) return;
        if (!accumulateDo) Fill(dO, 0f);
        LayerNormBackward(o, mean, rstd, null, null, dln, dO, null, null);
    }

    // ---------------------------------------------------------------- softmax and loss

    /// <summary>Softmax over the feature axis of x [n,d].</summary>
    void Softmax(Tensor x, Tensor y);

    /// <summary>dx += y ⊙ (dy − Σ_j dy·y) per row.</summary>
    void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx);

    /// <summary>
    /// loss[0] = Σ mask·(max(z,0) − z·t + log(1+e^−|z|)) / Σ mask over logits z, labels t and mask (0 or 1, all of
    /// one length); 0 when no label is present.
    /// </summary>
    void BceWithLogits(Tensor logits, Tensor labels, Tensor mask, Tensor loss);

    /// <summary>dlogits += dloss[0]·mask·(σ(z) − t)/Σ mask.</summary>
    void BceWithLogitsBackward(Tensor logits, Tensor labels, Tensor mask, Tensor dloss, Tensor dlogits);

    // ---------------------------------------------------------------- rows and columns

    /// <summary>
    /// dst[i,:] = src[index[i],:] for src [n,d], index [m], dst [m,d] (embedding lookup, token selection). An index
    /// outside [0,n) throws naming <paramref name="indexName"/>, the value and its position.
    /// </summary>
    void GatherRows(Tensor src, Tensor index, Tensor dst, string indexName = "index");

    /// <summary>dst[index[i],:] += src[i,:]; duplicates are summed in ascending i (deterministic).</summary>
    void ScatterAddRows(Tensor src, Tensor index, Tensor dst, string indexName = "index");

    /// <summary>dst[index[i],:] = src[i,:]; index must not repeat.</summary>
    void ScatterRows(Tensor src, Tensor index, Tensor dst, string indexName = "index");

    /// <summary>dst[index[i],:] = value for every i.</summary>
    void FillRows(Tensor dst, Tensor index, float value, string indexName = "index");

    /// <summary>
    /// The distinct values of <paramref name="index"/> in ascending order (Int32 [u]) and, for each position, the slot of
    /// its value among them (Int32 [m]). Both tensors are newly allocated and owned by the caller.
    /// </summary>
    (Tensor Unique, Tensor Inverse) UniqueIndices(Tensor index);

    /// <summary>
    /// dst[:, dstCol..dstCol+cols) (+)= src[:, srcCol..srcCol+cols) for src [n,ds], dst [n,dd]: concat and split.
    /// </summary>
    void CopyColumns(Tensor src, int srcCol, Tensor dst, int dstCol, int cols, bool accumulate);

    // ---------------------------------------------------------------- fused jagged HSTU attention (spec §4–5)

    /// <summary>
    /// Pointwise HSTU attention with the MTFM visibility rule, the relative time bias and GQA, for one jagged batch.
    /// Queries are every token (<paramref name="targetQueries"/> false: q and o have one row per token) or the T tokens
    /// of <paramref name="layout"/> (q and o have one row per T token, in token order). q [rows, h·dqk], k [N, g·dqk],
    /// v [N, g·dv], rab [h, 2·NB − 1], o [rows, h·dv] (overwritten); h = <paramref name="heads"/>, g = <paramref name="kvHeads"/>.
    /// </summary>
    void HstuAttention(AttentionLayout layout, bool targetQueries, int heads, int kvHeads,
        Tensor q, Tensor k, Tensor v, Tensor rab, Tensor o);

    /// <summary>
    /// Backward of <see cref="HstuAttention"/>: from dO, ADDS into dq, dk, dv and drab (any of them may be null when not
    /// needed). With <paramref name="overwrite"/>, dq, dk and dv are written instead (every element; their old contents
    /// are never read, so fresh unzeroed buffers do); drab still accumulates.
    /// </summary>
    void HstuAttentionBackward(AttentionLayout layout, bool targetQueries, int heads, int kvHeads,
        Tensor q, Tensor k, Tensor v, Tensor rab, Tensor dO, Tensor? dq, Tensor? dk, Tensor? dv, Tensor? drab, bool overwrite = false);
}
