using Mtfm.Engine.Data;

namespace Mtfm.Engine.Model;

/// <summary>Batch builders that feed a configuration's T-token inputs.</summary>
internal static class ConfigBatches
{
    /// <summary>
    /// A <see cref="BatchBuilder"/> over <paramref name="instances"/> with the population statistics
    /// <paramref name="config"/> reads (<see cref="MtfmConfig.PopulationStatistics"/>, read with its
    /// <see cref="MtfmConfig.UserRecentRatePrior"/> and <see cref="MtfmConfig.UserRatesAtWindowStart"/>).
    /// </summary>
    public static BatchBuilder Batches(this MtfmConfig config, AggregatedInstances instances, NumericStats stats)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new BatchBuilder(instances, stats, config.PopulationStatistics, config.UserRecentRatePrior, config.UserRatesAtWindowStart);
    }
}
