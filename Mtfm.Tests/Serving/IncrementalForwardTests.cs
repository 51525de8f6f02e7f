using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Serving;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.Serving;

/// <summary>The cached H/R K/V path (spec §6) against the full forward.</summary>
public sealed class IncrementalForwardTests(ServingFixture fx) : IClassFixture<ServingFixture>
{
    private List<ScoreRequest> Requests(int instances)
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
                var r = ServingTestData.RequestFor(st, fx.Behaviour, targets.Where(x => st.SourceOf(x) == st.SourceOf(e)).ToList());
                r.Time = st.TimeOf(e);
                list.Add(r);
            }
        }
        return list;
    }

    [Theory]
    [InlineData("hta")]
    [InlineData("full")]
    [InlineData("target")]
    [InlineData("mmoe")]
    public void CachedContextScoresEqualTheFullForwardBitForBit(string variant)
    {
        var config = variant switch
        {
            "hta" => MtfmConfig.Tiny with { Blocks = 2 },
            "full" => MtfmConfig.Tiny with { Attention = AttentionMode.Full },
            "target" => MtfmConfig.Tiny with { Attention = AttentionMode.TargetOnly },
            _ => MtfmConfig.Mmoe,
        };
        using var backend = new CpuBackend(1);
        using var model = new MtfmModel(backend, config, fx.Store.Layout, seed: 3);
        var rng = new SplitMix64(9);
        foreach (var p in model.Parameters)
        {
            var host = new float[p.Value.Length];
            backend.Download<float>(p.Value, host);
            for (int i = 0; i < host.Length; i++) host[i] += (float)(0.05 * (rng.NextDouble() - 0.5));
            backend.Upload<float>(host, p.Value);
        }
        var enc = new RequestEncoder(fx.Store.Layout, fx.Stats);
        var inc = new IncrementalForward(model);
        int n = 0, differ = 0; float maxDiff = 0;
        foreach (var r in Requests(25))
        {
            var e = enc.Encode(r);
            var want = MtfmTrainer.Score(model, e.Batch);
            using var ctx = inc.EncodeContext(e.Batch, e.HistoryTokens + e.RealtimeTokens);
            var got = inc.ScoreTargets(ctx, e.Batch, e.Scenario);
            var again = inc.ScoreTargets(ctx, e.Batch, e.Scenario);             // the cache is reusable
            Assert.True(got.AsSpan().SequenceEqual(again));
            for (int i = 0; i < want.Length; i++)
                if (BitConverter.SingleToInt32Bits(want[i]) != BitConverter.SingleToInt32Bits(got[i])) { differ++; maxDiff = Math.Max(maxDiff, Math.Abs(want[i] - got[i])); }
            n += want.Length;
        }
        Assert.True(n > 50);
        Assert.True(differ == 0, $"{differ} of {n} probabilities differ (max |diff| {maxDiff:G3})");
    }

    [Fact]
    public void ScorerWithContextCacheMatchesAndReusesContextsWithoutLeaks()
    {
        using var backend = new CpuBackend(1);
        using var model = new MtfmModel(backend, MtfmConfig.Tiny, fx.Store.Layout, seed: 4);
        long baseline = backend.LiveAllocations;
        var requests = Requests(10);
        using (var plain = new Scorer(model, fx.Stats, contextCache: 0))
        using (var cached = new Scorer(model, fx.Stats, contextCache: 2))
        {
            foreach (var r in requests)
            {
                var want = plain.ScoreProbabilities(r);
                Assert.True(want.AsSpan().SequenceEqual(cached.ScoreProbabilities(r)));
                Assert.True(want.AsSpan().SequenceEqual(cached.ScoreProbabilities(r)));   // second time from the cache
            }
            // Every second call is a hit; so are first calls whose H/R equal the previous request's (no event in between).
            Assert.Equal(2 * requests.Count, cached.ContextCacheHits + cached.ContextCacheMisses);
            Assert.InRange(cached.ContextCacheMisses, 2, requests.Count - 1);
            Assert.Equal(0, plain.ContextCacheHits + plain.ContextCacheMisses);
            // Same H/R content, other candidates: a hit. Least recently used is evicted beyond the capacity.
            var a = requests[0]; var b = requests[^1];
            var other = new ScoreRequest { User = a.User, Scenario = a.Scenario, Time = a.Time, Events = a.Events, Candidates = [a.Candidates![0], a.Candidates[0]] };
            long hits = cached.ContextCacheHits;
            cached.ScoreProbabilities(other);
            Assert.Equal(hits, cached.ContextCacheHits);                                // requests[0] was evicted long ago
            cached.ScoreProbabilities(other);
            Assert.Equal(hits + 1, cached.ContextCacheHits);
            var two = cached.ScoreProbabilities(other);
            Assert.True(two.AsSpan(0, fx.Store.Layout.TaskCount).SequenceEqual(two.AsSpan(fx.Store.Layout.TaskCount)), "equal candidates score equally");
        }
        Assert.Equal(baseline, backend.LiveAllocations);
    }
}
