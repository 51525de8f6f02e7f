using System.Reflection;
using Mtfm.Engine.Hosting;
using Mtfm.Engine.Native;

namespace Mtfm.Tests.Hosting;

/// <summary>
/// The public surface of the packed assemblies equals the listing in <c>api/</c>: an accidental public change fails
/// here with the differing lines and the command that regenerates the listing.
/// </summary>
public sealed class PublicApiTests
{
    public static TheoryData<string> Assemblies => new() { "Mtfm.Engine", "Mtfm.Engine.Native" };

    [Theory]
    [MemberData(nameof(Assemblies))]
    public void PublicSurfaceMatchesTheCheckedInListing(string name)
    {
        var asm = name == "Mtfm.Engine" ? typeof(TrainedModel).Assembly : typeof(CudaNotAvailableException).Assembly;
        string actual = PublicApiListing.Text(asm);
        string path = Path.Combine(RepoRoot(), "api", name + ".txt");
        if (Environment.GetEnvironmentVariable("MTFM_UPDATE_API") == "1")
        {
            File.WriteAllText(path, actual);
            return;
        }
        string expected = File.Exists(path) ? File.ReadAllText(path).ReplaceLineEndings("\n") : "";
        if (expected == actual) return;
        var e = Qualified(expected).ToHashSet(StringComparer.Ordinal);
        var a = Qualified(actual).ToHashSet(StringComparer.Ordinal);
        var diff = Qualified(actual).Where(l => !e.Contains(l)).Select(l => "+ " + l)
            .Concat(Qualified(expected).Where(l => !a.Contains(l)).Select(l => "- " + l));
        Assert.Fail($"The public API of {name} differs from {path} (+ new, - gone):\n{string.Join("\n", diff)}\n\n" +
            "If the change is intended, regenerate the listing and commit it:\n" +
            "  MTFM_UPDATE_API=1 dotnet test Mtfm.Tests -c Release --filter FullyQualifiedName~PublicApiTests");
    }

    [Fact]
    public void ListingSeesAPublicMemberChange()
    {
        // The listing must react to what it guards: a type of this test assembly with a public member appears with it.
        var lines = PublicApiListing.Of(typeof(PublicApiTests).Assembly);
        Assert.Contains("sealed class Mtfm.Tests.Hosting.PublicApiTests", lines);
        Assert.Contains("  System.Void PublicSurfaceMatchesTheCheckedInListing(System.String name)", lines);
        Assert.DoesNotContain(lines, l => l.Contains("RepoRoot", StringComparison.Ordinal));
    }

    /// <summary>The listing's lines with each member line prefixed by its type, so that a diff line says whose member it is.</summary>
    private static IEnumerable<string> Qualified(string listing)
    {
        string type = "";
        foreach (var line in listing.Split('\n'))
        {
            if (line.Length == 0 || line.StartsWith('#')) continue;
            if (!line.StartsWith(' ')) { type = line.Split(' ').First(w => w.Contains('.', StringComparison.Ordinal)); yield return line; }
            else yield return type + " ::" + line[1..];
        }
    }

    /// <summary>The source tree: the first folder above the test binaries holding Mtfm.sln, else MTFM_REPO_ROOT (a published
    /// test build run elsewhere, e.g. on a lent GPU machine by scripts/gpu-check.sh, with the sources beside it).</summary>
    internal static string RepoRoot()
    {
        string? env = Environment.GetEnvironmentVariable("MTFM_REPO_ROOT");
        if (!string.IsNullOrEmpty(env) && File.Exists(Path.Combine(env, "Mtfm.sln"))) return Path.GetFullPath(env);
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Mtfm.sln"))) return d.FullName;
        throw new InvalidOperationException($"no Mtfm.sln above {AppContext.BaseDirectory} (set MTFM_REPO_ROOT to the source tree)");
    }
}
