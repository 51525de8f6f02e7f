namespace Mtfm.Engine.Hosting;

/// <summary>A temporal part of a dataset, by window start and the schema's <c>split</c> (validStart, testStart).</summary>
public enum DatasetPart
{
    /// <summary>Windows starting before <c>split.validStart</c>: what the model trains on.</summary>
    Train,

    /// <summary>Windows from <c>split.validStart</c> to before <c>split.testStart</c>: early stopping watches it.</summary>
    Valid,

    /// <summary>Windows from <c>split.testStart</c> on: held out for evaluation.</summary>
    Test,
}
