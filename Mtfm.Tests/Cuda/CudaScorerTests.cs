using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;
using Mtfm.Engine.Serving;
using Mtfm.Tests.Serving;
using static Mtfm.Tests.Cuda.CudaTestDevice;

namespace Mtfm.Tests.Cuda;

/// <summary>Serving on the CUDA backend (issue 11 item 5): the scorer loaded onto a CUDA backend scores as on the CPU.</summary>
public sealed class CudaScorerTests(ServingFixture fx) : IClassFixture<ServingFixture>, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mtfm-cuda-scorer-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// A perturbed `tiny` checkpoint with population statistics, scored through the context cache (misses then hits),
    /// without it, and as one micro-batch of several requests (<c>ScoreMany</c>): every probability within 2e-5 of the
    /// CPU scorer's, and the cached scores equal the uncached ones of the same backend.
    /// </summary>
    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void ACheckpointScoresOnCudaAsOnTheCpu(string kind)
    {
        using var cuda = OpenBackend(kind);
        string file = Path.Combine(_dir, "model.safetensors");
        using (var cpu = new CpuBackend(1))
        using (var model = new MtfmModel(cpu, MtfmConfig.Tiny with { PopulationStatistics = true }, fx.Store.Layout, seed: 5))
        {
            ServingTestData.Perturb(model, 9);
            model.Population = PopulationStatistics.ForStore(fx.Store).FinalState;
            MtfmCheckpoint.Save(file, model, fx.Stats);
        }
        using var onCpu = Scorer.Load(file, threads: 1, contextCacheMegabytes: 0);
        using var cached = Scorer.Load(file, cuda, contextCacheMegabytes: 64);
        using var uncached = Scorer.Load(file, cuda, contextCacheMegabytes: 0);
        var requests = ServingTestData.TestWindowRequests(fx, 5);
        Assert.True(requests.Count > 10);
        for (int pass = 0; pass < 2; pass++) // the second pass hits the cache
        {
            foreach (var r in requests)
            {
                var want = onCpu.ScoreProbabilities(r);
                var got = cached.ScoreProbabilities(r);
                AssertClose(want, got, 2e-5f, 2e-5f, $"{kind} cached pass {pass}");
                Assert.Equal(uncached.ScoreProbabilities(r), got);
            }
        }
        var sameScenario = requests.Where(r => r.Scenario == requests[0].Scenario).Take(4).ToList();
        var prepared = sameScenario.Select(cached.Prepare).ToList();
        try
        {
            var many = cached.ScoreMany(prepared);
            for (int i = 0; i < many.Length; i++)
            {
                var one = onCpu.Score(sameScenario[i]);
                for (int c = 0; c < one.Scores.Count; c++)
                    foreach (var (task, p) in one.Scores[c]) Assert.True(Math.Abs(p - many[i].Scores[c][task]) <= 2e-5f, $"{kind} batched request {i} candidate {c} {task}");
            }
        }
        finally { foreach (var p in prepared) p.Dispose(); }
    }
}
