using System.Reflection;

namespace Mtfm.Engine.Backends.Cuda;

/// <summary>The <c>cuda/*.cu</c> kernel sources and <c>cuda/*.cuh</c> headers embedded in this assembly.</summary>
internal static class CudaKernelSources
{
    private const string Prefix = "mtfm.cuda.";
    private static readonly Lazy<Dictionary<string, string>> s_all = new(LoadAll);

    private static Dictionary<string, string> LoadAll()
    {
        var asm = typeof(CudaKernelSources).Assembly;
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var name in asm.GetManifestResourceNames())
        {
            if (!name.StartsWith(Prefix, StringComparison.Ordinal))
                continue;
            using var s = asm.GetManifestResourceStream(name)!;
            using var r = new StreamReader(s);
            d[name[Prefix.Length..]] = r.ReadToEnd();
        }
        return d;
    }

    /// <summary>Kernel files (<c>*.cu</c>), sorted.</summary>
    public static IReadOnlyList<string> KernelFiles { get; } =
        [.. LoadAll().Keys.Where(k => k.EndsWith(".cu", StringComparison.Ordinal)).Order(StringComparer.Ordinal)];

    /// <summary>Headers (<c>*.cuh</c>) as include name → content, sorted by name.</summary>
    public static IReadOnlyList<KeyValuePair<string, string>> Headers { get; } =
        [.. LoadAll().Where(k => k.Key.EndsWith(".cuh", StringComparison.Ordinal)).OrderBy(k => k.Key, StringComparer.Ordinal)];

    /// <summary>The source of <paramref name="file"/> (e.g. "elementwise.cu").</summary>
    public static string Read(string file) =>
        s_all.Value.TryGetValue(file, out var s)
            ? s
            : throw new ArgumentException($"no embedded CUDA source named '{file}' (have: {string.Join(", ", s_all.Value.Keys)})", nameof(file));

    /// <summary>The <c>extern "C"</c> kernel names a source defines (the <c>MTFM_REGISTER_KERNEL(name)</c> lines).</summary>
    public static IReadOnlyList<string> KernelNames(string file)
    {
        var names = new List<string>();
        foreach (var line in Read(file).Split('\n'))
        {
            var t = line.Trim();
            const string reg = "MTFM_REGISTER_KERNEL(";
            if (t.StartsWith(reg, StringComparison.Ordinal) && t.EndsWith(')'))
                names.Add(t[reg.Length..^1]);
        }
        return names;
    }
}
