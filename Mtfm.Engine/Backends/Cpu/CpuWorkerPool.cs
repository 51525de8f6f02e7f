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
/// <para>
/// Chunks are claimed, not assigned: the caller and the workers take the next unclaimed chunk of the loop until none is
/// left, so a worker the OS has not scheduled (a machine shared with other work) does not hold the loop up: the caller
/// runs the chunks nobody else has claimed. Which thread runs a chunk never changes what the chunk computes.
/// </para>
/// <para>
/// Hand-off without a kernel round trip: a loop is published by bumping a generation counter; a worker that finished
/// its last chunk less than <see cref="SpinMicroseconds"/> ago is still spinning on that counter and starts at once,
/// only a worker that went to sleep is woken through its semaphore, and the caller spins on the count of chunks still
/// running instead of blocking. A forward of a small model is hundreds of parallel loops of tens of microseconds each,
/// where waking a sleeping thread per loop cost more than the second thread gained (BENCHMARKS.md, serving).
/// </para>
/// </summary>
internal sealed class CpuWorkerPool : IDisposable
{
    /// <summary>How long an idle worker spins for the next loop before it sleeps.</summary>
    public const int SpinMicroseconds = 200;


    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _wake;
    private readonly int[] _sleeping; // per worker (index worker − 1): 1 while it waits on its semaphore
    private readonly object _gate = new();
    private Action<int>? _job;
    private Exception? _error;
    private long _published; // (generation << 32) | chunks of the latest loop, read and written as one value
    private long _claim;     // (generation << 32) | next unclaimed chunk of that loop
    private int _running;    // chunks of the current loop not finished yet
    private volatile bool _stopping;
    private readonly Action<int>? _workerStarting;
    private readonly long _spinTicks;

    /// <summary>Creates a pool of <paramref name="threads"/> workers (the calling thread is one of them).</summary>
    public CpuWorkerPool(int threads = 0) : this(threads, workerStarting: null) { }

    /// <summary>
    /// As the public constructor; <paramref name="workerStarting"/> runs first on each worker thread (tests: a worker
    /// that starts late), and idle workers spin <paramref name="spinMicroseconds"/> before they sleep (tests: 0 = every
    /// loop wakes a sleeping worker).
    /// </summary>
    internal CpuWorkerPool(int threads, Action<int>? workerStarting, int spinMicroseconds = SpinMicroseconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(spinMicroseconds);
        _workerStarting = workerStarting;
        _spinTicks = System.Diagnostics.Stopwatch.Frequency * spinMicroseconds / 1_000_000;
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), threads, "threads must be ≥ 0 (0 = one per core).");
        ThreadCount = threads == 0 ? Environment.ProcessorCount : threads;
        _threads = new Thread[ThreadCount - 1];
        _wake = new SemaphoreSlim[ThreadCount - 1];
        _sleeping = new int[ThreadCount - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int worker = i + 1;
            _wake[i] = new SemaphoreSlim(0);
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
        ObjectDisposedException.ThrowIf(_stopping, this); // its workers are gone: a parallel loop would never finish
        var box = new StrongBox<TBody>(body);
        lock (_gate)
        {
            _job = w =>
            {
                long s = (long)count * w / chunks, e = (long)count * (w + 1) / chunks;
                box.Value.Run((int)s, (int)e);
            };
            _error = null;
            Volatile.Write(ref _running, chunks);
            int generation = Generation + 1;
            Volatile.Write(ref _claim, (long)generation << 32); // chunk 0 is next; written before the loop is published
            // One 64-bit write publishes the generation with its chunk count, so a worker never pairs one loop's
            // generation with another's count; the exchange is a full fence: the job is visible before it.
            Interlocked.Exchange(ref _published, ((long)generation << 32) | (uint)chunks);
            for (int w = 1; w < chunks; w++)
                if (Volatile.Read(ref _sleeping[w - 1]) == 1) _wake[w - 1].Release();
            RunChunks(generation, chunks);
            var spin = new SpinWait();
            while (Volatile.Read(ref _running) != 0) spin.SpinOnce(sleep1Threshold: -1);
            _job = null;
            if (_error is not null) throw new AggregateException("A parallel CPU kernel failed.", _error);
        }
    }

    /// <summary>
    /// <see cref="For{TBody}(int, int, ref TBody)"/> with a delegate body (host-side work outside the kernels, such as
    /// a batch's history statistics).
    /// </summary>
    public void For(int count, int minChunk, Action<int, int> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        var b = new DelegateBody(body);
        For(count, minChunk, ref b);
    }

    private readonly struct DelegateBody(Action<int, int> body) : IRangeBody
    {
        public void Run(int start, int end) => body(start, end);
    }

    /// <summary>
    /// Claims and runs chunks of loop <paramref name="generation"/> until none is left. The claim word holds the
    /// generation, so a thread that saw an older loop can never take a chunk of a newer one. The job stays the loop's
    /// until every claimed chunk has finished (the caller waits for that before it clears it).
    /// </summary>
    private void RunChunks(int generation, int chunks)
    {
        while (true)
        {
            long v = Volatile.Read(ref _claim);
            if ((int)(v >> 32) != generation || (int)(uint)v >= chunks) return;
            if (Interlocked.CompareExchange(ref _claim, v + 1, v) != v) continue;
            try { _job!((int)(uint)v); }
            catch (Exception ex) { Interlocked.CompareExchange(ref _error, ex, null); }
            finally { Interlocked.Decrement(ref _running); }
        }
    }

    /// <summary>Loops published so far.</summary>
    internal int Generation => (int)(Volatile.Read(ref _published) >> 32);

    private void WorkerLoop(int worker)
    {
        _workerStarting?.Invoke(worker);
        // Generation 0 is the pool's state before any loop: a worker that starts after the first loop was published
        // must still take part in it (reading the current generation here deadlocked a loaded test run).
        int seen = 0;
        while (true)
        {
            long deadline = System.Diagnostics.Stopwatch.GetTimestamp() + _spinTicks;
            long published;
            while ((int)((published = Volatile.Read(ref _published)) >> 32) == seen)
            {
                if (_stopping) return;
                if (System.Diagnostics.Stopwatch.GetTimestamp() < deadline) { Thread.SpinWait(30); continue; }
                // Sleep. The exchange is a full fence: either the caller sees the flag and wakes this worker, or this
                // worker sees the caller's new generation here (a wake that finds it awake leaves the semaphore at 1,
                // which only turns the next sleep into one more turn of this loop).
                Interlocked.Exchange(ref _sleeping[worker - 1], 1);
                if (Generation == seen && !_stopping) _wake[worker - 1].Wait();
                Interlocked.Exchange(ref _sleeping[worker - 1], 0);
                deadline = System.Diagnostics.Stopwatch.GetTimestamp() + _spinTicks;
            }
            seen = (int)(published >> 32);
            if (_stopping) return;
            RunChunks(seen, (int)(uint)published);
        }
    }

    /// <summary>Stops the workers.</summary>
    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        foreach (var s in _wake) s.Release();
        foreach (var t in _threads) t.Join();
        foreach (var s in _wake) s.Dispose();
    }
}
