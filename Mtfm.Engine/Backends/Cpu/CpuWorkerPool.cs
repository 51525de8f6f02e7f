using System.Runtime.CompilerServices;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// A body of work over an index range, run by <see cref="CpuWorkerPool.For{TBody}(int, ref TBody)"/>.
/// Implemented by structs so that a parallel loop allocates nothing.
/// </summary>
internal interface IRangeBody
{
    /// <summary>Processes indices [start, end).</summary>
    void Run(int start, int end);
}

/// <summary>
/// A fixed pool of worker threads sized to the cores (or to an explicit count). Work is split into one contiguous
/// chunk per worker, always the same way for the same (count, threads): results that depend on the partition
/// (reductions) are reproducible for a fixed thread count. Calls are serialised; a body must not call back into the pool.
/// </summary>
internal sealed class CpuWorkerPool : IDisposable
{
    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _start;
    private readonly CountdownEvent _done;
    private readonly object _gate = new();
    private Action<int>? _job;
    private Exception? _error;
    private volatile bool _stopping;

    /// <summary>Creates a pool of <paramref name="threads"/> workers (the calling thread is one of them).</summary>
    public CpuWorkerPool(int threads = 0)
    {
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), threads, "threads must be ≥ 0 (0 = one per core).");
        ThreadCount = threads == 0 ? Environment.ProcessorCount : threads;
        _threads = new Thread[ThreadCount - 1];
        _start = new SemaphoreSlim[ThreadCount - 1];
        _done = new CountdownEvent(1);
        for (int i = 0; i < _threads.Length; i++)
        {
            int worker = i + 1;
            _start[i] = new SemaphoreSlim(0);
            _threads[i] = new Thread(() => WorkerLoop(worker)) { IsBackground = true, Name = $"mtfm-cpu-{worker}" };
            _threads[i].Start();
        }
    }

    /// <summary>Number of threads that share a parallel loop, the caller included.</summary>
    public int ThreadCount { get; }

    /// <summary>Runs <paramref name="body"/> over [0, count) split into at most <see cref="ThreadCount"/> contiguous chunks.</summary>
    public void For<TBody>(int count, ref TBody body) where TBody : struct, IRangeBody
        => For(count, 1, ref body);

    /// <summary>
    /// Runs <paramref name="body"/> over [0, count); chunks hold at least <paramref name="minChunk"/> indices, so small
    /// loops stay on the calling thread.
    /// </summary>
    public void For<TBody>(int count, int minChunk, ref TBody body) where TBody : struct, IRangeBody
    {
        if (count <= 0) return;
        int chunks = Math.Min(ThreadCount, Math.Max(1, count / Math.Max(1, minChunk)));
        if (chunks == 1)
        {
            body.Run(0, count);
            return;
        }
        var box = new StrongBox<TBody>(body);
        lock (_gate)
        {
            _job = w =>
            {
                if (w >= chunks) return;
                long s = (long)count * w / chunks, e = (long)count * (w + 1) / chunks;
                box.Value.Run((int)s, (int)e);
            };
            _error = null;
            _done.Reset(chunks);
            for (int i = 1; i < chunks; i++) _start[i - 1].Release();
            RunChunk(0);
            _done.Wait();
            _job = null;
            if (_error is not null) throw new AggregateException("A parallel CPU kernel failed.", _error);
        }
    }

    private void RunChunk(int worker)
    {
        try { _job!(worker); }
        catch (Exception ex) { Interlocked.CompareExchange(ref _error, ex, null); }
        finally { _done.Signal(); }
    }

    private void WorkerLoop(int worker)
    {
        var sem = _start[worker - 1];
        while (true)
        {
            sem.Wait();
            if (_stopping) return;
            RunChunk(worker);
        }
    }

    /// <summary>Stops the workers.</summary>
    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        foreach (var s in _start) s.Release();
        foreach (var t in _threads) t.Join();
        foreach (var s in _start) s.Dispose();
        _done.Dispose();
    }
}
