namespace Mtfm.Engine.Native;

/// <summary>
/// Process-wide count of host-blocking CUDA calls made through these bindings: context and stream
/// synchronisation, event synchronisation and blocking (non-async) copies. Training must not make any inside a
/// step; tests read the count before and after. Per-device counts live on the engine's driver objects.
/// </summary>
internal static class CudaSyncCounter
{
    private static long s_count;
    private static string? s_lastCall;

    /// <summary>Number of synchronising calls since the process started.</summary>
    public static long Count => Interlocked.Read(ref s_count);

    /// <summary>Name of the most recent synchronising call (for diagnostics), or null.</summary>
    public static string? LastCall => Volatile.Read(ref s_lastCall);

    internal static void Record(string call)
    {
        Interlocked.Increment(ref s_count);
        Volatile.Write(ref s_lastCall, call);
    }
}
