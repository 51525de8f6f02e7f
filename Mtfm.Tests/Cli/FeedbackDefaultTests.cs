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
}
