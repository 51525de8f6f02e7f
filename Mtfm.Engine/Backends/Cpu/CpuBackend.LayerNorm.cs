using System.Buffers;
using System.Runtime.Intrinsics;
using Mtfm.Engine.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Mtfm.Engine.Backends.Cpu;

internal sealed unsafe partial class CpuBackend
{
    private struct LayerNormBody : IRangeBody
    {
        public float* X, Gamma, Beta, Y, Mean, Rstd;
        public void* Groups;
        public bool Groups64;
        public int Cols;
        public float Eps;

        public void Run(int start, int end)
        {
            bool swept = SweptRows(Cols);
            for (int i = start; i < end; i++)
            {
                if (swept)
                {
                    float* gam = null, bet = null;
                    if (Gamma != null)
                    {
                        long g = Groups == null ? 0 : ReadIndex(Groups, Groups64, i);
                        gam = Gamma + g * Cols;
                        bet = Beta + g * Cols;
                    }
                    (Mean[i], Rstd[i]) = SweptRow(X + (long)i * Cols, Y + (long)i * Cols, gam, bet, Cols, Eps);
                    continue;
                }
                var x = new ReadOnlySpan<float>(X + (long)i * Cols, Cols);
                var y = new Span<float>(Y + (long)i * Cols, Cols);
                float mean = TensorPrimitives.Sum(x) / Cols;
                TensorPrimitives.Subtract(x, mean, y);
                float variance = TensorPrimitives.SumOfSquares(y) / Cols;
                float rstd = 1f / MathF.Sqrt(variance + Eps);
                Mean[i] = mean;
                Rstd[i] = rstd;
                TensorPrimitives.Multiply(y, rstd, y);
                if (Gamma != null)
                {
                    long g = Groups == null ? 0 : ReadIndex(Groups, Groups64, i);
                    TensorPrimitives.MultiplyAdd(y, new ReadOnlySpan<float>(Gamma + g * Cols, Cols), new ReadOnlySpan<float>(Beta + g * Cols, Cols), y);
                }
            }
        }
    }

    /// <summary>Whether <see cref="SweptRow"/> serves rows of <paramref name="cols"/> columns (whole vectors, at most 8).</summary>
    private static bool SweptRows(int cols) => Vector512.IsHardwareAccelerated && cols > 0 && cols % 16 == 0 && cols <= SweptColumns;

    /// <summary>
    /// Widest row (8 vectors) whose sums <see cref="TensorPrimitives"/> forms by adding its vectors in order from zero
    /// and reducing the lanes with Vector512.Sum, so that a sweep that adds them the same way has its bits.
    /// </summary>
    private const int SweptColumns = 8 * 16;

    /// <summary>
    /// One row of the LayerNorm forward in three vector sweeps: Σx, then d = x − mean (stored) with Σd², then
    /// y = (d·rstd)·gamma + beta. Up to 8 vectors, <see cref="TensorPrimitives"/>' Sum and SumOfSquares add the vectors
    /// in order from zero and reduce the lanes with Vector512.Sum, and its Multiply and MultiplyAdd round every product:
    /// so these are the bits of the span formulation in LayerNormBody.Run (LayerNormForwardTests pins them).
    /// </summary>
    private static (float Mean, float Rstd) SweptRow(float* x, float* y, float* gamma, float* beta, int cols, float eps)
    {
        var s = Vector512<float>.Zero;
        for (int j = 0; j < cols; j += 16) s += Vector512.Load(x + j);
        float mean = Vector512.Sum(s) / cols;
        var vm = Vector512.Create(mean);
        var q = Vector512<float>.Zero;
        for (int j = 0; j < cols; j += 16)
        {
            var d = Vector512.Load(x + j) - vm;
            d.Store(y + j);
            q += d * d;
        }
        float rstd = 1f / MathF.Sqrt(Vector512.Sum(q) / cols + eps);
        var vr = Vector512.Create(rstd);
        for (int j = 0; j < cols; j += 16)
        {
            var n = Vector512.Load(y + j) * vr;
            (gamma != null ? n * Vector512.Load(gamma + j) + Vector512.Load(beta + j) : n).Store(y + j);
        }
        return (mean, rstd);
    }

    /// <inheritdoc />
    public void LayerNorm(Tensor x, Tensor? gamma, Tensor? beta, Tensor? groupIds, float eps, Tensor y, Tensor mean, Tensor rstd)
    {
        float* px = F(x, nameof(x)), py = F(y, nameof(y)), pm = F(mean, nameof(mean)), pr = F(rstd, nameof(rstd));
        var (rows, cols) = Matrix(x);
        CheckSameLength(x, y, nameof(y));
        if (mean.Length != rows) throw new ArgumentException($"mean {mean.ShapeString} must hold {rows} elements.", nameof(mean));
        if (rstd.Length != rows) throw new ArgumentException($"rstd {rstd.ShapeString} must hold {rows} elements.", nameof(rstd));
        if (!(eps > 0f)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "eps must be > 0.");
        int groups = AffineParams(gamma, beta, cols, out float* pg, out float* pb);
        void* pid = CheckGroupIds(groupIds, rows, groups, gamma is not null);
        var body = new LayerNormBody
        {
            X = px,
            Gamma = pg,
            Beta = pb,
            Y = py,
            Mean = pm,
            Rstd = pr,
            Groups = pid,
            Groups64 = groupIds?.DType == DType.Int64,
            Cols = cols,
            Eps = eps,
        };
        _pool.For(rows, MinRows(cols), ref body);
    }

    private int AffineParams(Tensor? gamma, Tensor? beta, int cols, out float* pg, out float* pb)
    {
        pg = null;
        pb = null;
        if (gamma is null && beta is null) return 0;
        if (gamma is null || beta is null) throw new ArgumentException("gamma and beta must both be given or both be null.", gamma is null ? nameof(gamma) : nameof(beta));
        pg = F(gamma, nameof(gamma));
        pb = F(beta, nameof(beta));
        if (gamma.LastDim != cols || gamma.Length % cols != 0)
            throw new ArgumentException($"gamma {gamma.ShapeString} must be [groups, {cols}] (the feature width of x).", nameof(gamma));
        if (!beta.SameShape(gamma)) throw new ArgumentException($"beta {beta.ShapeString} must have gamma's shape {gamma.ShapeString}.", nameof(beta));
        return (int)(gamma.Length / cols);
    }

    private void* CheckGroupIds(Tensor? groupIds, int rows, int groups, bool affine)
    {
        if (groupIds is null) return null;
        if (!affine) throw new ArgumentException("groupIds were given to a LayerNorm without gamma/beta.", nameof(groupIds));
        void* p = I(groupIds, nameof(groupIds));
        if (groupIds.Length != rows) throw new ArgumentException($"groupIds {groupIds.ShapeString} must hold {rows} elements (one per row of x).", nameof(groupIds));
        bool is64 = groupIds.DType == DType.Int64;
        for (long i = 0; i < rows; i++)
        {
            long g = ReadIndex(p, is64, i);
            if ((ulong)g >= (ulong)groups)
                throw new ArgumentOutOfRangeException(nameof(groupIds), g, $"groupIds[{i}] = {g} is outside [0, {groups}) (gamma has {groups} groups).");
        }
        return p;
    }

    private struct LayerNormDxBody : IRangeBody
    {
        public float* X, Mean, Rstd, Gamma, Dy, Dx;
        public void* Groups;
        public bool Groups64, Fused; // Fused: rows through FusedRowBackward (FusedRows(Cols))
        public int Cols;

        public void Run(int start, int end)
        {
            if (Fused)
            {
                float* scratch = stackalloc float[2 * Cols];
                for (int i = start; i < end; i++)
                {
                    float* gam = Gamma == null ? null : Gamma + (Groups == null ? 0 : ReadIndex(Groups, Groups64, i)) * Cols;
                    long o = (long)i * Cols;
                    FusedRowBackward(X + o, Dy + o, gam, Mean[i], Rstd[i], Cols, scratch, scratch + Cols, Dx + o, null, null);
                }
                return;
            }
            float[] rented = ArrayPool<float>.Shared.Rent(2 * Cols);
            var xhat = rented.AsSpan(0, Cols);
            var g = rented.AsSpan(Cols, Cols);
            for (int i = start; i < end; i++)
            {
                var x = new ReadOnlySpan<float>(X + (long)i * Cols, Cols);
                var dy = new ReadOnlySpan<float>(Dy + (long)i * Cols, Cols);
                float rstd = Rstd[i];
                TensorPrimitives.Subtract(x, Mean[i], xhat);
                TensorPrimitives.Multiply(xhat, rstd, xhat);
                if (Gamma != null)
                {
                    long grp = Groups == null ? 0 : ReadIndex(Groups, Groups64, i);
                    TensorPrimitives.Multiply(dy, new ReadOnlySpan<float>(Gamma + grp * Cols, Cols), g);
                }
                else dy.CopyTo(g);
                AddDx(g, xhat, rstd, new Span<float>(Dx + (long)i * Cols, Cols));
            }
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// One row of the LayerNorm backward in two vector sweeps (rows of a multiple of 16 columns): x̂ = (x − mean)·rstd and
    /// g = dy·gamma (dy without gamma) into the scratch rows, then dx += rstd·(g − mean(g) − x̂·mean(g·x̂)) (when
    /// <paramref name="dx"/> is given) and the parameter partials dgamma += dy·x̂, dbeta += dy (when given). Every
    /// element goes through the same multiplies, adds and <see cref="TensorPrimitives"/> reductions as the span ops of
    /// the span path of <see cref="LayerNormDxBody"/>, <see cref="AddDx"/> and <see cref="LayerNormParamPartialBody"/>, so the bits are theirs.
    /// </summary>
    private static void FusedRowBackward(float* x, float* dy, float* gamma, float mean, float rstd, int cols,
        float* xhat, float* g, float* dx, float* dg, float* db)
    {
        var vm = Vector512.Create(mean);
        var vr = Vector512.Create(rstd);
        // Up to 8 vectors, TensorPrimitives.Sum and Dot add the vectors in order from zero (products rounded before the
        // add) and then reduce the lanes with Vector512.Sum: the same sums come out of this first sweep, with no
        // further pass over the row (LayerNormBackwardTests pins the bits to the span ops).
        bool inSweep = dx != null && cols <= SweptColumns;
        var sg = Vector512<float>.Zero;
        var sgx = Vector512<float>.Zero;
        for (int j = 0; j < cols; j += 16)
        {
            var xh = (Vector512.Load(x + j) - vm) * vr;
            xh.Store(xhat + j);
            var d = Vector512.Load(dy + j);
            var gj = gamma != null ? d * Vector512.Load(gamma + j) : d;
            gj.Store(g + j);
            if (inSweep)
            {
                sg += gj;
                sgx += gj * xh;
            }
        }
        var vgx = Vector512<float>.Zero;
        var vg = Vector512<float>.Zero;
        if (dx != null)
        {
            float meanG = (inSweep ? Vector512.Sum(sg) : TensorPrimitives.Sum(new ReadOnlySpan<float>(g, cols))) / cols;
            float meanGx = (inSweep ? Vector512.Sum(sgx) : TensorPrimitives.Dot(new ReadOnlySpan<float>(g, cols), new ReadOnlySpan<float>(xhat, cols))) / cols;
            vgx = Vector512.Create(-meanGx);
            vg = Vector512.Create(meanG);
        }
        for (int j = 0; j < cols; j += 16)
        {
            var xh = Vector512.Load(xhat + j);
            if (dx != null) ((((xh * vgx) + Vector512.Load(g + j)) - vg) * vr + Vector512.Load(dx + j)).Store(dx + j);
            if (dg != null) ((Vector512.Load(dy + j) * xh) + Vector512.Load(dg + j)).Store(dg + j);
            if (db != null) (Vector512.Load(db + j) + Vector512.Load(dy + j)).Store(db + j);
        }
    }

    /// <summary>Whether <see cref="FusedRowBackward"/> serves rows of <paramref name="cols"/> columns (its two scratch rows live on the stack).</summary>
    private static bool FusedRows(int cols) => Vector512.IsHardwareAccelerated && cols > 0 && cols % 16 == 0 && cols <= 1024;

    /// <summary>dx += rstd·(g − mean(g) − x̂·mean(g·x̂)) for one row (g, the upstream gradient times gamma, is overwritten).</summary>
    private static void AddDx(Span<float> g, ReadOnlySpan<float> xhat, float rstd, Span<float> dx)
    {
        float meanG = TensorPrimitives.Sum((ReadOnlySpan<float>)g) / g.Length;
        float meanGx = TensorPrimitives.Dot((ReadOnlySpan<float>)g, xhat) / g.Length;
        TensorPrimitives.MultiplyAdd(xhat, -meanGx, g, g);
        TensorPrimitives.Subtract(g, meanG, g);
        TensorPrimitives.MultiplyAdd(g, rstd, dx, dx);
    }

    /// <summary>z = LN(o) ⊙ u per row (or, backward, du and dO from dz), LN(o) only in a row scratch: the same span ops as LayerNorm, Mul and LayerNormBackward.</summary>
    private struct LayerNormMulBody : IRangeBody
    {
        public float* O, U, Mean, Rstd, Z, Dz, Du, Do;
        public int Cols;
        public float Eps;
        public bool Backward, AccumulateDu, AccumulateDo;

        public void Run(int start, int end)
        {
            float[] rented = ArrayPool<float>.Shared.Rent(2 * Cols);
            var xhat = rented.AsSpan(0, Cols);
            var g = rented.AsSpan(Cols, Cols);
            for (int i = start; i < end; i++)
            {
                var o = new ReadOnlySpan<float>(O + (long)i * Cols, Cols);
                var u = new ReadOnlySpan<float>(U + (long)i * Cols, Cols);
                if (!Backward)
                {
                    // LayerNormBody's steps, then Mul's.
                    float mean = TensorPrimitives.Sum(o) / Cols;
                    TensorPrimitives.Subtract(o, mean, xhat);
                    float variance = TensorPrimitives.SumOfSquares((ReadOnlySpan<float>)xhat) / Cols;
                    float rstd = 1f / MathF.Sqrt(variance + Eps);
                    Mean[i] = mean;
                    Rstd[i] = rstd;
                    TensorPrimitives.Multiply(xhat, rstd, xhat);
                    TensorPrimitives.Multiply(xhat, u, new Span<float>(Z + (long)i * Cols, Cols));
                    continue;
                }
                var dz = new ReadOnlySpan<float>(Dz + (long)i * Cols, Cols);
                float r = Rstd[i];
                TensorPrimitives.Subtract(o, Mean[i], xhat);
                TensorPrimitives.Multiply(xhat, r, xhat);
                if (Du != null)
                {
                    var du = new Span<float>(Du + (long)i * Cols, Cols);
                    if (AccumulateDu) TensorPrimitives.MultiplyAdd(dz, xhat, du, du);
                    else TensorPrimitives.Multiply(dz, xhat, du);
                }
                if (Do == null) continue;
                TensorPrimitives.Multiply(dz, u, g);
                var dO = new Span<float>(Do + (long)i * Cols, Cols);
                if (!AccumulateDo) dO.Clear(); // adding into zeros, as LayerNormBackward into a zeroed buffer (−0 stays +0)
                AddDx(g, xhat, r, dO);
            }
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    /// <inheritdoc />
    public void LayerNormMul(Tensor o, Tensor u, float eps, Tensor z, Tensor mean, Tensor rstd)
    {
        float* po = F(o, nameof(o)), pu = F(u, nameof(u)), pz = F(z, nameof(z)), pm = F(mean, nameof(mean)), pr = F(rstd, nameof(rstd));
        var (rows, cols) = Matrix(o);
        CheckSameLength(o, u, nameof(u));
        CheckSameLength(o, z, nameof(z));
        if (mean.Length != rows) throw new ArgumentException($"mean {mean.ShapeString} must hold {rows} elements.", nameof(mean));
        if (rstd.Length != rows) throw new ArgumentException($"rstd {rstd.ShapeString} must hold {rows} elements.", nameof(rstd));
        if (!(eps > 0f)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "eps must be > 0.");
        var body = new LayerNormMulBody { O = po, U = pu, Z = pz, Mean = pm, Rstd = pr, Cols = cols, Eps = eps };
        _pool.For(rows, MinRows(cols), ref body);
    }

    /// <inheritdoc />
    public void LayerNormMulBackward(Tensor o, Tensor u, Tensor mean, Tensor rstd, float eps, Tensor dz,
        Tensor? du, bool accumulateDu, Tensor? dO, bool accumulateDo)
    {
        float* po = F(o, nameof(o)), pu = F(u, nameof(u)), pm = F(mean, nameof(mean)), pr = F(rstd, nameof(rstd)), pdz = F(dz, nameof(dz));
        var (rows, cols) = Matrix(o);
        CheckSameLength(o, u, nameof(u));
        CheckSameLength(o, dz, nameof(dz));
        if (mean.Length != rows) throw new ArgumentException($"mean {mean.ShapeString} must hold {rows} elements.", nameof(mean));
        if (rstd.Length != rows) throw new ArgumentException($"rstd {rstd.ShapeString} must hold {rows} elements.", nameof(rstd));
        if (du is not null) CheckSameLength(o, du, nameof(du));
        if (dO is not null) CheckSameLength(o, dO, nameof(dO));
        if (du is null && dO is null) return;
        var body = new LayerNormMulBody
        {
            O = po, U = pu, Mean = pm, Rstd = pr, Dz = pdz, Du = du is null ? null : F(du, nameof(du)), Do = dO is null ? null : F(dO, nameof(dO)),
            Cols = cols, Eps = eps, Backward = true, AccumulateDu = accumulateDu, AccumulateDo = accumulateDo,
        };
        _pool.For(rows, MinRows(cols), ref body);
    }

    /// <summary>A run of at most <see cref="ReduceRowBlock"/> rows of one group (indices into the group-sorted order).</summary>
    private struct GroupBlock
    {
        public int Group, Start, Count;
    }

    /// <summary>
    /// The gamma/beta partials per group block. Fused (<see cref="FusedRows"/>): through <see cref="FusedRowBackward"/>,
    /// which also adds each row's dx when <see cref="Dx"/> is set (dx rows belong to one block each, so the split does
    /// not matter for them).
    /// </summary>
    private struct LayerNormParamPartialBody : IRangeBody
    {
        public float* X, Mean, Rstd, Dy, Partial; // Partial: [blocks, 2, Cols] (dgamma, dbeta)
        public float* Gamma, Dx; // fused path only
        public int* Order;
        public GroupBlock* Blocks;
        public int Cols;
        public bool Fused;

        public void Run(int start, int end)
        {
            if (Fused)
            {
                float* scratch = stackalloc float[2 * Cols];
                for (int b = start; b < end; b++)
                {
                    float* dg = Partial + (long)b * 2 * Cols, db = dg + Cols;
                    new Span<float>(dg, 2 * Cols).Clear();
                    var blk = Blocks[b];
                    float* gam = Gamma + (long)blk.Group * Cols;
                    for (int r = blk.Start; r < blk.Start + blk.Count; r++)
                    {
                        int i = Order[r];
                        long o = (long)i * Cols;
                        FusedRowBackward(X + o, Dy + o, gam, Mean[i], Rstd[i], Cols, scratch, scratch + Cols, Dx == null ? null : Dx + o, dg, db);
                    }
                }
                return;
            }
            float[] rented = ArrayPool<float>.Shared.Rent(Cols);
            var xhat = rented.AsSpan(0, Cols);
            for (int b = start; b < end; b++)
            {
                var dg = new Span<float>(Partial + (long)b * 2 * Cols, Cols);
                var db = new Span<float>(Partial + ((long)b * 2 + 1) * Cols, Cols);
                dg.Clear();
                db.Clear();
                var blk = Blocks[b];
                for (int r = blk.Start; r < blk.Start + blk.Count; r++)
                {
                    int i = Order[r];
                    var x = new ReadOnlySpan<float>(X + (long)i * Cols, Cols);
                    var dy = new ReadOnlySpan<float>(Dy + (long)i * Cols, Cols);
                    TensorPrimitives.Subtract(x, Mean[i], xhat);
                    TensorPrimitives.Multiply(xhat, Rstd[i], xhat);
                    TensorPrimitives.MultiplyAdd(dy, xhat, dg, dg);
                    TensorPrimitives.Add(db, dy, db);
                }
            }
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    private struct LayerNormParamReduceBody : IRangeBody
    {
        public float* Partial, DGamma, DBeta;
        public int* GroupFirstBlock; // [groups + 1]
        public int Cols;

        public void Run(int start, int end)
        {
            for (int g = start; g < end; g++)
            {
                var dg = DGamma == null ? Span<float>.Empty : new Span<float>(DGamma + (long)g * Cols, Cols);
                var db = DBeta == null ? Span<float>.Empty : new Span<float>(DBeta + (long)g * Cols, Cols);
                for (int b = GroupFirstBlock[g]; b < GroupFirstBlock[g + 1]; b++)
                {
                    if (DGamma != null) TensorPrimitives.Add(dg, new ReadOnlySpan<float>(Partial + (long)b * 2 * Cols, Cols), dg);
                    if (DBeta != null) TensorPrimitives.Add(db, new ReadOnlySpan<float>(Partial + ((long)b * 2 + 1) * Cols, Cols), db);
                }
            }
        }
    }

    /// <inheritdoc />
    public void LayerNormBackward(Tensor x, Tensor mean, Tensor rstd, Tensor? gamma, Tensor? groupIds, Tensor dy,
        Tensor? dx, Tensor? dgamma, Tensor? dbeta)
    {
        float* px = F(x, nameof(x)), pm = F(mean, nameof(mean)), pr = F(rstd, nameof(rstd)), pdy = F(dy, nameof(dy));
        var (rows, cols) = Matrix(x);
        CheckSameLength(x, dy, nameof(dy));
        if (mean.Length != rows) throw new ArgumentException($"mean {mean.ShapeString} must hold {rows} elements.", nameof(mean));
        if (rstd.Length != rows) throw new ArgumentException($"rstd {rstd.ShapeString} must hold {rows} elements.", nameof(rstd));
        float* pg = null;
        int groups = 1;
        if (gamma is not null)
        {
            pg = F(gamma, nameof(gamma));
            if (gamma.LastDim != cols || gamma.Length % cols != 0) throw new ArgumentException($"gamma {gamma.ShapeString} must be [groups, {cols}].", nameof(gamma));
            groups = (int)(gamma.Length / cols);
        }
        void* pid = CheckGroupIds(groupIds, rows, groups, gamma is not null);
        bool ids64 = groupIds?.DType == DType.Int64;

        float* pdx = null;
        if (dx is not null)
        {
            pdx = F(dx, nameof(dx));
            CheckSameLength(x, dx, nameof(dx));
        }
        bool fused = FusedRows(cols), parameters = dgamma is not null || dbeta is not null;
        bool dxWithPartials = fused && parameters && gamma is not null; // dx then runs in the partials' pass below
        if (dx is not null && !dxWithPartials)
        {
            var body = new LayerNormDxBody { X = px, Mean = pm, Rstd = pr, Gamma = pg, Dy = pdy, Dx = pdx, Groups = pid, Groups64 = ids64, Cols = cols, Fused = fused };
            _pool.For(rows, MinRows(cols), ref body);
        }
        if (!parameters) return;
        if (gamma is null) throw new ArgumentException("dgamma/dbeta need gamma (the LayerNorm was not affine).", nameof(gamma));
        float* pdg = dgamma is null ? null : F(dgamma, nameof(dgamma));
        float* pdb = dbeta is null ? null : F(dbeta, nameof(dbeta));
        if (dgamma is not null && dgamma.Length != gamma.Length) throw new ArgumentException($"dgamma {dgamma.ShapeString} must have gamma's shape {gamma.ShapeString}.", nameof(dgamma));
        if (dbeta is not null && dbeta.Length != gamma.Length) throw new ArgumentException($"dbeta {dbeta.ShapeString} must have gamma's shape {gamma.ShapeString}.", nameof(dbeta));

        // Stable counting sort of rows by group, then fixed blocks of ≤ ReduceRowBlock rows per group: the partition
        // depends only on the group ids, so the sums are identical for any thread count. Scratch arrays come from the
        // shared pool (no garbage per call); every element that is read is written first.
        var pool = ArrayPool<int>.Shared;
        int maxBlocks = rows / ReduceRowBlock + groups + 1;
        int[] order = pool.Rent(Math.Max(1, rows)), firstBlock = pool.Rent(groups + 1), counts = pool.Rent(groups + 1), cursor = pool.Rent(groups + 1);
        var blockArr = ArrayPool<GroupBlock>.Shared.Rent(maxBlocks);
        float[]? partial = null;
        try
        {
            Array.Clear(counts, 0, groups + 1);
            for (int i = 0; i < rows; i++) counts[(pid == null ? 0 : ReadIndex(pid, ids64, i)) + 1]++;
            for (int g = 0; g < groups; g++) counts[g + 1] += counts[g];
            Array.Copy(counts, cursor, groups + 1);
            for (int i = 0; i < rows; i++) order[cursor[pid == null ? 0 : ReadIndex(pid, ids64, i)]++] = i;
            int nBlocks = 0;
            for (int g = 0; g < groups; g++)
            {
                firstBlock[g] = nBlocks;
                for (int s = counts[g]; s < counts[g + 1]; s += ReduceRowBlock)
                    blockArr[nBlocks++] = new GroupBlock { Group = g, Start = s, Count = Math.Min(ReduceRowBlock, counts[g + 1] - s) };
            }
            firstBlock[groups] = nBlocks;
            partial = ArrayPool<float>.Shared.Rent(Math.Max(1, nBlocks * 2 * cols)); // each block clears its own rows
            fixed (int* po = order, pfb = firstBlock)
            fixed (GroupBlock* pbl = blockArr)
            fixed (float* pp = partial)
            {
                var pbody = new LayerNormParamPartialBody
                {
                    X = px, Mean = pm, Rstd = pr, Dy = pdy, Partial = pp, Order = po, Blocks = pbl, Cols = cols,
                    Fused = fused, Gamma = pg, Dx = dxWithPartials ? pdx : null,
                };
                _pool.For(nBlocks, 1, ref pbody);
                var rbody = new LayerNormParamReduceBody { Partial = pp, DGamma = pdg, DBeta = pdb, GroupFirstBlock = pfb, Cols = cols };
                _pool.For(groups, 1, ref rbody);
            }
        }
        finally
        {
            pool.Return(order);
            pool.Return(firstBlock);
            pool.Return(counts);
            pool.Return(cursor);
            ArrayPool<GroupBlock>.Shared.Return(blockArr);
            if (partial is not null) ArrayPool<float>.Shared.Return(partial);
        }
    }
}
