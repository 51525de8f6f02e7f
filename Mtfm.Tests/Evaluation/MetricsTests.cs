using Mtfm.Engine.Evaluation;

namespace Mtfm.Tests.Evaluation;

public class MetricsTests
{
    /// <summary>O(n²) pair counting: P(score_pos > score_neg) + ½ P(equal).</summary>
    private static double BruteAuc(float[] s, float[] y)
    {
        double num = 0, den = 0;
        for (int i = 0; i < s.Length; i++)
            for (int j = 0; j < s.Length; j++)
                if (y[i] == 1 && y[j] == 0)
                {
                    den++;
                    num += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
                }
        return den == 0 ? double.NaN : num / den;
    }

    private static (float[] s, float[] y) RandomSet(Random r, int n, int levels, double pPos)
    {
        var s = new float[n];
        var y = new float[n];
        for (int i = 0; i < n; i++)
        {
            // Few distinct levels → many ties; mildly informative.
            y[i] = r.NextDouble() < pPos ? 1 : 0;
            s[i] = levels == 1 ? 0.5f : (r.Next(levels) + (y[i] == 1 ? r.Next(2) : 0)) / (float)levels;
        }
        return (s, y);
    }

    [Theory]
    [InlineData(1, 50, 3, 0.3)]
    [InlineData(2, 200, 10, 0.5)]
    [InlineData(3, 400, 1000, 0.1)]
    [InlineData(4, 300, 1, 0.5)] // every score tied: AUC exactly 0.5
    public void AucMatchesBruteForcePairCountingWithTies(int seed, int n, int levels, double pPos)
    {
        var r = new Random(seed);
        for (int rep = 0; rep < 20; rep++)
        {
            var (s, y) = RandomSet(r, n, levels, pPos);
            double want = BruteAuc(s, y);
            double got = Auc.Compute(s, y);
            if (double.IsNaN(want)) Assert.True(double.IsNaN(got));
            else Assert.Equal(want, got, 12);
            if (levels == 1 && !double.IsNaN(want)) Assert.Equal(0.5, got);
        }
    }

    [Fact]
    public void AucKnownValues()
    {
        Assert.Equal(1.0, Auc.Compute([0.1f, 0.2f, 0.8f, 0.9f], [0, 0, 1, 1]));
        Assert.Equal(0.0, Auc.Compute([0.9f, 0.8f, 0.2f, 0.1f], [0, 0, 1, 1]));
        // pos {0.5, 0.7}, neg {0.5, 0.3}: pairs (0.5,0.5)=½, (0.5,0.3)=1, (0.7,0.5)=1, (0.7,0.3)=1 → 3.5/4
        Assert.Equal(0.875, Auc.Compute([0.5f, 0.7f, 0.5f, 0.3f], [1, 1, 0, 0]));
    }

    [Fact]
    public void AucOfOneClassOrEmptyIsNaN()
    {
        Assert.True(double.IsNaN(Auc.Compute([0.1f, 0.2f], [1, 1])));
        Assert.True(double.IsNaN(Auc.Compute([0.1f, 0.2f], [0, 0])));
        Assert.True(double.IsNaN(Auc.Compute([], [])));
    }

    [Fact]
    public void BadInputIsRejectedWithTheOffendingValue()
    {
        var e = Assert.Throws<ArgumentException>(() => Auc.Compute([0.1f, 0.2f], [1, 0.5f]));
        Assert.Contains("labels[1] = 0.5", e.Message);
        e = Assert.Throws<ArgumentException>(() => Auc.Compute([0.1f, float.NaN], [1, 0]));
        Assert.Contains("scores[1] = NaN", e.Message);
        e = Assert.Throws<ArgumentException>(() => Auc.Compute([0.1f], [1, 0]));
        Assert.Contains("labels", e.Message);
        e = Assert.Throws<ArgumentException>(() => LogLoss.Compute([1.5f], [1]));
        Assert.Contains("probabilities[0] = 1.5", e.Message);
    }

    [Fact]
    public void GaucHandComputedExample()
    {
        // user 1: 4 exposures, pos {0.9, 0.3}, neg {0.5, 0.1} → pairs: 0.9>0.5, 0.9>0.1, 0.3<0.5, 0.3>0.1 → 3/4
        // user 2: 3 exposures, pos {0.4}, neg {0.4, 0.2} → ½ + 1 over 2 → 0.75... use distinct: pos {0.2}, neg {0.4, 0.1} → 1/2
        // user 3: 2 exposures, both negative → skipped
        // user 4: 1 exposure positive → skipped
        // GAUC = (4·0.75 + 3·0.5) / 7 = 4.5 / 7
        float[] s = [0.9f, 0.2f, 0.5f, 0.3f, 0.4f, 0.1f, 0.1f, 0.6f, 0.7f, 0.8f];
        float[] y = [1, 1, 0, 1, 0, 0, 0, 0, 0, 1];
        long[] u = [1, 2, 1, 1, 2, 1, 2, 3, 3, 4];
        var g = GroupAuc.Compute(s, y, u);
        Assert.Equal(4.5 / 7, g.Value, 14);
        Assert.Equal(2, g.UsersCounted);
        Assert.Equal(2, g.UsersSkipped);
        Assert.Equal(7, g.ExposuresCounted);
    }

    [Fact]
    public void GaucMatchesPerUserBruteForce()
    {
        var r = new Random(7);
        int n = 600;
        var (s, y) = RandomSet(r, n, 7, 0.3);
        var u = new long[n];
        for (int i = 0; i < n; i++) u[i] = r.Next(40) * 1_000_000_007L;
        double num = 0, den = 0;
        foreach (var grp in Enumerable.Range(0, n).GroupBy(i => u[i]))
        {
            var idx = grp.ToArray();
            double a = BruteAuc(idx.Select(i => s[i]).ToArray(), idx.Select(i => y[i]).ToArray());
            if (double.IsNaN(a)) continue;
            num += idx.Length * a;
            den += idx.Length;
        }
        Assert.Equal(num / den, GroupAuc.Compute(s, y, u).Value, 12);
    }

    [Fact]
    public void GaucWithNoQualifyingUserIsNaN()
    {
        var g = GroupAuc.Compute([0.1f, 0.2f, 0.3f], [1, 0, 1], [1, 2, 3]);
        Assert.True(double.IsNaN(g.Value));
        Assert.Equal(0, g.UsersCounted);
        Assert.Equal(3, g.UsersSkipped);
    }

    [Fact]
    public void LogLossIsClippedAndMatchesFormula()
    {
        float[] p = [0.9f, 0.2f, 0f, 1f];
        float[] y = [1, 0, 1, 1];
        double eps = LogLoss.DefaultEpsilon;
        double want = (-Math.Log(0.9f) - Math.Log(1 - (double)0.2f) - Math.Log(eps) - Math.Log(1 - eps)) / 4;
        Assert.Equal(want, LogLoss.Compute(p, y), 12);
        Assert.True(LogLoss.Compute([0f], [1]) < 16.2); // finite: −ln(1e-7) ≈ 16.118
    }

    [Fact]
    public void BayesOptimalAucIsAucOfTrueProbabilities()
    {
        var r = new Random(11);
        int n = 3000;
        var p = new float[n];
        var y = new float[n];
        for (int i = 0; i < n; i++)
        {
            p[i] = MathF.Round((float)r.NextDouble(), 2); // ties
            y[i] = r.NextDouble() < p[i] ? 1 : 0;
        }
        double drawn = BayesOptimalAuc.Compute(p, y);
        // Expected value vs brute force Σ_{i≠j} p_i(1−p_j)·[…] on a subset, and the drawn AUC near it.
        var sub = p.AsSpan(0, 300).ToArray();
        double num = 0, den = 0;
        for (int i = 0; i < sub.Length; i++)
            for (int j = 0; j < sub.Length; j++)
            {
                if (i == j) continue;
                double w = (double)sub[i] * (1 - (double)sub[j]);
                den += w;
                num += w * (sub[i] > sub[j] ? 1 : sub[i] == sub[j] ? 0.5 : 0);
            }
        Assert.Equal(num / den, BayesOptimalAuc.Expected(sub), 10);
        // Uniform p: expected AUC = 5/6 in the continuum; the draw of 3000 lies within a few std errors.
        Assert.InRange(BayesOptimalAuc.Expected(p), 0.82, 0.845);
        Assert.InRange(drawn, 0.80, 0.87);
        Assert.Throws<ArgumentException>(() => BayesOptimalAuc.Compute([1.2f], [1]));
    }

    /// <summary>
    /// A model's expected AUC over label draws from the true probabilities equals the brute-force ratio
    /// Σ_{i≠j} p_i(1−p_j)·[s_i &gt; s_j or ½] / Σ_{i≠j} p_i(1−p_j) (scores with ties, not ordered like p); reversed
    /// scores give 1 minus it; with p as the scores it is the expected Bayes AUC; the accumulator reports it per cell
    /// and pooled where it was given the true probabilities, NaN where not.
    /// </summary>
    [Fact]
    public void ExpectedAucOfAModelEqualsTheBruteForceRatioOverLabelDraws()
    {
        var r = new Random(23);
        int n = 400;
        var p = new float[n]; var s = new float[n]; var neg = new float[n]; var y = new float[n];
        for (int i = 0; i < n; i++)
        {
            p[i] = (float)r.NextDouble();
            s[i] = MathF.Round(0.5f * p[i] + 0.5f * (float)r.NextDouble(), 1); // noisy, with ties
            neg[i] = -s[i];
            y[i] = r.NextDouble() < p[i] ? 1 : 0;
        }
        double num = 0, den = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                if (i == j) continue;
                double w = (double)p[i] * (1 - (double)p[j]);
                den += w;
                num += w * (s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0);
            }
        double e = BayesOptimalAuc.Expected(s, p);
        Assert.Equal(num / den, e, 10);
        Assert.Equal(1 - e, BayesOptimalAuc.Expected(neg, p), 10);
        Assert.True(e < BayesOptimalAuc.Expected(p, p), "a noisy score ranks below the true probabilities in expectation");
        Assert.Equal(BayesOptimalAuc.Expected(p), BayesOptimalAuc.Expected(p, p));
        Assert.Throws<ArgumentException>(() => BayesOptimalAuc.Expected([0.5f], [0.5f, 0.5f]));
        Assert.Throws<ArgumentException>(() => BayesOptimalAuc.Expected([float.NaN], [0.5f]));

        // Through the accumulator: scenario 0 holds the even exposures, scenario 1 the odd ones.
        var acc = new MetricAccumulator(2, 1, trueProbabilities: true);
        var present = Enumerable.Repeat((byte)1, n).ToArray();
        var users = Enumerable.Range(0, n).Select(i => (long)(i % 37)).ToArray();
        var scen = Enumerable.Range(0, n).Select(i => i % 2).ToArray();
        var probs = s.Select(v => Math.Clamp(v, 0f, 1f)).ToArray();
        acc.Add(probs, y, present, users, scen, p);
        var even = Enumerable.Range(0, n).Where(i => i % 2 == 0).ToArray();
        Assert.Equal(BayesOptimalAuc.Expected(even.Select(i => probs[i]).ToArray(), even.Select(i => p[i]).ToArray()), acc.Compute(0, 0).ExpectedAuc, 12);
        Assert.Equal(BayesOptimalAuc.Expected(probs, p), acc.ComputePooled(0).ExpectedAuc, 12);
        var ex = Assert.Throws<ArgumentException>(() => acc.Add(probs, y, present, users, scen));
        Assert.Contains("trueProbabilities", ex.Message);
        var plain = new MetricAccumulator(2, 1);
        plain.Add(probs, y, present, users, scen);
        Assert.True(double.IsNaN(plain.Compute(0, 0).ExpectedAuc));
        Assert.Equal(acc.Compute(1, 0).Auc, plain.Compute(1, 0).Auc);
    }

    [Fact]
    public void AccumulatorMatchesDirectComputationPerScenarioAndTask()
    {
        var r = new Random(5);
        const int scenarios = 3, tasks = 2;
        var acc = new MetricAccumulator(scenarios, tasks);
        var all = new List<(int s, int t, float p, float y, long u)>();
        for (int batch = 0; batch < 7; batch++)
        {
            int n = r.Next(1, 80);
            var p = new float[n * tasks];
            var y = new float[n * tasks];
            var m = new byte[n * tasks];
            var u = new long[n];
            var sc = new int[n];
            for (int e = 0; e < n; e++)
            {
                u[e] = r.Next(15);
                sc[e] = r.Next(scenarios);
                for (int t = 0; t < tasks; t++)
                {
                    int k = e * tasks + t;
                    m[k] = (byte)(t == 1 && sc[e] == 2 ? 0 : r.Next(5) == 0 ? 0 : 1); // scenario 2 has no CTCVR label
                    y[k] = m[k] == 1 ? (r.Next(3) == 0 ? 1 : 0) : 7f; // absent labels may hold garbage
                    p[k] = MathF.Round((float)r.NextDouble(), 1);
                    if (m[k] == 1) all.Add((sc[e], t, p[k], y[k], u[e]));
                }
            }
            acc.Add(p, y, m, u, sc);
        }
        Assert.Equal(all.Count, acc.Count);
        var rows = acc.ComputeAll();
        Assert.Equal(scenarios * tasks + tasks, rows.Count);
        foreach (var row in rows)
        {
            var cell = all.Where(x => x.t == row.Task && (row.Scenario < 0 || x.s == row.Scenario)).ToArray();
            float[] p = cell.Select(x => x.p).ToArray(), y = cell.Select(x => x.y).ToArray();
            Assert.Equal(cell.Length, row.Exposures);
            Assert.Equal(cell.Count(x => x.y == 1), row.Positives);
            if (cell.Length == 0)
            {
                Assert.True(double.IsNaN(row.Auc) && double.IsNaN(row.Gauc) && double.IsNaN(row.LogLoss));
                continue;
            }
            Assert.Equal(BruteAuc(p, y), row.Auc, 12);
            Assert.Equal(GroupAuc.Compute(p, y, cell.Select(x => x.u).ToArray()).Value, row.Gauc, 12);
            Assert.Equal(LogLoss.Compute(p, y), row.LogLoss, 12);
        }
        Assert.Equal(0, acc.Compute(2, 1).Exposures);
        acc.Reset();
        Assert.Equal(0, acc.Count);
    }

    [Fact]
    public void AccumulatorRejectsBadBatchWithoutChangingState()
    {
        var acc = new MetricAccumulator(2, 1);
        var e = Assert.Throws<ArgumentException>(() => acc.Add([0.5f, 0.5f], [1, 0], [1, 1], [1, 2], [0, 2]));
        Assert.Contains("scenarioIds[1] = 2", e.Message);
        e = Assert.Throws<ArgumentException>(() => acc.Add([0.5f, 0.5f], [1, 0.5f], [1, 1], [1, 2], [0, 1]));
        Assert.Contains("labels[1] = 0.5", e.Message);
        e = Assert.Throws<ArgumentException>(() => acc.Add([0.5f], [1, 0], [1, 1], [1, 2], [0, 1]));
        Assert.Contains("probabilities", e.Message);
        Assert.Equal(0, acc.Count);
        acc.Add([0.5f, 0.5f], [1, 0.5f], [1, 0], [1, 2], [0, 1]); // absent label may be anything
        Assert.Equal(1, acc.Count);
    }
}
