using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends.Cuda;

internal sealed unsafe partial class CudaBackend
{
    /// <summary>Validates an index tensor against [0, limit) on its host mirror; throws naming the bad position.</summary>
    private ReadOnlySpan<long> CheckIndex(Tensor index, string indexName, long limit, string limitWhat)
    {
        I(index, indexName);
        var v = IndexValues(index);
        for (int i = 0; i < v.Length; i++)
            if ((ulong)v[i] >= (ulong)limit)
                throw new ArgumentOutOfRangeException(indexName, v[i], $"{indexName}[{i}] = {v[i]} is outside [0, {limit}) ({limitWhat}).");
        return v;
    }

    private static void CheckRowShapes(Tensor rowsSide, Tensor indexed, Tensor index, string rowsName, string indexedName, string indexName)
    {
        if (rowsSide.Rank < 1 || indexed.Rank < 1) throw new ArgumentException($"{rowsName} and {indexedName} must have rank ≥ 1.", rowsName);
        if (rowsSide.RowLength != indexed.RowLength)
            throw new ArgumentException($"{rowsName} {rowsSide.ShapeString} and {indexedName} {indexed.ShapeString} must have equal row widths.", rowsName);
        if (index.Length != rowsSide.RowCount)
            throw new ArgumentException($"{indexName} holds {index.Length} ids but {rowsName} {rowsSide.ShapeString} has {rowsSide.RowCount} rows.", indexName);
    }

    private void RowKernel(string name, ulong src, Tensor index, ulong dst, int m, int cols)
    {
        ulong pi = Ptr(index);
        int is64 = Is64(index);
        Launch1D("rows.cu", name, (long)m * cols, (ref CudaKernelArgs a) => { a.Ptr(src); a.Ptr(pi); a.I32(is64); a.Ptr(dst); a.I32(m); a.I32(cols); });
    }

    /// <inheritdoc />
    public void GatherRows(Tensor src, Tensor index, Tensor dst, string indexName = "index")
    {
        ulong ps = F(src, nameof(src)), pd = F(dst, nameof(dst));
        CheckRowShapes(dst, src, index, nameof(dst), nameof(src), indexName);
        CheckIndex(index, indexName, src.RowCount, $"{nameof(src)} has {src.RowCount} rows");
        Ops.GatherRows(ps, Ptr(index), Is64(index) != 0, pd, dst.RowCount, checked((int)src.RowLength), _stream);
    }

    /// <inheritdoc />
    public void ScatterRows(Tensor src, Tensor index, Tensor dst, string indexName = "index")
    {
        ulong ps = F(src, nameof(src)), pd = F(dst, nameof(dst));
        CheckRowShapes(src, dst, index, nameof(src), nameof(dst), indexName);
        var v = CheckIndex(index, indexName, dst.RowCount, $"{nameof(dst)} has {dst.RowCount} rows");
        var seen = new long[dst.RowCount];
        for (int i = 0; i < v.Length; i++)
        {
            if (seen[v[i]] != 0) throw new ArgumentException($"{indexName}[{i}] = {v[i]} repeats {indexName}[{seen[v[i]] - 1}]: scattered rows must be distinct.", indexName);
            seen[v[i]] = i + 1;
        }
        RowKernel("mtfm_scatter_rows", ps, index, pd, src.RowCount, checked((int)src.RowLength));
    }

    /// <inheritdoc />
    public void FillRows(Tensor dst, Tensor index, float value, string indexName = "index")
    {
        ulong pd = F(dst, nameof(dst));
        CheckIndex(index, indexName, dst.RowCount, $"{nameof(dst)} has {dst.RowCount} rows");
        int m = checked((int)index.Length), cols = checked((int)dst.RowLength);
        ulong pi = Ptr(index);
        int is64 = Is64(index);
        Launch1D("rows.cu", "mtfm_fill_rows", (long)m * cols, (ref CudaKernelArgs a) => { a.Ptr(pd); a.Ptr(pi); a.I32(is64); a.I32(m); a.I32(cols); a.F32(value); });
    }

    /// <inheritdoc />
    public void ScatterAddRows(Tensor src, Tensor index, Tensor dst, string indexName = "index")
    {
        ulong ps = F(src, nameof(src)), pd = F(dst, nameof(dst));
        CheckRowShapes(src, dst, index, nameof(src), nameof(dst), indexName);
        var v = CheckIndex(index, indexName, dst.RowCount, $"{nameof(dst)} has {dst.RowCount} rows");
        int m = src.RowCount, cols = checked((int)src.RowLength);
        if (m == 0 || cols == 0) return;
        // Sources grouped by target on the host (stable: ascending source within a target), from the index mirror;
        // on the device each (target, column) sums its sources in that order — the CPU backend's order exactly.
        int rowsOut = dst.RowCount;
        var meta = System.Buffers.ArrayPool<int>.Shared.Rent(3 * m + 1); // order[m] | segOffsets[u + 1] | targets[u]
        int u = rowsOut <= 4 * (long)m + 4096 ? GroupByTargetCounting(v, rowsOut, meta) : GroupByTargetSorting(v, meta);
        var b = ScratchInts(meta.AsSpan(0, m + 2 * u + 1), CudaUploadCategory.ScatterAddSortMetadata); // copied into pinned staging: the array can go back at once
        System.Buffers.ArrayPool<int>.Shared.Return(meta);
        ulong po = b.Pointer, pseg = b.At<int>(m), pt = b.At<int>(m + u + 1);
        int nt = u;
        Launch1D("rows.cu", "mtfm_scatter_add_segments", (long)nt * cols,
            (ref CudaKernelArgs a) => { a.Ptr(ps); a.Ptr(po); a.Ptr(pseg); a.Ptr(pt); a.Ptr(pd); a.I32(nt); a.I32(cols); });
        Release(b);
    }

    /// <summary>
    /// Groups the positions of <paramref name="keys"/> (all in [0, <paramref name="targets"/>)) by key with a counting
    /// sort: <paramref name="meta"/> receives order[m] (positions by ascending key, ascending position within a key) |
    /// segOffsets[u + 1] | targets[u] for the u distinct keys in ascending order; returns u. O(m + targets).
    /// </summary>
    private static int GroupByTargetCounting(ReadOnlySpan<long> keys, int targets, int[] meta)
    {
        int m = keys.Length;
        var start = System.Buffers.ArrayPool<int>.Shared.Rent(targets + 1);
        try
        {
            var count = start.AsSpan(0, targets + 1);
            count.Clear();
            for (int i = 0; i < m; i++) count[(int)keys[i] + 1]++;
            int u = 0;
            for (int t = 0; t < targets; t++)
                if (count[t + 1] != 0) u++;
            var seg = meta.AsSpan(m, u + 1);
            var tg = meta.AsSpan(m + u + 1, u);
            int k = 0;
            for (int t = 0; t < targets; t++)
            {
                int c = count[t + 1];
                count[t + 1] = count[t] + c; // count[t] = first slot of key t
                if (c != 0)
                {
                    seg[k] = count[t];
                    tg[k++] = t;
                }
            }
            seg[u] = m;
            var order = meta.AsSpan(0, m);
            for (int i = 0; i < m; i++) order[count[(int)keys[i]]++] = i; // ascending i: stable
            return u;
        }
        finally
        {
            System.Buffers.ArrayPool<int>.Shared.Return(start);
        }
    }

    /// <summary><see cref="GroupByTargetCounting"/>'s result by a comparison sort (for keys spread over a large range).</summary>
    private static int GroupByTargetSorting(ReadOnlySpan<long> keys, int[] meta)
    {
        int m = keys.Length;
        var sorted = keys.ToArray();
        var order = meta.AsSpan(0, m);
        for (int i = 0; i < m; i++) order[i] = i;
        sorted.AsSpan().Sort(order);
        int u = 0;
        for (int s = 0; s < m;)
        {
            int e = s + 1;
            while (e < m && sorted[e] == sorted[s]) e++;
            order.Slice(s, e - s).Sort();
            u++;
            s = e;
        }
        // segOffsets and targets follow order[m]; a second pass now that u is known
        var seg = meta.AsSpan(m, u + 1);
        var tg = meta.AsSpan(m + u + 1, u);
        int k = 0;
        for (int s = 0; s < m;)
        {
            int e = s + 1;
            while (e < m && sorted[e] == sorted[s]) e++;
            seg[k] = s;
            tg[k++] = (int)sorted[s];
            s = e;
        }
        seg[u] = m;
        return u;
    }

    /// <summary>
    /// Computed on the host from the index's host mirror (no device round trip, no synchronisation), then uploaded
    /// asynchronously; the same result as the CPU backend.
    /// </summary>
    public (Tensor Unique, Tensor Inverse) UniqueIndices(Tensor index)
    {
        I(index, nameof(index));
        var values = IndexValues(index);
        int m = values.Length;
        var (uniq, inverse) = UniqueIndexSet.Compute(values);
        int u = uniq.Length;
        var tu = Allocate(DType.Int32, [u]);
        var ti = Allocate(DType.Int32, [m]);
        UploadTensor<int>(uniq, tu, CudaUploadCategory.UniqueIndices);
        UploadTensor<int>(inverse, ti, CudaUploadCategory.UniqueIndices);
        return (tu, ti);
    }

    /// <inheritdoc />
    public void CopyColumns(Tensor src, int srcCol, Tensor dst, int dstCol, int cols, bool accumulate)
    {
        ulong ps = F(src, nameof(src)), pd = F(dst, nameof(dst));
        var (rows, sc) = ColumnRanges.Check(src, nameof(src), srcCol, nameof(srcCol), cols);
        var (_, dc) = ColumnRanges.Check(dst, nameof(dst), dstCol, nameof(dstCol), cols, rows, $"src {src.ShapeString}");
        int acc = accumulate ? 1 : 0;
        Launch1D("rows.cu", "mtfm_copy_columns", (long)rows * cols,
            (ref CudaKernelArgs a) => { a.Ptr(ps); a.I32(sc); a.I32(srcCol); a.Ptr(pd); a.I32(dc); a.I32(dstCol); a.I32(rows); a.I32(cols); a.I32(acc); });
    }
}
