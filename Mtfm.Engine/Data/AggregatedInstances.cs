namespace Mtfm.Engine.Data;

/// <summary>
/// Output of <see cref="UserLevelAggregator"/>: instances as token lists referencing event ids of an
/// <see cref="EventStore"/> (struct-of-arrays). Instance i owns tokens [TokenOffsets[i], TokenOffsets[i+1]) in the
/// order H (time-ordered), R (time-ordered), T (time-ordered); ties in time are broken by event id.
/// </summary>
internal sealed class AggregatedInstances
{
    /// <summary>The events referenced.</summary>
    public EventStore Store { get; }
    /// <summary>How the instances were formed.</summary>
    public AggregationMode Mode { get; }
    internal GrowBuffer<int> User;
    internal GrowBuffer<long> WindowStart;
    internal GrowBuffer<int> Offsets;
    internal GrowBuffer<int> TokenEvent;
    internal GrowBuffer<byte> TokenSegment;
    internal GrowBuffer<short> TokenGroup;
    internal long TargetTokens;
    /// <summary>
    /// Older statistics-only events (<see cref="SequenceSpec.StatisticsCap"/>): per sequence every pushed behaviour
    /// event id in (user, time, id) order (only sequences whose statistics cap exceeds their H cap), and per instance and
    /// sequence (flattened, <see cref="Sequences"/> per instance) the start and count of its older events in that pool,
    /// so that the consecutive windows of a user share one copy.
    /// </summary>
    internal GrowBuffer<int>[] OlderPool;
    internal GrowBuffer<int> OlderStart, OlderCount;
    /// <summary>Behaviour sequences of the layout.</summary>
    internal int Sequences { get; }

    internal AggregatedInstances(EventStore store, AggregationMode mode, int capacity, int tokenCapacity)
    {
        Store = store; Mode = mode;
        User = new(capacity); WindowStart = new(capacity); Offsets = new(capacity + 1); Offsets.Add(0);
        TokenEvent = new(tokenCapacity); TokenSegment = new(tokenCapacity); TokenGroup = new(tokenCapacity);
        Sequences = store.Layout.SequenceCount;
        OlderPool = new GrowBuffer<int>[Sequences];
        for (int j = 0; j < Sequences; j++) OlderPool[j] = new(16);
        OlderStart = new(16); OlderCount = new(16);
    }

    /// <summary>Number of instances.</summary>
    public int Count => User.Count;
    /// <summary>Total tokens.</summary>
    public long TokenCount => TokenEvent.Count;
    /// <summary>Total T tokens (exposures).</summary>
    public long TargetCount => TargetTokens;
    /// <summary>Exposures per instance.</summary>
    public double ExposuresPerInstance => Count == 0 ? 0 : (double)TargetTokens / Count;
    /// <summary>Dense user index of instance <paramref name="i"/>.</summary>
    public int UserOf(int i) => User.Items[i];
    /// <summary>Window start (unix seconds) of instance <paramref name="i"/>.</summary>
    public long WindowStartOf(int i) => WindowStart.Items[i];
    /// <summary>Event ids of instance <paramref name="i"/>'s tokens.</summary>
    public ReadOnlySpan<int> Events(int i) => TokenEvent.Items.AsSpan(Offsets.Items[i], Offsets.Items[i + 1] - Offsets.Items[i]);
    /// <summary>Segments (see <see cref="SegmentKind"/>) of instance <paramref name="i"/>'s tokens.</summary>
    public ReadOnlySpan<byte> Segments(int i) => TokenSegment.Items.AsSpan(Offsets.Items[i], Offsets.Items[i + 1] - Offsets.Items[i]);
    /// <summary>Token groups of instance <paramref name="i"/>'s tokens.</summary>
    public ReadOnlySpan<short> Groups(int i) => TokenGroup.Items.AsSpan(Offsets.Items[i], Offsets.Items[i + 1] - Offsets.Items[i]);

    /// <summary>
    /// Events of instance <paramref name="i"/> older than its H tokens that only the T tokens' history statistics count
    /// (<see cref="SequenceSpec.StatisticsCap"/>; none unless a cap exceeds its sequence's H cap).
    /// </summary>
    public int OlderCountOf(int i)
    {
        if (OlderCount.Count == 0) return 0;
        int n = 0;
        for (int j = 0; j < Sequences; j++) n += OlderCount.Items[i * Sequences + j];
        return n;
    }

    /// <summary>One-line summary.</summary>
    public override string ToString() =>
        $"{Mode}: {Count} instances, {TokenCount} tokens, {TargetTokens} exposures ({ExposuresPerInstance:F2} per instance)";
}
