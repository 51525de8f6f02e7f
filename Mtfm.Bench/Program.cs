using BenchmarkDotNet.Running;

namespace Mtfm.Bench;

internal static class Program
{
    private static void Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "gemm-quick")
        {
            GemmQuick.Run(args);
            return;
        }
        if (args.Length > 0 && args[0] == "step-quick")
        {
            Environment.ExitCode = Step.StepQuick.Run(args);
            return;
        }
        if (args.Length > 0 && args[0] == "attn-quick")
        {
            Environment.ExitCode = Step.AttentionQuick.Run(args);
            return;
        }
        if (args.Length > 0 && args[0] == "cuda-quick")
        {
            Environment.ExitCode = Cuda.CudaQuick.Run(args);
            return;
        }
        if (args.Length > 0 && args[0] == "batch-quick") { Environment.ExitCode = BatchQuick.Run(args); return; }
        if (args.Length > 0 && args[0] == "serve-latency") { Environment.ExitCode = Serving.ServeLatency.Run(args); return; }
        if (args.Length > 0 && args[0] == "serve-profile") { Environment.ExitCode = Serving.ServeLatency.Profile(args); return; }
        if (args.Length > 0 && args[0] == "serve-model") { Environment.ExitCode = Serving.ServeLoad.WriteModel(args); return; }
        if (args.Length > 0 && args[0] == "serve-load") { Environment.ExitCode = Serving.ServeLoad.Run(args); return; }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    }
}
