using System.Text.RegularExpressions;
using Mtfm.Engine.Backends.Cuda;

namespace Mtfm.Tests.Cuda;

/// <summary>
/// The kernel inventory, checked on the sources: every kernel a <c>cuda/*.cu</c> file registers is named by the engine
/// (a kernel that nothing launches is dead code that the emulation still compiles and CI still tests), and every launch
/// goes through one path, <c>CudaOps.Launch</c>: no other engine file asks a driver for a kernel or launches one.
/// </summary>
public sealed partial class KernelInventoryTests
{
    private static IEnumerable<(string Path, string Code)> EngineSources()
    {
        string root = Path.Combine(Mtfm.Tests.Hosting.PublicApiTests.RepoRoot(), "Mtfm.Engine");
        foreach (var file in Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(root, file).Replace('\\', '/');
            if (rel.StartsWith("obj/", StringComparison.Ordinal) || rel.StartsWith("bin/", StringComparison.Ordinal)) continue;
            // code only: comment lines (/// and //) do not count as a use
            var code = File.ReadLines(file).Where(l => !l.TrimStart().StartsWith("//", StringComparison.Ordinal));
            yield return (rel, string.Join("\n", code));
        }
    }

    [Fact]
    public void EveryRegisteredKernelIsLaunchedByTheEngine()
    {
        var code = string.Concat(EngineSources().Select(s => s.Code));
        var unlaunched = new List<string>();
        foreach (var file in CudaKernelSources.KernelFiles)
        {
            Assert.True(code.Contains($"\"{file}\"", StringComparison.Ordinal), $"no engine code names kernel file {file}");
            foreach (var k in CudaKernelSources.KernelNames(file))
                if (!code.Contains($"\"{k}\"", StringComparison.Ordinal)) unlaunched.Add($"{file}: {k}");
        }
        Assert.True(unlaunched.Count == 0, "kernels nothing in the engine launches (delete them or use them):\n" + string.Join("\n", unlaunched));
    }

    [GeneratedRegex(@"\bGetKernel\(|\.Launch\(\s*(K|Kernel|[A-Za-z_.]*GetKernel)\b")]
    private static partial Regex DriverLaunch();

    [Fact]
    public void OnlyCudaOpsLaunchesKernels()
    {
        var allowed = new HashSet<string>(StringComparer.Ordinal)
        {
            "Backends/Cuda/CudaOps.cs",                 // CudaOps.Launch: the one call into ICudaDriver.Launch
            "Backends/Cuda/Driver/ICudaDriver.cs",      // the interface and its packed-argument overload
            "Backends/Cuda/Driver/NativeCudaDriver.cs", // implementations of GetKernel
            "Backends/Cuda/Driver/EmulatedCudaDriver.cs",
        };
        var outside = EngineSources().Where(s => !allowed.Contains(s.Path) && DriverLaunch().IsMatch(s.Code))
            .Select(s => $"{s.Path}: {DriverLaunch().Match(s.Code).Value}").ToList();
        Assert.True(outside.Count == 0, "kernel lookups or launches outside CudaOps:\n" + string.Join("\n", outside));
    }
}
