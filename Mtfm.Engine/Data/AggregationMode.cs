namespace Mtfm.Engine.Data;

/// <summary>How instances are formed.</summary>
internal enum AggregationMode
{
    /// <summary>One instance per (user, window): H, the window's R events, all of the window's exposures as T.</summary>
    UserWindow,
    /// <summary>One instance per exposure: the same H, the R events strictly earlier than the exposure (the ones it may see), one T token.</summary>
    PerExposure,
}
