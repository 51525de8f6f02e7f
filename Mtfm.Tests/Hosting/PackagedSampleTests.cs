using System.Diagnostics;
using System.IO.Compression;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Text;

namespace Mtfm.Tests.Hosting;

/// <summary>
/// The deployment path of issue 14 end to end: <c>dotnet pack</c> the two packages into a local folder feed, build
/// <c>samples/HelloMtfm</c> in a temporary directory outside the repository from that feed only (no project
/// references), train and score with it, then publish it with NativeAOT (trimming/AOT warnings fail the test) and
/// require the native scorer's responses to equal the JIT build's byte for byte (the JSON floats are round-trip
/// formatted, so equal text is equal bits). The native code is compiled for this machine's instruction set
/// (<c>IlcInstructionSet=native</c>), the one the JIT uses here: with the portable default (no AVX-512/AVX2 paths)
/// the kernels sum in another order and the scores differ in the last bits.
/// </summary>
public sealed class PackagedSampleTests
{
    private static readonly TimeSpan ProcessLimit = TimeSpan.FromMinutes(15);

    [Fact]
    public void SampleBuiltFromThePackagesTrainsAndScoresAndItsNativeAotBuildScoresTheSame()
    {
        string repo = PublicApiTests.RepoRoot();
        string tmp = Path.Combine(Path.GetTempPath(), "mtfm-sample-" + Guid.NewGuid().ToString("N")[..12]);
        // A version of its own per run: the restore cannot pick up a stale package of an earlier run from the cache.
        string version = $"0.1.0-ci.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
        string feed = Path.Combine(tmp, "feed"), app = Path.Combine(tmp, "app"), model = Path.Combine(tmp, "model");
        Directory.CreateDirectory(app);
        try
        {
            foreach (var project in new[] { "Mtfm.Engine.Native", "Mtfm.Engine" })
                Dotnet(repo, $"pack {Q(Path.Combine(repo, project, project + ".csproj"))} -c Release --artifacts-path {Q(Path.Combine(tmp, "artifacts"))} " +
                    $"-o {Q(feed)} -p:Version={version} -p:ContinuousIntegrationBuild=true");
            CheckEnginePackage(repo, Path.Combine(feed, $"Mtfm.Engine.{version}.nupkg"));
            Assert.True(File.Exists(Path.Combine(feed, $"Mtfm.Engine.Native.{version}.nupkg")));

            foreach (var f in new[] { "Program.cs", "HelloMtfm.csproj" })
                File.Copy(Path.Combine(repo, "samples", "HelloMtfm", f), Path.Combine(app, f));
            File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <add key="mtfm-test-feed" value="{feed}" />
                  </packageSources>
                </configuration>
                """);
            string build = Dotnet(app, $"build -c Release -p:MtfmVersion={version}");
            Assert.Contains(" 0 Warning(s)", build);
            string bin = Path.Combine(app, "bin", "Release", "net10.0");
            Assert.False(Directory.Exists(Path.Combine(app, "obj", "Mtfm.Engine")), "the sample must not build the engine itself");

            string trained = Dotnet(app, $"{Q(Path.Combine(bin, "HelloMtfm.dll"))} train {Q(model)}");
            Assert.Contains("(all) click: AUC 0.", trained);
            Assert.True(File.Exists(Path.Combine(model, "model.safetensors")));
            string jit = Dotnet(app, $"{Q(Path.Combine(bin, "HelloMtfm.dll"))} score {Q(model)}");
            var jitLines = jit.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(12, jitLines.Length);
            Assert.All(jitLines, l => Assert.StartsWith("{\"user\":\"u", l));

            string aotDir = Path.Combine(tmp, "aot");
            string publish = Dotnet(app, $"publish -c Release -r {System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier} -p:PublishAot=true -p:IlcInstructionSet=native -p:MtfmVersion={version} -o {Q(aotDir)}{ClangProperty()}");
            Assert.DoesNotContain("warning IL", publish);
            Assert.DoesNotContain(": warning ", publish);
            string native = Run(Path.Combine(aotDir, "HelloMtfm"), $"score {Q(model)}", app);
            Assert.Equal(jit, native);
            // Training is the same code: the native build writes the JIT build's checkpoint byte for byte.
            string nativeModel = Path.Combine(tmp, "model-native");
            Run(Path.Combine(aotDir, "HelloMtfm"), $"train {Q(nativeModel)}", app);
            Assert.Equal(File.ReadAllBytes(Path.Combine(model, "model.safetensors")), File.ReadAllBytes(Path.Combine(nativeModel, "model.safetensors")));
        }
        finally
        {
            try { Directory.Delete(tmp, recursive: true); } catch (IOException) { }
            string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            foreach (var id in new[] { "mtfm.engine", "mtfm.engine.native" })
            {
                string d = Path.Combine(cache, id, version);
                try
                {
                    if (Directory.Exists(d)) Directory.Delete(d, recursive: true);
                    string idDir = Path.Combine(cache, id);
                    if (Directory.Exists(idDir) && !Directory.EnumerateFileSystemEntries(idDir).Any()) Directory.Delete(idDir);
                }
                catch (IOException) { }
            }
        }
    }

    /// <summary>The Mtfm.Engine package: readme, XML docs, the dll with every CUDA source embedded under its loader's name, and the sources as files.</summary>
    private static void CheckEnginePackage(string repo, string nupkg)
    {
        using var zip = ZipFile.OpenRead(nupkg);
        var names = zip.Entries.Select(e => e.FullName).ToHashSet(StringComparer.Ordinal);
        Assert.Contains("README.md", names);
        Assert.Contains("lib/net10.0/Mtfm.Engine.dll", names);
        Assert.Contains("lib/net10.0/Mtfm.Engine.xml", names);
        using (var nuspec = new StreamReader(zip.GetEntry("Mtfm.Engine.nuspec")!.Open()))
        {
            string spec = nuspec.ReadToEnd();
            Assert.Contains("<readme>README.md</readme>", spec);
            Assert.Contains("<dependency id=\"Mtfm.Engine.Native\"", spec);
            Assert.Contains("<repository type=\"git\"", spec); // SourceLink's source-control metadata
        }
        var sources = Directory.GetFiles(Path.Combine(repo, "cuda")).Select(Path.GetFileName)
            .Where(f => f!.EndsWith(".cu", StringComparison.Ordinal) || f.EndsWith(".cuh", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        Assert.NotEmpty(sources);
        foreach (var f in sources) Assert.Contains("cuda/" + f, names);
        using var dll = new MemoryStream();
        using (var s = zip.GetEntry("lib/net10.0/Mtfm.Engine.dll")!.Open()) s.CopyTo(dll);
        dll.Position = 0;
        using var pe = new PEReader(dll);
        var md = pe.GetMetadataReader();
        var resources = md.ManifestResources.Select(h => md.GetString(md.GetManifestResource(h).Name)).ToHashSet(StringComparer.Ordinal);
        foreach (var f in sources) Assert.Contains("mtfm.cuda." + f, resources); // the names CudaKernelSources looks up
    }

    /// <summary>NativeAOT links with clang; Debian installs it as clang-NN without the plain name unless the clang package is there.</summary>
    private static string ClangProperty()
    {
        var path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries);
        if (path.Any(d => File.Exists(Path.Combine(d, "clang")))) return "";
        var versioned = path.SelectMany(d => Directory.Exists(d) ? Directory.GetFiles(d, "clang-[0-9]*") : [])
            .Where(f => Path.GetFileName(f)[6..].All(char.IsAsciiDigit)).Order(StringComparer.Ordinal).LastOrDefault();
        return versioned is null ? "" : $" -p:CppCompilerAndLinker={Path.GetFileName(versioned)}";
    }

    private static string Q(string s) => "\"" + s + "\"";

    /// <summary>A dotnet command; builds run without the shared compiler server so that none stays behind.</summary>
    private static string Dotnet(string dir, string args) =>
        Run("dotnet", args.StartsWith("pack ", StringComparison.Ordinal) || args.StartsWith("build ", StringComparison.Ordinal) || args.StartsWith("publish ", StringComparison.Ordinal)
            ? args + " -p:UseSharedCompilation=false" : args, dir);

    private static string Run(string file, string args, string dir)
    {
        var psi = new ProcessStartInfo(file, args)
        {
            WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1"; // no build servers left running after the test
        psi.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        using var p = Process.Start(psi)!;
        var stderr = new StringBuilder();
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        p.BeginErrorReadLine();
        string stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(ProcessLimit)) { p.Kill(entireProcessTree: true); Assert.Fail($"{file} {args} did not end within {ProcessLimit}"); }
        p.WaitForExit();
        if (p.ExitCode != 0) Assert.Fail($"{file} {args} (in {dir}) exited with {p.ExitCode}:\n{stdout}\n{stderr}");
        return stdout;
    }
}
