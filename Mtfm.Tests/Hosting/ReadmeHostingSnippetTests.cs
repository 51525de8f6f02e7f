namespace Mtfm.Tests.Hosting;

/// <summary>The README's hosting lines are code that compiles: every line is a line of samples/HelloMtfm/Program.cs, in order.</summary>
public sealed class ReadmeHostingSnippetTests
{
    [Fact]
    public void ReadmeHostingLinesAreTheSamplesLines()
    {
        string repo = PublicApiTests.RepoRoot();
        string readme = File.ReadAllText(Path.Combine(repo, "README.md")).ReplaceLineEndings("\n");
        int section = readme.IndexOf("## Hosting: train and score from your own application", StringComparison.Ordinal);
        Assert.True(section >= 0, "README.md has no hosting section");
        int start = readme.IndexOf("```csharp\n", section, StringComparison.Ordinal) + "```csharp\n".Length;
        int end = readme.IndexOf("```", start, StringComparison.Ordinal);
        var snippet = readme[start..end].Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
        Assert.InRange(snippet.Count, 8, 14);
        var sample = File.ReadAllLines(Path.Combine(repo, "samples", "HelloMtfm", "Program.cs")).Select(l => l.Trim()).ToList();
        int at = 0;
        foreach (var line in snippet)
        {
            int found = sample.IndexOf(line, at);
            Assert.True(found >= 0, $"README line not found (in order) in samples/HelloMtfm/Program.cs: {line}");
            at = found + 1;
        }
    }
}
