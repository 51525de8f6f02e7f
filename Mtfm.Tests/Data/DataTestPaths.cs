namespace Mtfm.Tests.Data;

internal static class DataTestPaths
{
    public static string Malformed(string file) => Path.Combine(AppContext.BaseDirectory, "Data", "Malformed", file);

    /// <summary>The shared data folder (env MTFM_SHARED, or a `shared/data` directory found walking up), or null.</summary>
    public static string? SharedData()
    {
        var env = Environment.GetEnvironmentVariable("MTFM_SHARED");
        if (!string.IsNullOrEmpty(env))
        {
            var d = Directory.Exists(Path.Combine(env, "data")) ? Path.Combine(env, "data") : env;
            if (Directory.Exists(d)) return d;
        }
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var c = Path.Combine(dir.FullName, "shared", "data");
            if (Directory.Exists(c)) return c;
        }
        return null;
    }

    public static string MovieLensSmall() =>
        Path.Combine(SharedData() ?? throw new InvalidOperationException("shared/data not found (set MTFM_SHARED)"), "movielens-latest-small");
}
