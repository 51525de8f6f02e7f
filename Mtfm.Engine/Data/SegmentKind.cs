namespace Mtfm.Engine.Data;

/// <summary>Segment of a token inside an instance (values are the bytes stored in <see cref="JaggedBatch.Segment"/>).</summary>
internal enum SegmentKind : byte
{
    /// <summary>History: behaviour before the window.</summary>
    History = 0,
    /// <summary>Real-time: behaviour inside the window.</summary>
    Realtime = 1,
    /// <summary>Target: an exposure inside the window.</summary>
    Target = 2,
}
