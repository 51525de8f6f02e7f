using System.Runtime.InteropServices;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// Per-call derived metadata of <see cref="CpuHstuAttention"/>, built in O(N + Q·log R) from validated
/// <see cref="HstuAttentionArgs"/>: segment starts, the query range of each instance, each query's visible key range,
/// the query blocks (work items) and a cost-balanced split of them over the workers. Native memory, freed by
/// <see cref="Dispose"/>.
/// </summary>
/// <remarks>
/// The visible keys of query token t in instance b (tokens [s, e), R tokens [rs, ts), T tokens [ts, e)) are exactly
/// [s, KeyEnd) ∪ {t if t ≥ KeyEnd}, where KeyEnd = rs + #{R keys with time &lt; time(t)} (a binary search, R being
/// time-sorted): all H keys, the strictly-earlier prefix of R, and the token itself. n(t) = KeyEnd − s + [t ≥ KeyEnd].
/// </remarks>
internal unsafe sealed class HstuAttentionPlan : IDisposable
{
    /// <summary>Queries per block are chosen so that a block has about this many (query, head) rows per kv head.</summary>
    private const int TargetRows = 32;

    public readonly int Batch, NumQueries, QueryBlock, MaxKeyLen, NumItems;
    public readonly int* RStart, TStart, QBegin, QEnd, MaxKeyEnd, KeyEnd, ItemInst, ItemQa, ItemQb;
    public readonly long* ItemCostPrefix; // [NumItems + 1]
    public readonly long VisiblePairs;
    private readonly List<IntPtr> _blocks = new();

    public HstuAttentionPlan(in HstuAttentionArgs a)
    {
        Batch = a.Batch;
        NumQueries = a.NumQueries;
        int hg = a.Heads / a.KvHeads;
        QueryBlock = Math.Max(1, TargetRows / hg);
        int* off = a.Offsets;
        byte* kind = a.Kind;
        long* time = a.Time;
        RStart = AllocInt(Batch); TStart = AllocInt(Batch); QBegin = AllocInt(Batch); QEnd = AllocInt(Batch);
        MaxKeyEnd = AllocInt(Batch); KeyEnd = AllocInt(NumQueries);
        int qi = 0, numItems = 0, maxLen = 0;
        long pairs = 0;
        for (int b = 0; b < Batch; b++)
        {
            int s = off[b], e = off[b + 1];
            int rs = s;
            while (rs < e && kind[rs] == HstuAttentionArgs.KindH) rs++;
            int ts = rs;
            while (ts < e && kind[ts] == HstuAttentionArgs.KindR) ts++;
            RStart[b] = rs; TStart[b] = ts;
            QBegin[b] = qi;
            if (NumQueries == 0) { }
            else if (a.QueryTokens == null) qi = e;
            else while (qi < NumQueries && a.QueryTokens[qi] < e) qi++;
            QEnd[b] = qi;
            int maxEnd = s;
            for (int j = QBegin[b]; j < qi; j++)
            {
                int t = a.QueryTokens == null ? j : a.QueryTokens[j];
                long tq = time[t];
                int lo = rs, hi = ts; // first R index with time >= tq
                while (lo < hi)
                {
                    int mid = (int)(((uint)lo + (uint)hi) >> 1);
                    if (time[mid] < tq) lo = mid + 1; else hi = mid;
                }
                KeyEnd[j] = lo;
                if (lo > maxEnd) maxEnd = lo;
                pairs += lo - s + (t >= lo ? 1 : 0);
            }
            MaxKeyEnd[b] = maxEnd;
            maxLen = Math.Max(maxLen, maxEnd - s);
            numItems += (qi - QBegin[b] + QueryBlock - 1) / QueryBlock;
        }
        MaxKeyLen = maxLen;
        VisiblePairs = pairs;
        NumItems = numItems;
        ItemInst = AllocInt(numItems); ItemQa = AllocInt(numItems); ItemQb = AllocInt(numItems);
        ItemCostPrefix = (long*)Alloc((numItems + 1) * sizeof(long));
        int it = 0;
        long cost = 0;
        ItemCostPrefix[0] = 0;
        for (int b = 0; b < Batch; b++)
        {
            for (int q0 = QBegin[b]; q0 < QEnd[b]; q0 += QueryBlock)
            {
                int q1 = Math.Min(QEnd[b], q0 + QueryBlock);
                int len = 0;
                for (int j = q0; j < q1; j++) len = Math.Max(len, KeyEnd[j] - off[b]);
                ItemInst[it] = b; ItemQa[it] = q0; ItemQb[it] = q1;
                cost += (long)(q1 - q0) * (len + 8) + 64; // rows × keys, plus per-block overhead
                ItemCostPrefix[++it] = cost;
            }
        }
    }

    /// <summary>
    /// Splits <paramref name="count"/> items with cost prefix sums <paramref name="prefix"/> ([count + 1]) into
    /// <paramref name="parts"/> contiguous ranges of about equal cost: part p is [bounds[p], bounds[p + 1]).
    /// Depends only on the costs and <paramref name="parts"/>.
    /// </summary>
    public static void Split(long* prefix, int count, int parts, int* bounds)
    {
        long total = prefix[count];
        int i = 0;
        bounds[0] = 0;
        for (int p = 1; p < parts; p++)
        {
            long target = total * p / parts;
            while (i < count && prefix[i] < target) i++;
            bounds[p] = i;
        }
        bounds[parts] = count;
    }

    internal void* Alloc(long bytes)
    {
        void* p = NativeMemory.Alloc((nuint)Math.Max(1, bytes));
        _blocks.Add((IntPtr)p);
        return p;
    }

    private int* AllocInt(int n) => (int*)Alloc((long)n * sizeof(int));

    public void Dispose()
    {
        foreach (var p in _blocks) NativeMemory.Free((void*)p);
        _blocks.Clear();
    }
}
