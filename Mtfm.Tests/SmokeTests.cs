namespace Mtfm.Tests;

public class SmokeTests
{
    [Fact]
    public void EngineAssemblyLoads() => Assert.NotNull(typeof(Mtfm.Engine.Backends.Cpu.CpuGemm).Assembly);
}
