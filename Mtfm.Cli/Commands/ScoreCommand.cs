using Mtfm.Engine.Serving;

namespace Mtfm.Cli.Commands;

/// <summary>What `mtfm score` was asked to do.</summary>
internal sealed record ScoreOptions
{
    /// <summary>Run directory or .safetensors file.</summary>
    public required string Model { get; init; }
    /// <summary>JSON-lines request file; null = standard input.</summary>
    public string? Input { get; init; }
    /// <summary>JSON-lines response file; null = standard output.</summary>
    public string? Output { get; init; }
    /// <summary>Stop at the first bad line.</summary>
    public bool FailFast { get; init; }
    /// <summary>CPU threads (0 = one per core).</summary>
    public int Threads { get; init; }
    /// <summary>MiB of encoded H/R contexts kept for reuse (0 = off).</summary>
    public int ContextCache { get; init; } = 256;
}

/// <summary>
/// `mtfm score`: loads a checkpoint once, reads one JSON request per line, writes one JSON response per scored line
/// (`{"user":…,"scenario":…,"scores":[{"click":…,"conversion":…},…]}`, candidates in request order). A bad line is
/// reported on the error writer as `line N: field: problem` and skipped (or ends the run with --fail-fast); the exit
/// code is 1 when any line failed. Blank lines are skipped.
/// </summary>
internal static class ScoreCommand
{
    public static int Run(ScoreOptions o, TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(o);
        if (o.Input is { } inPath && !File.Exists(inPath)) throw new FileNotFoundException($"--input '{inPath}' does not exist.", inPath);
        if (o.ContextCache < 0) throw new ArgumentException($"--context-cache-mb {o.ContextCache}: must be >= 0.");
        using var scorer = Scorer.Load(o.Model, o.Threads, o.ContextCache);
        using var input = o.Input is null ? null : new StreamReader(o.Input);
        var reader = input ?? stdin;
        using var output = o.Output is null ? null : new StreamWriter(o.Output);
        var writer = output ?? stdout;
        long lineNo = 0, scored = 0, failed = 0;
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                var response = scorer.Score(ScoreRequest.Parse(line));
                writer.WriteLine(response.ToJson());
                scored++;
            }
            catch (ScoreRequestException ex)
            {
                failed++;
                stderr.WriteLine($"line {lineNo}: {ex.Message}");
                if (o.FailFast)
                {
                    writer.Flush();
                    stderr.WriteLine($"mtfm score: stopped at line {lineNo} (--fail-fast); {scored} requests scored before it.");
                    return 1;
                }
            }
        }
        writer.Flush();
        if (failed > 0)
        {
            stderr.WriteLine($"mtfm score: {failed} of {scored + failed} requests failed; {scored} scored.");
            return 1;
        }
        return 0;
    }
}
