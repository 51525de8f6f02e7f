namespace Mtfm.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        Console.WriteLine("mtfm: commands arrive with the model issue.");
        return 0;
    }
}
