using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Serving;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.Serving;

/// <summary>The cached H/R K/V path of the model (spec §6: EncodeContext + ScoreTargets) against its full forward.</summary>
public sealed class CachedForwardTests(ServingFixture fx) : IClassFixture<ServingFixture>
{
    private List<ScoreRequest> Requests(int instances) => ServingTestData.TestWindowRequests(fx, instances);

    [Theory]
    [InlineData("hta")]
    [InlineData("full")]
    [InlineData("target")]
    [InlineData("mmoe")]
    [InlineData("hta-3-threads")]
    public void CachedContextScoresEqualTheFullForwardBitForBit(string variant)
    {
        var config = variant switch
        {
            "hta" or "hta-3-threads" => MtfmConfig.Tiny with { Blocks = 2 },
            "full" => MtfmConfig.Tiny with { Attention = AttentionMode.Full },
            "target" => MtfmConfig.Tiny with { Attention = AttentionMode.TargetOnly },
            _ => MtfmConfig.Mmoe,
        };
        using var backend = new CpuBackend(variant == "hta-3-threads" ? 3 : 1);
        using var model = new MtfmModel(backend, config, fx.Store.Layout, seed: 3);
        ServingTestData.Perturb(model, 9);
        var enc = new RequestEncoder(fx.Store.Layout, fx.Stats);
        int n = 0, differ = 0; float maxDiff = 0;
        foreach (var r in Requests(25))
        {
            var e = enc.Encode(r);
            var want = model.Score(e.Batch);
            using var ctx = model.EncodeContext(e.Batch, e.HistoryTokens + e.RealtimeTokens);
            var got = model.ScoreTargets([(ctx, e.Batch)], e.Scenario)[0];
            var again = model.ScoreTargets([(ctx, e.Batch)], e.Scenario)[0];    // the cache is reusable
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
        using (var plain = new Scorer(model, fx.Stats, contextCacheBytes: 0))
        using (var cached = new Scorer(model, fx.Stats, contextCacheBytes: 1L << 20))
        using (var tinyCache = new Scorer(model, fx.Stats, contextCacheBytes: 1))
        {
            foreach (var r in requests)
            {
                var want = plain.ScoreProbabilities(r);
                Assert.True(want.AsSpan().SequenceEqual(cached.ScoreProbabilities(r)));
                Assert.True(want.AsSpan().SequenceEqual(cached.ScoreProbabilities(r)));   // second time from the cache
                Assert.True(want.AsSpan().SequenceEqual(tinyCache.ScoreProbabilities(r))); // nothing fits: computed, used, freed
            }
            Assert.Equal((0, requests.Count), (tinyCache.ContextCacheHits, tinyCache.ContextCacheMisses));
            // Every second call is a hit; so are first calls whose H/R equal the previous request's (no event in between).
            Assert.Equal(2 * requests.Count, cached.ContextCacheHits + cached.ContextCacheMisses);
            Assert.InRange(cached.ContextCacheMisses, 2, requests.Count - 1);
            Assert.Equal(0, plain.ContextCacheHits + plain.ContextCacheMisses);
            // Same H/R content, other candidates: a hit.
            var a = requests[0];
            var other = new ScoreRequest { User = a.User, Scenario = a.Scenario, Time = a.Time, Events = a.Events, Candidates = [a.Candidates![0], a.Candidates[0]] };
            long hits = cached.ContextCacheHits;
            cached.ScoreProbabilities(other);
            Assert.Equal(hits + 1, cached.ContextCacheHits);
            var two = cached.ScoreProbabilities(other);
            Assert.True(two.AsSpan(0, fx.Store.Layout.TaskCount).SequenceEqual(two.AsSpan(fx.Store.Layout.TaskCount)), "equal candidates score equally");
        }
        Assert.Equal(baseline, backend.LiveAllocations);
    }

    [Fact]
    public void ContextCacheEvictsLeastRecentlyUsedWithinItsByteBudget()
    {
        using var backend = new CpuBackend(1);
        using var model = new MtfmModel(backend, MtfmConfig.Tiny, fx.Store.Layout, seed: 4);
        long baseline = backend.LiveAllocations;
        var enc = new RequestEncoder(fx.Store.Layout, fx.Stats);
        var keys = new List<string>();
        var contexts = new List<EncodedContext>();
        foreach (var r in Requests(40))
        {
            var e = enc.Encode(r);
            string key = ContextCache.KeyOf(e.Batch, e.HistoryTokens + e.RealtimeTokens);
            if (keys.Contains(key) || e.HistoryTokens == 0) continue;
            keys.Add(key);
            contexts.Add(model.EncodeContext(e.Batch, e.HistoryTokens + e.RealtimeTokens));
            if (keys.Count == 3) break;
        }
        Assert.Equal(3, keys.Count);
        long b0 = contexts[0].Bytes, b1 = contexts[1].Bytes, b2 = contexts[2].Bytes;
        using (var cache = new ContextCache(b0 + b1 + Math.Min(b0, b1) / 2))
        {
            Assert.True(cache.Add(keys[0], contexts[0]));
            Assert.True(cache.Add(keys[1], contexts[1]));
            Assert.True(cache.TryGet(keys[0], out var got0) && ReferenceEquals(got0, contexts[0]));   // 0 is now the most recent
            Assert.Equal(b0 + b1, cache.Bytes);
            if (b2 <= cache.MaxBytes)
            {
                Assert.True(cache.Add(keys[2], contexts[2]));                // evicts 1 (least recently used), maybe 0 too
                Assert.False(cache.TryGet(keys[1], out _));
                Assert.True(cache.Bytes <= cache.MaxBytes);
            }
            else
            {
                Assert.False(cache.Add(keys[2], contexts[2]));
                contexts[2].Dispose();
            }
            Assert.Equal(1, cache.Hits);
        }
        Assert.Equal(baseline, backend.LiveAllocations);                      // evicted and remaining contexts were freed
    }
}
