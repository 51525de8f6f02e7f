using Mtfm.Engine.Hosting;
using Mtfm.Engine.Native;

namespace Mtfm.Tests.Core;

/// <summary>
/// The engine's layering, checked on the compiled assemblies (<see cref="EngineDependencies"/>): the backends know
/// nothing of the model, the data, training or serving; the data pipeline knows nothing of the network; serving does
/// not reach into training. An exception is listed by name; a new violation fails with its example reference, and a
/// listed exception that no longer occurs fails too, so the list only shrinks.
/// </summary>
public sealed class DependencyRuleTests
{
    /// <summary>Each area and the areas it may reference (besides itself). "" is the root namespace.</summary>
    private static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["Native"] = [],
        ["Backends"] = ["Tensors", "Native"],
        ["Tensors"] = ["Backends", "Native"], // the backend seam: a tensor is a handle into a backend
        ["Autograd"] = ["Tensors", "Backends"],
        ["Data"] = [],
        ["Evaluation"] = ["Model", "Nn", "Autograd", "Tensors", "Backends", "Data"],
        ["Nn"] = ["Autograd", "Tensors", "Backends", "Data"],
        ["Model"] = ["Nn", "Autograd", "Tensors", "Backends", "Data"],
        ["IO"] = ["Model", "Nn", "Autograd", "Tensors", "Backends", "Data"],
        ["Training"] = ["Model", "Nn", "Autograd", "Tensors", "Backends", "Native", "Data", "Evaluation", "IO"],
        ["Serving"] = ["Model", "Nn", "Autograd", "Tensors", "Backends", "Data", "IO", "Evaluation"],
        ["Hosting"] = ["Serving", "Training", "Evaluation", "Model", "Nn", "Autograd", "Tensors", "Backends", "Native",
            "Data", "IO"],
    };

    /// <summary>
    /// Known violations still to remove (issue 10), each with why it is there. Keep this list short and exact.
    /// </summary>
    private static readonly (string From, string To, string Why)[] KnownExceptions =
    [
    ];

    /// <summary>
    /// The areas the rules speak of are folders: every engine source file declares the namespace of its top folder
    /// (Mtfm.Engine/Backends/Cuda/X.cs is in Mtfm.Engine.Backends…), so a file cannot escape its rules by its namespace.
    /// </summary>
    [Fact]
    public void EverySourceFileIsInTheAreaOfItsFolder()
    {
        string root = Path.Combine(Mtfm.Tests.Hosting.PublicApiTests.RepoRoot(), "Mtfm.Engine");
        var wrong = new List<string>();
        foreach (var file in Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(root, file).Replace('\\', '/');
            if (rel.StartsWith("obj/", StringComparison.Ordinal) || rel.StartsWith("bin/", StringComparison.Ordinal)) continue;
            string folder = rel.Contains('/') ? rel[..rel.IndexOf('/')] : "";
            var ns = File.ReadLines(file).FirstOrDefault(l => l.StartsWith("namespace ", StringComparison.Ordinal));
            string? area = EngineDependencies.Area(ns?["namespace ".Length..].TrimEnd(';', ' ', '{'));
            if (area != folder) wrong.Add($"{rel}: {ns ?? "(no namespace)"}");
        }
        Assert.True(wrong.Count == 0, "files outside their folder's namespace:\n" + string.Join("\n", wrong));
    }

    /// <summary>The rules themselves form layers: no cycle among allowed references but the tensor/backend seam.</summary>
    [Fact]
    public void TheAllowedReferencesHaveNoCycle()
    {
        foreach (var start in Allowed.Keys)
        {
            var seen = new HashSet<string>();
            var stack = new Stack<(string Area, string Path)>();
            foreach (var next in Allowed[start]) stack.Push((next, start + " → " + next));
            while (stack.Count > 0)
            {
                var (area, path) = stack.Pop();
                if (area == start && path != "Tensors → Backends → Tensors" && path != "Backends → Tensors → Backends")
                    Assert.Fail("the allowed references have a cycle: " + path);
                if (area == start || !seen.Add(area) || !Allowed.TryGetValue(area, out var nexts)) continue;
                foreach (var next in nexts) stack.Push((next, path + " → " + next));
            }
        }
    }

    [Fact]
    public void EngineAreasReferenceOnlyWhatTheLayeringAllows()
    {
        var edges = EngineDependencies.Edges(typeof(TrainedModel).Assembly, typeof(CudaNotAvailableException).Assembly);
        var known = KnownExceptions.Select(e => (e.From, e.To)).ToHashSet();
        var problems = new List<string>();
        foreach (var ((from, to), example) in edges.OrderBy(e => e.Key))
        {
            if (!Allowed.TryGetValue(from, out var ok))
                problems.Add($"area '{from}' has no rule (add it to {nameof(Allowed)}): {example}");
            else if (!ok.Contains(to) && !known.Contains((from, to)))
                problems.Add($"{from} must not reference {to}: {example}");
        }
        foreach (var (from, to, _) in KnownExceptions)
            if (!edges.ContainsKey((from, to)))
                problems.Add($"{from} → {to} is listed as a known exception but no longer occurs: remove it from the list");
        Assert.True(problems.Count == 0, string.Join("\n", problems) + "\n\nall edges:\n" +
            string.Join("\n", edges.OrderBy(e => e.Key).Select(e => $"  {e.Key.From} → {e.Key.To}: {e.Value}")));
    }
}
