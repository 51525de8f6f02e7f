using Mtfm.Engine.Training;

namespace Mtfm.Tests.Training;

public class ScheduleClippingStoppingTests
{
    [Fact]
    public void WarmupThenCosineToFloor()
    {
        var s = new LearningRateSchedule(peak: 1e-3f, floor: 1e-5f, warmupSteps: 10, totalSteps: 110, DecayShape.Cosine);
        Assert.Equal(1e-4f, s.At(0), 1e-9f);
        Assert.Equal(5e-4f, s.At(4), 1e-9f);
        Assert.Equal(1e-3f, s.At(9), 1e-9f);
        Assert.Equal(1e-3f, s.At(10), 1e-9f);                      // x = 0
        Assert.Equal((1e-3 + 1e-5) / 2, s.At(60), 1e-9);           // x = 0.5
        Assert.Equal(1e-5f, s.At(110));
        Assert.Equal(1e-5f, s.At(1_000_000));
        for (long i = 10; i < 110; i++) Assert.True(s.At(i + 1) <= s.At(i)); // monotone decay
    }

    [Fact]
    public void LinearDecayAndNoWarmup()
    {
        var s = new LearningRateSchedule(2f, 0f, 0, 4, DecayShape.Linear);
        Assert.Equal(new[] { 2f, 1.5f, 1f, 0.5f, 0f, 0f }, Enumerable.Range(0, 6).Select(i => s.At(i)).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule(1f, 2f, 0, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule(1f, 0f, 5, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.At(-1));
    }

    [Fact]
    public void GlobalNormClipsDenseAndSparseTogether()
    {
        var r = new Random(2);
        var dense = Enumerable.Range(0, 10_000).Select(_ => (float)(r.NextDouble() - 0.5)).ToArray();
        var sparseRows = Enumerable.Range(0, 3 * 16).Select(_ => (float)(r.NextDouble() * 4 - 2)).ToArray();
        double want = Math.Sqrt(dense.Concat(sparseRows).Sum(x => (double)x * x));
        var d0 = (float[])dense.Clone();
        var s0 = (float[])sparseRows.Clone();
        double norm = GradientClipping.ClipByGlobalNorm([dense, sparseRows], 1f);
        Assert.Equal(want, norm, 6);
        double after = Math.Sqrt(dense.Concat(sparseRows).Sum(x => (double)x * x));
        Assert.Equal(1.0, after, 4);
        Assert.Equal(d0[17] / want, dense[17], 5);
        Assert.Equal(s0[3] / want, sparseRows[3], 5);
    }

    [Fact]
    public void ClippingBelowThresholdChangesNothingAndNaNThrows()
    {
        var g = new float[] { 0.3f, -0.4f };
        Assert.Equal(0.5, GradientClipping.ClipByGlobalNorm([g], 1f), 6);
        Assert.Equal(new[] { 0.3f, -0.4f }, g);
        var bad = new float[] { 1f, float.NaN };
        var e = Assert.Throws<ArithmeticException>(() => GradientClipping.ClipByGlobalNorm([bad], 1f));
        Assert.Contains("NaN", e.Message);
        Assert.Equal(1f, bad[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => GradientClipping.ScaleFactor(1, 0f));
    }

    [Fact]
    public void EarlyStoppingTracksBestAndSignalsRestore()
    {
        var es = new EarlyStopping(patience: 2, MetricGoal.Maximize, minDelta: 0.001);
        var d = es.Report(100, 0.70);
        Assert.True(d.IsNewBest); Assert.False(d.ShouldStop);
        d = es.Report(200, 0.72);
        Assert.True(d.IsNewBest);
        d = es.Report(300, 0.7205); // below minDelta
        Assert.False(d.IsNewBest); Assert.Equal(1, d.EvaluationsSinceBest); Assert.False(d.ShouldStop);
        d = es.Report(400, double.NaN); // NaN is never an improvement
        Assert.True(d.ShouldStop); Assert.True(d.RestoreBest);
        Assert.Equal(0.72, d.BestValue); Assert.Equal(200, d.BestStep);
        Assert.Throws<InvalidOperationException>(() => es.Report(500, 0.9));
    }

    [Fact]
    public void EarlyStoppingMinimizeAndStepOrder()
    {
        var es = new EarlyStopping(1, MetricGoal.Minimize);
        Assert.True(es.Report(1, 0.5).IsNewBest);
        Assert.True(es.Report(2, 0.4).IsNewBest);
        Assert.Throws<ArgumentOutOfRangeException>(() => es.Report(2, 0.3));
        var d = es.Report(3, 0.45);
        Assert.True(d.ShouldStop);
        Assert.Equal(2, d.BestStep);
    }
}
