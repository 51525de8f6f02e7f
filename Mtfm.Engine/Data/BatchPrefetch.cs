using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace Mtfm.Engine.Data;

/// <summary>
/// Builds the items of a sequence on a background thread while the consumer works on earlier ones (the trainer's next
/// batch is assembled while the current step runs, on the CPU that the step's single-threaded parts leave idle).
/// Items come in the source's order and are the same objects the source yields, so the consumer sees exactly what a
/// plain <c>foreach</c> would; an exception of the source is rethrown to the consumer (with its original stack) after the
/// items before it. Leaving the loop early stops the producer and waits for it (at most one item's build).
/// </summary>
internal static partial class BatchPrefetch
{
    /// <summary>
    /// <paramref name="source"/>, produced on a background thread at most <paramref name="depth"/> items ahead of the
    /// consumer (plus the one being built).
    /// </summary>
    public static IEnumerable<T> Ahead<T>(IEnumerable<T> source, int depth = 1)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(depth);
        return Iterate(source, depth);
    }

    private static IEnumerable<T> Iterate<T>(IEnumerable<T> source, int depth)
    {
        using var queue = new BlockingCollection<T>(depth);
        using var stop = new CancellationTokenSource();
        ExceptionDispatchInfo? error = null;
        var producer = new Thread(() =>
        {
            LowerPriority();
            try
            {
                foreach (var item in source) queue.Add(item, stop.Token); // throws once the consumer stopped
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
            catch (Exception ex) { error = ExceptionDispatchInfo.Capture(ex); }
            finally { queue.CompleteAdding(); }
        })
        { IsBackground = true, Name = "mtfm batch prefetch" };
        producer.Start();
        try
        {
            foreach (var item in queue.GetConsumingEnumerable()) yield return item;
            producer.Join();
            error?.Throw();
        }
        finally
        {
            stop.Cancel();
            producer.Join();
        }
    }

    /// <summary>
    /// Runs the calling thread at the lowest priority: the producer takes the CPU the consumer's threads leave idle
    /// instead of preempting them (the CPU backend's parallel loops split work evenly, so a preempted worker stalls
    /// the whole loop). On Linux a thread has its own nice value (setpriority on its thread id); elsewhere the
    /// managed thread priority. Best effort: a refusal leaves the normal priority.
    /// </summary>
    private static void LowerPriority()
    {
        try
        {
            if (OperatingSystem.IsLinux()) _ = SetPriority(PrioProcess, GetTid(), 19);
            else Thread.CurrentThread.Priority = ThreadPriority.Lowest;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException or PlatformNotSupportedException) { }
    }

    private const int PrioProcess = 0;

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetTid();

    [LibraryImport("libc", EntryPoint = "setpriority")]
    private static partial int SetPriority(int which, int who, int prio);
}
