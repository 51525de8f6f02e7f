namespace Mtfm.Engine.Data;

/// <summary>
/// Multi-scenario user-level sample aggregation (spec §2): one pass over user- and time-sorted events. Per (user,
/// window) holding at least one exposure: H = for each sequence the last <see cref="SequenceSpec.HistoryCap"/>
/// events strictly before the window start; R = the behaviour events inside the window; T = the window's exposures of
/// every scenario. Windows without exposures yield no instance (their behaviour still feeds later H).
/// </summary>
internal static class UserLevelAggregator
{
    /// <summary>Aggregates <paramref name="store"/>.</summary>
    /// <param name="store">The events.</param>
    /// <param name="mode">User-window or per-exposure instances.</param>
    /// <param name="part">Which part of the schema's temporal split to emit (H still uses all earlier events).</param>
    /// <param name="sortedOrder">Optional precomputed <see cref="EventStore.SortedByUserTime"/>.</param>
    /// <param name="progress">Optional progress: users done.</param>
    public static AggregatedInstances Aggregate(EventStore store, AggregationMode mode = AggregationMode.UserWindow,
        SplitPart part = SplitPart.All, int[]? sortedOrder = null, IProgress<int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        var l = store.Layout;
        var win = WindowSpec.From(l.Schema);
        long lo = long.MinValue, hi = long.MaxValue;
        if (part != SplitPart.All)
        {
            var sp = l.Schema.Split ?? throw new ArgumentException($"part {part} needs a schema split", nameof(part));
            (lo, hi) = part switch { SplitPart.Train => (long.MinValue, sp.ValidStart), SplitPart.Valid => (sp.ValidStart, sp.TestStart), _ => (sp.TestStart, long.MaxValue) };
        }
        var order = sortedOrder ?? store.SortedByUserTime();
        if (order.Length != store.Count) throw new ArgumentException($"sortedOrder has {order.Length} entries, store has {store.Count}", nameof(sortedOrder));
        var outp = new AggregatedInstances(store, mode, Math.Max(16, store.ExposureCount / (mode == AggregationMode.PerExposure ? 1 : 8)),
            (int)Math.Min(1L << 30, Math.Max(64L, 3L * store.Count)));
        var time = store.Time.Items; var user = store.User.Items; var source = store.Source.Items; var expo = store.ExposureIndex.Items;
        int ns = l.ScenarioCount;
        var history = new HistorySelector(l);
        var hBuf = new GrowBuffer<int>(256);
        var hSeq = new GrowBuffer<int>(256);
        // Older statistics-only events: per sequence whose statistics cap exceeds its H cap, every pushed event goes to
        // the instances' shared pool; an instance records where its older ones start and how many there are.
        bool withOlder = history.HasOlder;
        int nqs = l.SequenceCount;
        var hCap = l.Schema.Sequences.Select(q => q.HistoryCap).ToArray();
        var segStart = new int[nqs];
        int n = order.Length, i = 0, usersDone = 0;
        while (i < n)
        {
            int u = user[order[i]];
            int uEnd = i;
            while (uEnd < n && user[order[uEnd]] == u) uEnd++;
            history.Clear();
            for (int j = 0; j < nqs; j++) segStart[j] = outp.OlderPool[j].Count;
            int k = i;
            while (k < uEnd)
            {
                long w = win.IndexOf(time[order[k]]);
                long wStart = win.StartOf(w), wEnd = wStart + win.Length;
                int kEnd = k + 1;
                bool anyExpo = expo[order[k]] >= 0;
                while (kEnd < uEnd && time[order[kEnd]] < wEnd) { anyExpo |= expo[order[kEnd]] >= 0; kEnd++; }
                if (anyExpo && wStart >= lo && wStart < hi)
                {
                    // H: per sequence the last historyCap behaviours before the window, merged by (time, event id).
                    hBuf.Clear(); hSeq.Clear();
                    history.Merge(time, ref hBuf, ref hSeq);
                    int before = outp.Count;
                    if (mode == AggregationMode.UserWindow) EmitWindow(outp, l, order, source, expo, u, wStart, hBuf.Span, k, kEnd);
                    else EmitPerExposure(outp, l, order, time, source, expo, u, wStart, hBuf.Span, k, kEnd);
                    // Older events up to the statistics caps (what HistorySelector.MergeOlder selects): the selector's
                    // older events are the pool's pushes just before the last H cap of them.
                    if (withOlder)
                        for (int inst = before; inst < outp.Count; inst++)
                            for (int j = 0; j < nqs; j++)
                            {
                                int pushed = outp.OlderPool[j].Count - segStart[j];
                                int c = history.OlderCount(j);
                                outp.OlderStart.Add(segStart[j] + pushed - hCap[j] - c); outp.OlderCount.Add(c);
                            }
                }
                // Push this window's behaviour events (history for later windows).
                for (int m = k; m < kEnd; m++)
                {
                    int ev = order[m];
                    if (expo[ev] < 0)
                    {
                        history.Push(source[ev] - ns, ev);
                        if (history.KeepsOlder(source[ev] - ns)) outp.OlderPool[source[ev] - ns].Add(ev);
                    }
                }
                k = kEnd;
            }
            i = uEnd;
            if ((++usersDone & 1023) == 0) progress?.Report(usersDone);
        }
        progress?.Report(usersDone);
        return outp;
    }

    private static void AddToken(AggregatedInstances o, int ev, SegmentKind seg, int group)
    {
        o.TokenEvent.Add(ev); o.TokenSegment.Add((byte)seg); o.TokenGroup.Add((short)group);
    }

    private static void AddH(AggregatedInstances o, DataLayout l, short[] source, ReadOnlySpan<int> h)
    {
        int ns = l.ScenarioCount;
        foreach (var ev in h) AddToken(o, ev, SegmentKind.History, source[ev] - ns);
    }

    private static void EmitWindow(AggregatedInstances o, DataLayout l, int[] order, short[] source, int[] expo, int u, long wStart, ReadOnlySpan<int> h, int k, int kEnd)
    {
        int ns = l.ScenarioCount, nq = l.SequenceCount;
        AddH(o, l, source, h);
        for (int m = k; m < kEnd; m++) { int ev = order[m]; if (expo[ev] < 0) AddToken(o, ev, SegmentKind.Realtime, nq + source[ev] - ns); }
        for (int m = k; m < kEnd; m++) { int ev = order[m]; if (expo[ev] >= 0) { AddToken(o, ev, SegmentKind.Target, 2 * nq + source[ev]); o.TargetTokens++; } }
        o.User.Add(u); o.WindowStart.Add(wStart); o.Offsets.Add(o.TokenEvent.Count);
    }

    private static void EmitPerExposure(AggregatedInstances o, DataLayout l, int[] order, long[] time, short[] source, int[] expo, int u, long wStart, ReadOnlySpan<int> h, int k, int kEnd)
    {
        int ns = l.ScenarioCount, nq = l.SequenceCount;
        for (int m = k; m < kEnd; m++)
        {
            int t = order[m];
            if (expo[t] < 0) continue;
            AddH(o, l, source, h);
            for (int r = k; r < kEnd; r++)
            {
                int ev = order[r];
                if (time[ev] >= time[t]) break;
                if (expo[ev] < 0) AddToken(o, ev, SegmentKind.Realtime, nq + source[ev] - ns);
            }
            AddToken(o, t, SegmentKind.Target, 2 * nq + source[t]);
            o.TargetTokens++;
            o.User.Add(u); o.WindowStart.Add(wStart); o.Offsets.Add(o.TokenEvent.Count);
        }
    }
}
