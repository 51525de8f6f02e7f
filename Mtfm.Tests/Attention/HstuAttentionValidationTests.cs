using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Tests.Attention;

public class HstuAttentionValidationTests
{
    private static HstuTestBatch Small(bool target = false)
        => HstuTestBatch.Make(2, [(2, 3, 2), (1, 0, 1)], 4, 2, 4, 4, target);

    private static ArgumentException Fails(HstuTestBatch b, string param, string valueText)
    {
        var ex = Assert.ThrowsAny<ArgumentException>(() => b.Forward(null));
        Assert.Equal(param, ex.ParamName);
        Assert.Contains(valueText, ex.Message);
        var ex2 = Assert.ThrowsAny<ArgumentException>(() => b.Backward(null));
        Assert.Equal(param, ex2.ParamName);
        return ex;
    }

    [Fact]
    public void NonMonotoneOffsets()
    {
        var b = Small();
        b.Offsets = [0, 7, 5, 9];
        Array.Resize(ref b.Kind, 9); Array.Resize(ref b.Time, 9);
        Fails(b, "offsets", "offsets[2] = 5");
    }

    [Fact]
    public void OffsetsNotStartingAtZero()
    {
        var b = Small();
        b.Offsets = [1, 7, 9];
        Fails(b, "offsets", "offsets[0] = 1");
    }

    [Fact]
    public void KindsOutOfOrder()
    {
        var b = Small();
        b.Kind[2] = 2; // H, H, T, R, R, T, T
        Fails(b, "kind", "kind[3] = 1");
    }

    [Fact]
    public void UnknownKind()
    {
        var b = Small();
        b.Kind[8] = 3;
        Fails(b, "kind", "kind[8] = 3");
    }

    [Fact]
    public void RNotTimeSorted()
    {
        var b = Small();
        b.Time[4] = b.Time[3] - 1;
        Fails(b, "time", $"time[4] = {b.Time[4]}");
    }

    [Fact]
    public void TNotTimeSorted()
    {
        var b = Small();
        b.Time[6] = b.Time[5] - 5;
        Fails(b, "time", $"time[6] = {b.Time[6]}");
    }

    [Fact]
    public void UnsortedHIsAccepted()
    {
        var b = Small();
        (b.Time[0], b.Time[1]) = (Math.Max(b.Time[0], b.Time[1]), Math.Min(b.Time[0], b.Time[1]) - 1);
        b.Forward(null);
    }

    [Fact]
    public void KvHeadsMustDivideHeads()
    {
        var b = Small();
        b.G = 3;
        Fails(b, "kvHeads", "kvHeads = 3");
    }

    [Fact]
    public void BadHeadsAndWidthsAndBuckets()
    {
        var b = Small(); b.H = 0; Fails(b, "heads", "heads = 0");
        b = Small(); b.Dqk = 0; Fails(b, "dqk", "dqk = 0");
        b = Small(); b.Dv = -2; Fails(b, "dv", "dv = -2");
        b = Small(); b.NumBuckets = 129; Fails(b, "numBuckets", "numBuckets = 129");
        b = Small(); b.Unit = 0; Fails(b, "unitSeconds", "unitSeconds = 0");
    }

    [Fact]
    public void RowStrideBelowWidth()
    {
        var b = Small(); b.Ldq = 4 * 4 - 1; Fails(b, "ldq", "ldq = 15");
        b = Small(); b.Ldk = 7; Fails(b, "ldk", "ldk = 7");
        b = Small(); b.Ldv = 5; Fails(b, "ldv", "ldv = 5");
        b = Small(); b.Ldo = 15;
        var ex = Assert.ThrowsAny<ArgumentException>(() => b.Forward(null));
        Assert.Equal("ldo", ex.ParamName);
        Assert.Contains("ldo = 15", ex.Message);
    }

    [Fact]
    public void QueryTokensNotAscendingOrOutOfRange()
    {
        var b = Small(true);
        b.Queries = [b.Queries![1], b.Queries[0], b.Queries[2]];
        Fails(b, "queryTokens", $"queryTokens[1] = {b.Queries[1]}");
        b = Small(true);
        b.Queries![2] = 99;
        Fails(b, "queryTokens", "queryTokens[2] = 99");
    }

    [Fact]
    public unsafe void NumQueriesMustMatchTokensInTheFullLayer()
    {
        var b = Small();
        fixed (int* off = b.Offsets) fixed (byte* kd = b.Kind) fixed (long* tm = b.Time)
        {
            var args = b.Args(off, kd, tm, null);
            args.NumQueries = 3;
            var ex = Assert.Throws<ArgumentException>(() => args.Validate());
            Assert.Equal("numQueries", ex.ParamName);
            Assert.Contains("numQueries = 3", ex.Message);
            args.NumQueries = 0; // an empty query list pinned as null
            args.Validate();
        }
    }
}
