namespace Mtfm.Tests;

/// <summary>Tests that redirect the process-wide <see cref="Console"/> run one at a time, never beside each other.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ConsoleCollection
{
    /// <summary>The collection name.</summary>
    public const string Name = "Console";
}
