using System.Globalization;
using System.Text.Json;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Serving;

namespace Mtfm.Tests.Serving;

/// <summary>Turns events of an <see cref="EventStore"/> back into raw-valued scoring requests.</summary>
internal static class ServingTestData
{
    /// <summary>Requests of the tiny synthetic test window: every exposure of the first <paramref name="instances"/> instances, scored at its time with its instance's same-scenario exposures.</summary>
    public static List<ScoreRequest> TestWindowRequests(ServingFixture fx, int instances)
    {
        var st = fx.Store;
        var list = new List<ScoreRequest>();
        for (int i = 0; i < Math.Min(instances, fx.UserWindow.Count); i++)
        {
            var ev = fx.UserWindow.Events(i); var seg = fx.UserWindow.Segments(i);
            var targets = new List<int>();
            for (int p = 0; p < ev.Length; p++) if (seg[p] == (byte)SegmentKind.Target) targets.Add(ev[p]);
            foreach (var e in targets)
            {
                var r = RequestFor(st, fx.Behaviour, targets.Where(x => st.SourceOf(x) == st.SourceOf(e)).ToList());
                r.Time = st.TimeOf(e);
                list.Add(r);
            }
        }
        return list;
    }

    /// <summary>Moves every parameter of <paramref name="model"/> (GLN, rab and heads included) off its initial value by up to ±0.025, from <paramref name="seed"/>.</summary>
    internal static void Perturb(MtfmModel model, ulong seed)
    {
        var rng = new SplitMix64(seed);
        foreach (var p in model.Parameters)
        {
            var host = new float[p.Value.Length];
            model.Backend.Download<float>(p.Value, host);
            for (int i = 0; i < host.Length; i++) host[i] += (float)(0.05 * (rng.NextDouble() - 0.5));
            model.Backend.Upload<float>(host, p.Value);
        }
    }

    public static JsonElement Json(string text) => JsonDocument.Parse(text).RootElement.Clone();

    public static JsonElement Num(double v) => Json(v.ToString("R", CultureInfo.InvariantCulture));

    public static JsonElement Str(string s) => Json(JsonSerializer.Serialize(s));

    /// <summary>The raw value an event log would carry for table row <paramref name="row"/> of feature <paramref name="f"/>.</summary>
    public static JsonElement RawCategorical(DataLayout l, int f, int row)
    {
        var spec = l.Schema.Features[f];
        return spec.Kind switch
        {
            "id" => row > 0 ? Num(row - 1) : throw new InvalidOperationException("OOV rows have no raw value"),
            "categorical" => row > 0 ? Str(spec.Vocabulary![row - 1]) : Str("\u0001oov"),
            _ => throw new InvalidOperationException($"cannot invert feature kind {spec.Kind}"),
        };
    }

    /// <summary>Raw feature values of event <paramref name="ev"/> by feature name.</summary>
    public static Dictionary<string, JsonElement> RawFeatures(EventStore st, int ev)
    {
        var l = st.Layout;
        int src = st.SourceOf(ev);
        var d = new Dictionary<string, JsonElement>();
        var cat = st.Categorical(ev); var num = st.Numeric(ev);
        for (int k = 0; k < cat.Length; k++) { int f = l.SourceCat[src][k]; d[l.Schema.Features[f].Name] = RawCategorical(l, f, cat[k]); }
        for (int k = 0; k < num.Length; k++) { int f = l.SourceNum[src][k]; d[l.Schema.Features[f].Name] = Num(num[k]); }
        return d;
    }

    /// <summary>Every behaviour event of every user, in event-id (log) order.</summary>
    public static List<BehaviorEvent>[] BehaviourByUser(EventStore st)
    {
        var by = new List<BehaviorEvent>[st.UserCount];
        for (int u = 0; u < by.Length; u++) by[u] = [];
        for (int e = 0; e < st.Count; e++)
            if (!st.IsExposure(e))
                by[st.UserOf(e)].Add(new BehaviorEvent { Sequence = st.Layout.SourceName(st.SourceOf(e)), Time = st.TimeOf(e), Features = RawFeatures(st, e) });
        return by;
    }

    /// <summary>A request scoring <paramref name="exposures"/> (same user, time and scenario) with all of the user's behaviour events.</summary>
    public static ScoreRequest RequestFor(EventStore st, List<BehaviorEvent>[] behaviour, IReadOnlyList<int> exposures)
    {
        int e0 = exposures[0];
        return new ScoreRequest
        {
            User = st.UserKey(st.UserOf(e0)),
            Scenario = st.Layout.SourceName(st.SourceOf(e0)),
            Time = st.TimeOf(e0),
            Events = behaviour[st.UserOf(e0)],
            Candidates = exposures.Select(e => RawFeatures(st, e)).ToList(),
        };
    }
}

/// <summary>The tiny synthetic dataset with its test instances (both aggregations) and a seeded random-init model.</summary>
public sealed class ServingFixture : IDisposable
{
    public ServingFixture()
    {
        Store = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        var split = Store.Layout.Schema.Split!;
        Stats = Store.ComputeNumericStats(split.ValidStart);
        var order = Store.SortedByUserTime();
        UserWindow = UserLevelAggregator.Aggregate(Store, AggregationMode.UserWindow, SplitPart.Test, order);
        PerExposure = UserLevelAggregator.Aggregate(Store, AggregationMode.PerExposure, SplitPart.Test, order);
        Behaviour = ServingTestData.BehaviourByUser(Store);
        Backend = new CpuBackend(1);
        Model = new MtfmModel(Backend, MtfmConfig.Tiny, Store.Layout, seed: 7);
    }

    internal EventStore Store { get; }
    internal NumericStats Stats { get; }
    internal AggregatedInstances UserWindow { get; }
    internal AggregatedInstances PerExposure { get; }
    internal List<BehaviorEvent>[] Behaviour { get; }
    internal CpuBackend Backend { get; }
    internal MtfmModel Model { get; }

    public void Dispose()
    {
        Model.Dispose();
        Backend.Dispose();
    }
}
