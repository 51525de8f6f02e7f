using Mtfm.Cli.Commands;
using Mtfm.Engine.Data;

namespace Mtfm.Tests.Cli;

/// <summary>
/// --feedback auto (the default): click feedback tokens for MTFM presets with sequences on a schema that declares
/// none; never for the MMoE preset or LightGBM (which computes its own running CTRs); on/off force it.
/// </summary>
public class FeedbackDefaultTests
{
    private static bool HasFeedback(TrainRequest r) =>
        FeedbackTokens.Declared(PreparedData.LoadStore(r, TextWriter.Null, out _).Layout.Schema);

    [Fact]
    public void AutoAddsClickFeedbackOnlyWhereTheModelHasSequences()
    {
        var r = new TrainRequest { Data = "synthetic:tiny" };
        Assert.True(HasFeedback(r));
        Assert.False(HasFeedback(r with { Feedback = false }));
        Assert.True(HasFeedback(r with { Feedback = true }));
        Assert.False(HasFeedback(r with { Preset = "mmoe" }));
        Assert.False(HasFeedback(r with { Model = "lightgbm" }));
        Assert.False(HasFeedback(r with { Blocks = 0 }));
        Assert.True(HasFeedback(r with { Preset = "mmoe", Feedback = true }));
    }

    /// <summary>The click feedback --feedback adds counts 400 exposures in the history statistics (attention sees 50); a cap of 0 leaves none.</summary>
    [Fact]
    public void ClickFeedbackStatisticsCountFourHundredExposuresByDefault()
    {
        var r = new TrainRequest { Data = "synthetic:tiny" };
        var q = PreparedData.LoadStore(r, TextWriter.Null, out _).Layout.Schema.Sequences.Single(x => x.Name == "feedback");
        Assert.Equal((50, FeedbackTokens.ClickFeedbackStatisticsCap), (q.HistoryCap, q.StatisticsCap));
        Assert.Equal(400, FeedbackTokens.ClickFeedbackStatisticsCap);
        q = PreparedData.LoadStore(r with { FeedbackStatisticsCap = 0 }, TextWriter.Null, out _).Layout.Schema.Sequences.Single(x => x.Name == "feedback");
        Assert.Equal((50, (int?)null), (q.HistoryCap, q.StatisticsCap));
    }

    /// <summary>
    /// `mtfm eval` derives the feedback of the data as the model was trained: a model whose feedback has no statistics
    /// cap (every checkpoint from before the default) and one with the default both evaluate (a data schema that
    /// differs from the model's is refused, so deriving with today's default for the older model would fail).
    /// </summary>
    [Fact]
    public void EvalFollowsTheModelsFeedbackStatisticsCap()
    {
        string dir = Path.Combine(Path.GetTempPath(), "mtfm-fbstat-" + Guid.NewGuid().ToString("N"));
        var stdout = Console.Out;
        try
        {
            Console.SetOut(new StringWriter());
            var request = new TrainRequest { Data = "synthetic:tiny", Epochs = 1, OutDir = dir, Threads = 1 };
            foreach (var (name, cap) in new[] { ("old", (int?)0), ("new", null) })
            {
                Assert.Equal(0, TrainCommand.Run(request with { Name = name, FeedbackStatisticsCap = cap }));
                Assert.Equal(0, EvalCommand.Run(Path.Combine(dir, name), request));
            }
        }
        finally
        {
            Console.SetOut(stdout);
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
