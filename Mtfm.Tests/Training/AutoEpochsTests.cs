using Mtfm.Engine.Training;
using Xunit;

namespace Mtfm.Tests.Training;

public class AutoEpochsTests
{
    [Theory]
    [InlineData(1, 7)]        // a tiny log: the most passes
    [InlineData(204, 7)]      // MovieLens ml-latest-small (tiny, 4,096 tokens): ⌈3000/204⌉ = 15 → 7
    [InlineData(429, 7)]
    [InlineData(430, 7)]      // ⌈3000/430⌉ = 7
    [InlineData(500, 6)]
    [InlineData(1104, 3)]     // the default synthetic log
    [InlineData(1500, 2)]
    [InlineData(1501, 2)]
    [InlineData(2999, 2)]
    [InlineData(3000, 1)]
    [InlineData(1_000_000, 1)] // a large log: one pass
    public void AutomaticEpochsAimForTheStepBudget(long batchesPerEpoch, int expected)
    {
        Assert.Equal(expected, new TrainOptions().ResolveEpochs(batchesPerEpoch));
    }

    [Fact]
    public void AnExplicitEpochCountIsKept()
    {
        Assert.Equal(4, new TrainOptions { Epochs = 4 }.ResolveEpochs(1_000_000));
        Assert.Equal(9, new TrainOptions { Epochs = 9 }.ResolveEpochs(1));
    }

    [Fact]
    public void ANegativeEpochCountIsRefused()
    {
        var ex = Assert.Throws<ArgumentException>(() => new TrainOptions { Epochs = -1 }.Validate());
        Assert.Contains("Epochs = -1", ex.Message);
        new TrainOptions { Epochs = 0 }.Validate(); // 0 = automatic
    }
}
