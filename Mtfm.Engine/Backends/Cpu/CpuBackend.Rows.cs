using System.Buffers;
using Mtfm.Engine.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Mtfm.Engine.Backends.Cpu;

internal sealed unsafe partial class CpuBackend
{
    /// <summary>Validates an index tensor against [0, limit) and returns its pointer; throws naming the bad position.</summary>
    private void* CheckIndex(Tensor index, string indexName, long limit, string limitWhat, out bool is64)
    {
        void* p = I(index, indexName);
        is64 = index.DType == DType.Int64;
        for (long i = 0; i < index.Length; i++)
        {
            long v = ReadIndex(p, is64, i);
            if ((ulong)v >= (ulong)limit)
                throw new ArgumentOutOfRangeException(indexName, v, $"{indexName}[{i}] = {v} is outside [0, {limit}) ({limitWhat}).");
        }
        return p;
    }

    private struct CopyRowsBody : IRangeBody
    {
        public float* Src, Dst;
        public void* Index;
        public bool Is64, ScatterSide; // ScatterSide: dst[index[i]] = src[i]; else dst[i] = src[index[i]]
        public int Cols;

        public void Run(int start, int end)
        {
            for (int i = start; i < end; i++)
            {
                long j = ReadIndex(Index, Is64, i);
                long si = ScatterSide ? i : j, di = ScatterSide ? j : i;
                new ReadOnlySpan<float>(Src + si * Cols, Cols).CopyTo(new Span<float>(Dst + di * Cols, Cols));
            }
        }
    }

    private static void CheckRowShapes(Tensor rowsSide, Tensor indexed, Tensor index, string rowsName, string indexedName, string indexName)
    {
        if (rowsSide.Rank < 1 || indexed.Rank < 1) throw new ArgumentException($"{rowsName} and {indexedName} must have rank ≥ 1.", rowsName);
        if (rowsSide.RowLength != indexed.RowLength)
            throw new ArgumentException($"{rowsName} {rowsSide.ShapeString} and {indexedName} {indexed.ShapeString} must have equal row widths.", rowsName);
        if (index.Length != rowsSide.RowCount)
            throw new ArgumentException($"{indexName} holds {index.Length} ids but {rowsName} {rowsSide.ShapeString} has {rowsSide.RowCount} rows.", indexName);
    }

    /// <inheritdoc />
    public void GatherRows(Tensor src, Tensor index, Tensor dst, string indexName = "index")
    {
        float* ps = F(src, nameof(src)), pd = F(dst, nameof(dst));
        CheckRowShapes(dst, src, index, nameof(dst), nameof(src), indexName);
        void* pi = CheckIndex(index, indexName, src.RowCount, $"{nameof(src)} has {src.RowCount} rows", out bool is64);
        int cols = checked((int)src.RowLength);
        var body = new CopyRowsBody { Src = ps, Dst = pd, Index = pi, Is64 = is64, Cols = cols };
        _pool.For(dst.RowCount, MinRows(cols), ref body);
    }

    /// <inheritdoc />
    public void ScatterRows(Tensor src, Tensor index, Tensor dst, string indexName = "index")
    {
        float* ps = F(src, nameof(src)), pd = F(dst, nameof(dst));
        CheckRowShapes(src, dst, index, nameof(src), nameof(dst), indexName);
        void* pi = CheckIndex(index, indexName, dst.RowCount, $"{nameof(dst)} has {dst.RowCount} rows", out bool is64);
        // Distinct targets, checked with a pooled array (no garbage per call): seen[v] = 1 + the position holding v.
        int n = src.RowCount;
        int[] seen = ArrayPool<int>.Shared.Rent(Math.Max(1, dst.RowCount));
        try
        {
            Array.Clear(seen, 0, dst.RowCount);
            for (int i = 0; i < n; i++)
            {
                long v = ReadIndex(pi, is64, i);
                if (seen[v] != 0) throw new ArgumentException($"{indexName}[{i}] = {v} repeats {indexName}[{seen[v] - 1}]: scattered rows must be distinct.", indexName);
                seen[v] = i + 1;
            }
        }
        finally { ArrayPool<int>.Shared.Return(seen); }
        int cols = checked((int)src.RowLength);
        var body = new CopyRowsBody { Src = ps, Dst = pd, Index = pi, Is64 = is64, ScatterSide = true, Cols = cols };
        _pool.For(src.RowCount, MinRows(cols), ref body);
    }

    /// <inheritdoc />
    public void FillRows(Tensor dst, Tensor index, float value, string indexName = "index")
    {
        float* pd = F(dst, nameof(dst));
        void* pi = CheckIndex(index, indexName, dst.RowCount, $"{nameof(dst)} has {dst.RowCount} rows", out bool is64);
        int cols = checked((int)dst.RowLength);
        var body = new FillRowsBody { Dst = pd, Index = pi, Is64 = is64, Cols = cols, Value = value };
        _pool.For(checked((int)index.Length), MinRows(cols), ref body);
    }

    /// <summary>Rows index[i] of Dst set to Value (a row listed twice is written twice with the same value).</summary>
    private struct FillRowsBody : IRangeBody
    {
        public float* Dst;
        public void* Index;
        public bool Is64;
        public int Cols;
        public float Value;

        public readonly void Run(int start, int end)
        {
            for (int i = start; i < end; i++)
                new Span<float>(Dst + ReadIndex(Index, Is64, i) * Cols, Cols).Fill(Value);
        }
    }

    private struct ScatterAddBody : IRangeBody
    {
        public float* Src, Dst;
        public int* Targets, Start, Order; // per distinct target t: sources Order[Start[t] .. Start[t+1]) ascending
        public int Cols;

        public void Run(int start, int end)
        {
            for (int t = start; t < end; t++)
            {
                var dst = new Span<float>(Dst + (long)Targets[t] * Cols, Cols);
                for (int s = Start[t]; s < Start[t + 1]; s++)
                    TensorPrimitives.Add(dst, new ReadOnlySpan<float>(Src + (long)Order[s] * Cols, Cols), dst);
            }
        }
    }

    /// <inheritdoc />
    public void ScatterAddRows(Tensor src, Tensor index, Tensor dst, string indexName = "index")
    {
        float* ps = F(src, nameof(src)), pd = F(dst, nameof(dst));
        CheckRowShapes(src, dst, index, nameof(src), nameof(dst), indexName);
        void* pi = CheckIndex(index, indexName, dst.RowCount, $"{nameof(dst)} has {dst.RowCount} rows", out bool is64);
        int m = src.RowCount, cols = checked((int)src.RowLength);
        if (m == 0) return;
        // Group sources by target (stable sort by target, ascending source order within a target), then each target
        // row sums its sources in order on one thread: race-free and independent of the thread count. The scratch
        // arrays come from the shared pool (no garbage per call).
        long[] keys = ArrayPool<long>.Shared.Rent(m);
        int[] order = ArrayPool<int>.Shared.Rent(m), pt = ArrayPool<int>.Shared.Rent(m), pst = ArrayPool<int>.Shared.Rent(m + 1);
        try
        {
            bool increasing = true;
            for (int i = 0; i < m; i++)
            {
                keys[i] = ReadIndex(pi, is64, i);
                order[i] = i;
                increasing &= i == 0 || keys[i] > keys[i - 1];
            }
            // Strictly increasing targets (the usual T-row lists) are already sorted, one source each: no sort needed.
            // Otherwise a counting sort where the target range is not much larger than the sources (stable: the same
            // order as the sort below), else introsort, which is not stable: ascending source order within equal keys
            // is restored below.
            int rows = dst.RowCount;
            bool stable = increasing || rows <= 16L * m + 4096;
            if (!increasing && stable) CountingSortByTarget(keys, order, m, rows);
            else if (!increasing) Array.Sort(keys, order, 0, m);
            int distinct = 0;
            for (int s = 0; s < m;)
            {
                int e = s + 1;
                while (e < m && keys[e] == keys[s]) e++;
                if (!stable) Array.Sort(order, s, e - s);
                pt[distinct] = (int)keys[s];
                pst[distinct++] = s;
                s = e;
            }
            pst[distinct] = m;
            fixed (int* t = pt, st = pst, o = order)
            {
                var body = new ScatterAddBody { Src = ps, Dst = pd, Targets = t, Start = st, Order = o, Cols = cols };
                _pool.For(distinct, MinRows(cols), ref body);
            }
        }
        finally
        {
            ArrayPool<long>.Shared.Return(keys);
            ArrayPool<int>.Shared.Return(order);
            ArrayPool<int>.Shared.Return(pt);
            ArrayPool<int>.Shared.Return(pst);
        }
    }

    /// <summary>
    /// Sorts the first <paramref name="m"/> (key, source) pairs by key in [0, <paramref name="rows"/>), sources ascending
    /// within a key (order[i] = i on entry): a stable counting sort, O(m + rows).
    /// </summary>
    private static void CountingSortByTarget(long[] keys, int[] order, int m, int rows)
    {
        int[] start = ArrayPool<int>.Shared.Rent(rows + 1);
        long[] sortedKeys = ArrayPool<long>.Shared.Rent(m);
        try
        {
            Array.Clear(start, 0, rows + 1);
            for (int i = 0; i < m; i++) start[keys[i] + 1]++;
            for (int r = 0; r < rows; r++) start[r + 1] += start[r];
            for (int i = 0; i < m; i++)
            {
                int at = start[keys[i]]++;
                order[at] = i;
                sortedKeys[at] = keys[i];
            }
            Array.Copy(sortedKeys, keys, m);
        }
        finally
        {
            ArrayPool<int>.Shared.Return(start);
            ArrayPool<long>.Shared.Return(sortedKeys);
        }
    }

    /// <inheritdoc />
    public (Tensor Unique, Tensor Inverse) UniqueIndices(Tensor index)
    {
        void* pi = I(index, nameof(index));
        bool is64 = index.DType == DType.Int64;
        int m = checked((int)index.Length);
        var values = new long[m];
        for (int i = 0; i < m; i++) values[i] = ReadIndex(pi, is64, i);
        var (uniq, inverse) = UniqueIndexSet.Compute(values);
        int u = uniq.Length;
        var tu = Allocate(DType.Int32, [u]);
        var ti = Allocate(DType.Int32, [m]);
        Upload<int>(uniq, tu);
        Upload<int>(inverse, ti);
        return (tu, ti);
    }

    private struct CopyColumnsBody : IRangeBody
    {
        public float* Src, Dst;
        public int SrcCols, DstCols, Cols;
        public bool Accumulate;

        public void Run(int start, int end)
        {
            for (int i = start; i < end; i++)
            {
                var s = new ReadOnlySpan<float>(Src + (long)i * SrcCols, Cols);
                var d = new Span<float>(Dst + (long)i * DstCols, Cols);
                if (Accumulate) TensorPrimitives.Add(d, s, d);
                else s.CopyTo(d);
            }
        }
    }

    /// <inheritdoc />
    public void CopyColumns(Tensor src, int srcCol, Tensor dst, int dstCol, int cols, bool accumulate)
    {
        float* ps = F(src, nameof(src)), pd = F(dst, nameof(dst));
        var (rows, sc) = ColumnRanges.Check(src, nameof(src), srcCol, nameof(srcCol), cols);
        var (_, dc) = ColumnRanges.Check(dst, nameof(dst), dstCol, nameof(dstCol), cols, rows, $"src {src.ShapeString}");
        var body = new CopyColumnsBody { Src = ps + srcCol, Dst = pd + dstCol, SrcCols = sc, DstCols = dc, Cols = cols, Accumulate = accumulate };
        _pool.For(rows, MinRows(Math.Max(1, cols)), ref body);
    }
}
