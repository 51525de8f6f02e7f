namespace Mtfm.Engine.IO;

/// <summary>A checkpoint file is malformed, truncated or corrupted. The message names the file and what is wrong.</summary>
public sealed class CheckpointFormatException : IOException
{
    /// <summary>Creates the exception for <paramref name="filePath"/>.</summary>
    public CheckpointFormatException(string filePath, string problem, Exception? inner = null)
        : base($"checkpoint '{filePath}': {problem}", inner)
    {
        FilePath = filePath;
        Problem = problem;
    }

    /// <summary>The file that was refused.</summary>
    public string FilePath { get; }

    /// <summary>What is wrong with it, without the file name.</summary>
    public string Problem { get; }
}
