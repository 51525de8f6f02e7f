namespace Mtfm.Cli.Reporting;

/// <summary>Receives progress from long work (training, evaluation, data preparation).</summary>
internal interface IProgressSink
{
    /// <summary>Reports that <paramref name="done"/> of the total exposures are processed; <paramref name="loss"/> is the current (e.g. running-mean) loss, NaN if none.</summary>
    void Report(long done, double loss);
}
