namespace Mtfm.Tests.Fuzz;

/// <summary>Replays every input that ever failed a fuzz property (Mtfm.Tests/Fuzz/Corpus/&lt;target&gt;/*.bin).</summary>
public class FuzzCorpusTests
{
    public static TheoryData<string, string> Inputs()
    {
        var data = new TheoryData<string, string>();
        string root = Path.Combine(AppContext.BaseDirectory, "Fuzz", "Corpus");
        foreach (var target in FuzzTargets.All)
        {
            string dir = Path.Combine(root, target);
            if (!Directory.Exists(dir)) continue;
            foreach (var f in Directory.EnumerateFiles(dir, "*.bin").Order(StringComparer.Ordinal)) data.Add(target, Path.GetFileName(f));
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Inputs), DisableDiscoveryEnumeration = true)]
    public void CorpusInputGivesOnlyDocumentedErrors(string target, string file) =>
        FuzzTargets.Run(target, File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fuzz", "Corpus", target, file)), saveFailures: false);

    [Fact]
    public void TheCorpusIsCopiedToTheTestOutput() =>
        Assert.True(Directory.Exists(Path.Combine(AppContext.BaseDirectory, "Fuzz", "Corpus")), "Fuzz/Corpus is not copied next to the tests");
}
