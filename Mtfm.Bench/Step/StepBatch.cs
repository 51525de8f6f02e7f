using Mtfm.Engine.Data;

namespace Mtfm.Bench.Step;

/// <summary>
/// A seeded, fixed-shape training batch for step benchmarks: <c>instances</c> user-windows of exactly
/// <c>h</c> H + <c>r</c> R + <c>t</c> T tokens over the synthetic schema (<see cref="SyntheticGenerator.Schema"/>).
/// H tokens are spread over the 30 days before the window and split 3:1 between the click and order sequences; R tokens
/// fall inside the one-day window (same 3:1 split); T tokens are exposures of the three scenarios inside the window,
/// half of them at the time of an R event (so the strict "earlier only" rule matters). Categorical ids are uniform over
/// each table, numeric values standard normal, click labels 1 with probability 0.3, conversion (where the scenario has
/// it) 1 with probability 0.1. Every instance has the same segment lengths, which a dense peer needs no padding for.
/// </summary>
internal static class StepBatch
{
    public const long WindowStart = SyntheticGenerator.Epoch + 20 * 86400L;

    public static JaggedBatch Build(DataLayout layout, int instances, int h, int r, int t, ulong seed)
    {
        int per = h + r + t, n = instances * per, tasks = layout.TaskCount, groups = layout.Groups.Count;
        var rng = new SplitMix64(seed);
        var offsets = new int[instances + 1];
        var seg = new byte[n]; var grp = new int[n]; var time = new long[n]; var row = new int[n]; var ev = new int[n];
        var tTok = new int[instances * t]; var tInst = new int[instances * t]; var tScen = new int[instances * t]; var tUser = new int[instances * t];
        var labels = new float[instances * t * tasks]; var mask = new byte[instances * t * tasks];
        var groupRows = new int[groups];
        int nseq = layout.SequenceCount, ns = layout.ScenarioCount;
        int p = 0, j = 0;
        var buf = new long[Math.Max(h, Math.Max(r, t))];
        for (int b = 0; b < instances; b++)
        {
            offsets[b] = p;
            Times(h, WindowStart - 30 * 86400L, WindowStart - 1);
            for (int i = 0; i < h; i++, p++) Token(p, SegmentKind.History, layout.HistoryGroup(rng.NextBelow(4) == 0 && nseq > 1 ? 1 : 0), buf[i]);
            Times(r, WindowStart, WindowStart + 86399);
            var rTimes = buf.AsSpan(0, r).ToArray();
            for (int i = 0; i < r; i++, p++) Token(p, SegmentKind.Realtime, layout.RealtimeGroup(rng.NextBelow(4) == 0 && nseq > 1 ? 1 : 0), rTimes[i]);
            Times(t, WindowStart, WindowStart + 86399);
            for (int i = 0; i < t; i++) if (r > 0 && (i & 1) == 0) buf[i] = rTimes[(int)rng.NextBelow((ulong)r)];
            Array.Sort(buf, 0, t);
            for (int i = 0; i < t; i++, p++, j++)
            {
                int s = (int)rng.NextBelow((ulong)ns);
                Token(p, SegmentKind.Target, layout.TargetGroup(s), buf[i]);
                tTok[j] = p; tInst[j] = b; tScen[j] = s; tUser[j] = b;
                for (int k = 0; k < tasks; k++)
                {
                    if (layout.ScenarioTaskLabel[s][k] == 0) continue;
                    mask[j * tasks + k] = 1;
                    labels[j * tasks + k] = rng.NextDouble() < (k == 0 ? 0.3 : 0.1) ? 1f : 0f;
                }
            }
        }
        offsets[instances] = p;
        var blocks = new GroupBlock[groups];
        for (int g = 0; g < groups; g++)
        {
            var gi = layout.Groups[g];
            int rows = groupRows[g], cw = gi.CategoricalTables.Length, nw = gi.NumericFeatures.Length;
            var cat = new int[rows * cw];
            var num = new float[rows * nw];
            for (int i = 0; i < rows; i++)
            {
                for (int c = 0; c < cw; c++) cat[i * cw + c] = (int)rng.NextBelow((ulong)layout.Tables[gi.CategoricalTables[c]].Rows);
                for (int c = 0; c < nw; c++) num[i * nw + c] = (float)rng.NextGaussian();
            }
            blocks[g] = new GroupBlock { Rows = rows, CategoricalWidth = cw, NumericWidth = nw, TokenIndex = new int[rows], Categorical = cat, Numeric = num };
        }
        for (int i = 0; i < n; i++) blocks[grp[i]].TokenIndex[row[i]] = i;
        return new JaggedBatch
        {
            InstanceCount = instances, TokenCount = n, TargetCount = j, TaskCount = tasks, Offsets = offsets, Segment = seg, Group = grp,
            Time = time, RowInGroup = row, EventId = ev, Blocks = blocks, TargetToken = tTok, TargetInstance = tInst, TargetScenario = tScen,
            TargetUser = tUser, Labels = labels, LabelMask = mask,
        };

        void Token(int pos, SegmentKind kind, int group, long at)
        {
            seg[pos] = (byte)kind; grp[pos] = group; time[pos] = at; row[pos] = groupRows[group]++; ev[pos] = pos;
        }

        void Times(int count, long lo, long hi)
        {
            for (int i = 0; i < count; i++) buf[i] = lo + (long)rng.NextBelow((ulong)(hi - lo + 1));
            Array.Sort(buf, 0, count);
        }
    }
}
