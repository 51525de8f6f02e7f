using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends.Cuda;

internal sealed unsafe partial class CudaBackend
{
    private int AffineParams(Tensor? gamma, Tensor? beta, int cols, out ulong pg, out ulong pb)
    {
        pg = 0;
        pb = 0;
        if (gamma is null && beta is null) return 0;
        if (gamma is null || beta is null) throw new ArgumentException("gamma and beta must both be given or both be null.", gamma is null ? nameof(gamma) : nameof(beta));
        pg = F(gamma, nameof(gamma));
        pb = F(beta, nameof(beta));
        if (gamma.LastDim != cols || gamma.Length % cols != 0)
            throw new ArgumentException($"gamma {gamma.ShapeString} must be [groups, {cols}] (the feature width of x).", nameof(gamma));
        if (!beta.SameShape(gamma)) throw new ArgumentException($"beta {beta.ShapeString} must have gamma's shape {gamma.ShapeString}.", nameof(beta));
        return (int)(gamma.Length / cols);
    }

    /// <summary>Validates group ids on the host mirror; returns their values (empty when null).</summary>
    private ReadOnlySpan<long> CheckGroupIds(Tensor? groupIds, int rows, int groups, bool affine)
    {
        if (groupIds is null) return default;
        if (!affine) throw new ArgumentException("groupIds were given to a LayerNorm without gamma/beta.", nameof(groupIds));
        I(groupIds, nameof(groupIds));
        if (groupIds.Length != rows) throw new ArgumentException($"groupIds {groupIds.ShapeString} must hold {rows} elements (one per row of x).", nameof(groupIds));
        var ids = IndexValues(groupIds);
        for (int i = 0; i < ids.Length; i++)
            if ((ulong)ids[i] >= (ulong)groups)
                throw new ArgumentOutOfRangeException(nameof(groupIds), ids[i], $"groupIds[{i}] = {ids[i]} is outside [0, {groups}) (gamma has {groups} groups).");
        return ids;
    }

    /// <summary>An Int32 device copy of group ids when they are Int64 (the group kernels read int); else the tensor itself.</summary>
    private ulong GroupIdsInt32(Tensor? groupIds, out DeviceBuffer? scratch)
    {
        scratch = null;
        if (groupIds is null) return 0;
        if (groupIds.DType == DType.Int32) return Ptr(groupIds);
        long n = groupIds.Length;
        var b = Scratch(n * sizeof(int));
        scratch = b;
        ulong src = Ptr(groupIds);
        Launch1D("rows.cu", "mtfm_index_i64_to_i32", n, (ref CudaKernelArgs a) => { a.Ptr(src); a.Ptr(b.Pointer); a.I64(n); });
        return b.Pointer;
    }

    /// <inheritdoc />
    public void LayerNorm(Tensor x, Tensor? gamma, Tensor? beta, Tensor? groupIds, float eps, Tensor y, Tensor mean, Tensor rstd)
    {
        ulong px = F(x, nameof(x)), py = F(y, nameof(y)), pm = F(mean, nameof(mean)), pr = F(rstd, nameof(rstd));
        var (rows, cols) = Matrix(x);
        CheckSameLength(x, y, nameof(y));
        if (mean.Length != rows) throw new ArgumentException($"mean {mean.ShapeString} must hold {rows} elements.", nameof(mean));
        if (rstd.Length != rows) throw new ArgumentException($"rstd {rstd.ShapeString} must hold {rows} elements.", nameof(rstd));
        if (!(eps > 0f)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "eps must be > 0.");
        int groups = AffineParams(gamma, beta, cols, out ulong pg, out ulong pb);
        CheckGroupIds(groupIds, rows, groups, gamma is not null);
        if (rows == 0 || cols == 0) return;
        ulong pid = GroupIdsInt32(groupIds, out var scratch);
        Ops.GroupLayerNormForward(px, pid, pg, pb, py, pm, pr, rows, cols, Math.Max(groups, 1), eps, _stream);
        if (scratch is { } s) Release(s);
    }

    /// <inheritdoc />
    public void LayerNormBackward(Tensor x, Tensor mean, Tensor rstd, Tensor? gamma, Tensor? groupIds, Tensor dy,
        Tensor? dx, Tensor? dgamma, Tensor? dbeta)
    {
        ulong px = F(x, nameof(x)), pm = F(mean, nameof(mean)), pr = F(rstd, nameof(rstd)), pdy = F(dy, nameof(dy));
        var (rows, cols) = Matrix(x);
        CheckSameLength(x, dy, nameof(dy));
        if (mean.Length != rows) throw new ArgumentException($"mean {mean.ShapeString} must hold {rows} elements.", nameof(mean));
        if (rstd.Length != rows) throw new ArgumentException($"rstd {rstd.ShapeString} must hold {rows} elements.", nameof(rstd));
        ulong pg = 0;
        int groups = 1;
        if (gamma is not null)
        {
            pg = F(gamma, nameof(gamma));
            if (gamma.LastDim != cols || gamma.Length % cols != 0) throw new ArgumentException($"gamma {gamma.ShapeString} must be [groups, {cols}].", nameof(gamma));
            groups = (int)(gamma.Length / cols);
        }
        var ids = CheckGroupIds(groupIds, rows, groups, gamma is not null);
        ulong pdx = 0, pdg = 0, pdb = 0;
        if (dx is not null)
        {
            pdx = F(dx, nameof(dx));
            CheckSameLength(x, dx, nameof(dx));
        }
        if (dgamma is not null || dbeta is not null)
        {
            if (gamma is null) throw new ArgumentException("dgamma/dbeta need gamma (the LayerNorm was not affine).", nameof(gamma));
            if (dgamma is not null)
            {
                pdg = F(dgamma, nameof(dgamma));
                if (dgamma.Length != gamma.Length) throw new ArgumentException($"dgamma {dgamma.ShapeString} must have gamma's shape {gamma.ShapeString}.", nameof(dgamma));
            }
            if (dbeta is not null)
            {
                pdb = F(dbeta, nameof(dbeta));
                if (dbeta.Length != gamma.Length) throw new ArgumentException($"dbeta {dbeta.ShapeString} must have gamma's shape {gamma.ShapeString}.", nameof(dbeta));
            }
        }
        if (cols == 0) return;
        ulong pid = GroupIdsInt32(groupIds, out var idScratch);
        if (pdx != 0) Ops.GroupLayerNormBackwardInput(pdy, px, pid, pg, pm, pr, pdx, rows, cols, groups, accumulate: true, _stream);
        if (pdg != 0 || pdb != 0)
        {
            // Tokens sorted by group on the host (stable counting sort of the mirrored ids): one thread per
            // (group, feature) sums its tokens in order — deterministic, no atomics, no device round trip.
            var offsets = new int[groups + 1];
            for (int i = 0; i < rows; i++) offsets[(ids.IsEmpty ? 0 : ids[i]) + 1]++;
            for (int g = 0; g < groups; g++) offsets[g + 1] += offsets[g];
            var order = new int[rows + groups + 1];
            var cursor = (int[])offsets.Clone();
            for (int i = 0; i < rows; i++) order[cursor[ids.IsEmpty ? 0 : ids[i]]++] = i;
            offsets.CopyTo(order, rows);
            var meta = ScratchInts(order, CudaUploadCategory.GroupLayerNormGradientSort);
            // The kernel writes both outputs: a missing one goes to scratch.
            DeviceBuffer? spare = null;
            if (pdg == 0 || pdb == 0)
            {
                spare = Scratch(gamma!.Length * sizeof(float));
                if (pdg == 0) pdg = spare.Value.Pointer;
                else pdb = spare.Value.Pointer;
            }
            Ops.GroupLayerNormBackwardParams(pdy, px, meta.Pointer, meta.At<int>(rows), pm, pr, pdg, pdb, groups, cols, accumulate: true, _stream);
            Release(meta);
            if (spare is { } sp) Release(sp);
        }
        if (idScratch is { } s) Release(s);
    }
}
