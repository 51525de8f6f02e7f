namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// Jagged-batch metadata and head geometry of one HSTU attention call (<see cref="CpuHstuAttention"/>). Plain pointers:
/// the caller keeps the memory alive and unmoved for the duration of the call.
/// </summary>
/// <remarks>
/// <para><b>Tokens.</b> The batch holds <see cref="Batch"/> instances; instance b owns the global token rows
/// [<c>Offsets[b]</c>, <c>Offsets[b+1]</c>) with <c>Offsets[0] = 0</c>, non-decreasing (an empty instance is allowed),
/// total tokens N = <c>Offsets[Batch]</c>. Per token: <see cref="Kind"/> (<see cref="KindH"/> = 0, <see cref="KindR"/> = 1,
/// <see cref="KindT"/> = 2) and <see cref="Time"/> in seconds. Within an instance the kinds are non-decreasing
/// (H…, R…, T…), R times are non-decreasing and T times are non-decreasing (H times are free: H may be several
/// concatenated sequences).</para>
/// <para><b>Queries.</b> <see cref="QueryTokens"/> = null and <see cref="NumQueries"/> = N: every token is a query (full
/// layer); query i is token i. Otherwise query i is token <c>QueryTokens[i]</c>, strictly ascending, in [0, N) (target
/// layer: the T tokens). An empty query list may come as null with NumQueries = 0 (C# <c>fixed</c> pins an empty array
/// as null); then there is no query, O/dQ are untouched and dK/dV/dRab are zero.</para>
/// <para><b>Heads.</b> <see cref="Heads"/> = h query heads, <see cref="KvHeads"/> = g key/value heads, g divides h
/// (query head i reads kv head i / (h/g)); Q and K heads have width <see cref="Dqk"/>, V heads width <see cref="Dv"/>.
/// The relative time bias uses <see cref="NumBuckets"/> (NB, 1..128) and <see cref="UnitSeconds"/> (≥ 1), see
/// <see cref="HstuAttentionTimeBucket"/>.</para>
/// </remarks>
internal unsafe struct HstuAttentionArgs
{
    /// <summary>Token kind: history.</summary>
    public const byte KindH = 0;

    /// <summary>Token kind: real-time event.</summary>
    public const byte KindR = 1;

    /// <summary>Token kind: target (exposure).</summary>
    public const byte KindT = 2;

    /// <summary>Number of instances.</summary>
    public int Batch;

    /// <summary>[Batch + 1] token offsets, Offsets[0] = 0, non-decreasing.</summary>
    public int* Offsets;

    /// <summary>[N] token kinds (0 = H, 1 = R, 2 = T).</summary>
    public byte* Kind;

    /// <summary>[N] token times in seconds.</summary>
    public long* Time;

    /// <summary>[NumQueries] ascending query token indices, or null for "every token is a query" (or none, if NumQueries = 0).</summary>
    public int* QueryTokens;

    /// <summary>Number of query rows (N or 0 when <see cref="QueryTokens"/> is null).</summary>
    public int NumQueries;

    /// <summary>h: query heads.</summary>
    public int Heads;

    /// <summary>g: key/value heads (divides h).</summary>
    public int KvHeads;

    /// <summary>Width of one Q or K head.</summary>
    public int Dqk;

    /// <summary>Width of one V head.</summary>
    public int Dv;

    /// <summary>NB: buckets per time direction; the rab table has 2·NB − 1 entries per head.</summary>
    public int NumBuckets;

    /// <summary>Bucket unit in seconds.</summary>
    public long UnitSeconds;

    /// <summary>Metadata for a call with the default time buckets (NB = 32, unit = 1 s).</summary>
    public HstuAttentionArgs(int batch, int* offsets, byte* kind, long* time, int* queryTokens, int numQueries,
        int heads, int kvHeads, int dqk, int dv)
    {
        Batch = batch;
        Offsets = offsets;
        Kind = kind;
        Time = time;
        QueryTokens = queryTokens;
        NumQueries = numQueries;
        Heads = heads;
        KvHeads = kvHeads;
        Dqk = dqk;
        Dv = dv;
        NumBuckets = HstuAttentionTimeBucket.DefaultNumBuckets;
        UnitSeconds = HstuAttentionTimeBucket.DefaultUnitSeconds;
    }

    /// <summary>Entries of the rab table per head (2·NB − 1).</summary>
    public readonly int RabWidth => HstuAttentionTimeBucket.TableSize(NumBuckets);

    /// <summary>Total tokens N = Offsets[Batch] (call after <see cref="Validate"/>).</summary>
    public readonly int TotalTokens => Offsets[Batch];

    /// <summary>
    /// Checks the whole contract in one O(N + NumQueries) pass and throws <see cref="ArgumentException"/> (or
    /// <see cref="ArgumentNullException"/>) naming the argument, the index and the offending value.
    /// </summary>
    public readonly void Validate()
    {
        if (Batch < 0) throw new ArgumentException($"batch = {Batch} must be ≥ 0.", "batch");
        if (Offsets == null) throw new ArgumentNullException("offsets");
        if (Heads < 1) throw new ArgumentException($"heads = {Heads} must be ≥ 1.", "heads");
        if (KvHeads < 1) throw new ArgumentException($"kvHeads = {KvHeads} must be ≥ 1.", "kvHeads");
        if (Heads % KvHeads != 0)
            throw new ArgumentException($"kvHeads = {KvHeads} must divide heads = {Heads} (grouped-query attention).", "kvHeads");
        if (Dqk < 1) throw new ArgumentException($"dqk = {Dqk} must be ≥ 1.", "dqk");
        if (Dv < 1) throw new ArgumentException($"dv = {Dv} must be ≥ 1.", "dv");
        if (NumBuckets < 1 || NumBuckets > HstuAttentionTimeBucket.MaxNumBuckets)
            throw new ArgumentException($"numBuckets = {NumBuckets} must be in [1, {HstuAttentionTimeBucket.MaxNumBuckets}].", "numBuckets");
        if (UnitSeconds < 1) throw new ArgumentException($"unitSeconds = {UnitSeconds} must be ≥ 1.", "unitSeconds");
        if (Offsets[0] != 0) throw new ArgumentException($"offsets[0] = {Offsets[0]} must be 0.", "offsets");
        for (int b = 0; b < Batch; b++)
        {
            if (Offsets[b + 1] < Offsets[b])
                throw new ArgumentException(
                    $"offsets[{b + 1}] = {Offsets[b + 1]} is less than offsets[{b}] = {Offsets[b]}: offsets must be non-decreasing.", "offsets");
        }
        int n = Offsets[Batch];
        if (n > 0 && Kind == null) throw new ArgumentNullException("kind");
        if (n > 0 && Time == null) throw new ArgumentNullException("time");
        for (int b = 0; b < Batch; b++)
        {
            int s = Offsets[b], e = Offsets[b + 1];
            for (int t = s; t < e; t++)
            {
                byte kd = Kind[t];
                if (kd > KindT)
                    throw new ArgumentException($"kind[{t}] = {kd} (instance {b}) is not 0 (H), 1 (R) or 2 (T).", "kind");
                if (t == s) continue;
                byte prev = Kind[t - 1];
                if (kd < prev)
                    throw new ArgumentException(
                        $"kind[{t}] = {kd} follows kind[{t - 1}] = {prev} in instance {b}: tokens must be ordered H, then R, then T.", "kind");
                if (kd == prev && kd != KindH && Time[t] < Time[t - 1])
                    throw new ArgumentException(
                        $"time[{t}] = {Time[t]} is earlier than time[{t - 1}] = {Time[t - 1]} within the {(kd == KindR ? "R" : "T")} tokens of instance {b}: R and T tokens must be time-ordered.", "time");
            }
        }
        if (NumQueries < 0) throw new ArgumentException($"numQueries = {NumQueries} must be ≥ 0.", "numQueries");
        if (QueryTokens == null)
        {
            if (NumQueries != n && NumQueries != 0)
                throw new ArgumentException(
                    $"numQueries = {NumQueries} must equal the token count {n} (every token is a query) or 0 (no query) when queryTokens is null.", "numQueries");
        }
        else
        {
            for (int i = 0; i < NumQueries; i++)
            {
                int t = QueryTokens[i];
                if ((uint)t >= (uint)n)
                    throw new ArgumentException($"queryTokens[{i}] = {t} is outside [0, {n}).", "queryTokens");
                if (i > 0 && t <= QueryTokens[i - 1])
                    throw new ArgumentException(
                        $"queryTokens[{i}] = {t} is not greater than queryTokens[{i - 1}] = {QueryTokens[i - 1]}: query tokens must be strictly ascending.", "queryTokens");
            }
        }
    }

    /// <summary>Checks a row stride against the row width it must hold.</summary>
    internal static void CheckLd(int ld, int width, string name)
    {
        if (ld < width) throw new ArgumentException($"{name} = {ld} is less than the row width {width}.", name);
    }

    /// <summary>Checks that a buffer with <paramref name="rows"/> rows is present.</summary>
    internal static void CheckPtr(void* p, int rows, string name)
    {
        if (p == null && rows > 0) throw new ArgumentNullException(name);
    }
}
