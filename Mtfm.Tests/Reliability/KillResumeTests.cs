using System.Diagnostics;
using System.Text.Json;

namespace Mtfm.Tests.Reliability;

/// <summary>
/// `mtfm train` as a child process, killed with SIGKILL at five points (some in the middle of a checkpoint write) and
/// resumed each time, ends with the same weights (file bytes) and the same metrics and curves as an uninterrupted run.
/// </summary>
public class KillResumeTests
{
    private const string Args = "train --data synthetic:tiny --epochs 3 --batch-tokens 128 --threads 1 --checkpoint-every 3 --keep-checkpoints 2";

    private static (int Code, string Output) Mtfm(string args, string? killAt, string? emulationLibrary)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "mtfm.dll");
        var psi = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(dll);
        foreach (var a in args.Split(' ', StringSplitOptions.RemoveEmptyEntries)) psi.ArgumentList.Add(a);
        psi.Environment["CI"] = "true";
        if (emulationLibrary is not null) psi.Environment["MTFM_CUDA_EMU_LIB"] = emulationLibrary;
        if (killAt is null) psi.Environment.Remove("MTFM_TEST_KILL_AT");
        else psi.Environment["MTFM_TEST_KILL_AT"] = killAt;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output + err.Result);
    }

    private static string Json(string runDir, string property)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(runDir, "metrics.json")));
        return doc.RootElement.GetProperty(property).GetRawText();
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("cuda-emulated")]
    public void FiveKillsAndResumesGiveTheUninterruptedRunBitForBit(string device)
    {
        // On the emulated CUDA device every kernel runs the same way each time, so the bar is the same: bit for bit.
        string? emu = device == "cuda-emulated" ? global::Mtfm.Tests.Cuda.CudaTestDevice.EmulationLibraryOrSkip() : null;
        string Args = $"{KillResumeTests.Args} --device {device}";
        (int Code, string Output) Mtfm(string args, string? killAt) => KillResumeTests.Mtfm(args, killAt, emu);
        string root = Directory.CreateTempSubdirectory("mtfm-kill").FullName;
        try
        {
            var (code, refLog) = Mtfm($"{Args} --out {root} --name ref", null);
            Assert.True(code == 0, refLog);
            Assert.Contains(device == "cpu" ? "cpu, 1 threads" : "cuda (", refLog); // the run really is on that device
            int total = int.Parse(System.Text.RegularExpressions.Regex.Match(refLog, @"trained (\d+) steps").Groups[1].Value);
            Assert.True(total >= 15, $"only {total} steps: too few for five kill points\n{refLog}");

            // Five increasing kill points drawn from a fixed seed; every other one in the middle of a checkpoint write.
            var rng = new Random(20261203);
            var points = new SortedSet<int>();
            while (points.Count < 5) points.Add(rng.Next(1, total));
            var kills = points.Select((s, i) => i % 2 == 1 ? $"{s}:mid-write" : $"{s}").ToList();

            string run = Path.Combine(root, "k");
            string ckpts = Path.Combine(run, "checkpoints");
            for (int i = 0; i < kills.Count; i++)
            {
                string args = i == 0 ? $"{Args} --out {root} --name k" : $"{Args} --out {root} --resume k";
                var (kc, klog) = Mtfm(args, kills[i]);
                Assert.True(kc != 0, $"the run did not die at {kills[i]}:\n{klog}");
                Assert.DoesNotContain("wrote ", klog);
                if (kills[i].EndsWith(":mid-write", StringComparison.Ordinal))
                    Assert.True(Directory.EnumerateFiles(ckpts, ".*.tmp").Any(), $"no half-written checkpoint after {kills[i]}");
            }
            // The newest checkpoint is damaged: resume reports it and uses the previous one.
            var files = Directory.EnumerateFiles(ckpts, "step-*.safetensors").Order(StringComparer.Ordinal).ToList();
            Assert.True(files.Count >= 2, "two checkpoints are kept");
            var bytes = File.ReadAllBytes(files[^1]);
            bytes[bytes.Length / 2] ^= 0x5A;
            File.WriteAllBytes(files[^1], bytes);

            var (fc, flog) = Mtfm($"{Args} --out {root} --resume k", null);
            Assert.True(fc == 0, flog);
            Assert.Contains("is not usable", flog);
            Assert.Empty(Directory.EnumerateFiles(ckpts, ".*.tmp")); // temporary files of killed writes are cleaned up on resume
            Assert.Contains("resumed from", flog);

            Assert.Equal(File.ReadAllBytes(Path.Combine(root, "ref", "model.safetensors")), File.ReadAllBytes(Path.Combine(run, "model.safetensors")));
            Assert.Equal(Json(Path.Combine(root, "ref"), "metrics"), Json(run, "metrics"));
            Assert.Equal(Json(Path.Combine(root, "ref"), "curves"), Json(run, "curves"));
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }
}
