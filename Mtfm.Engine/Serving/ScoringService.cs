using System.Diagnostics;
using System.Threading.Channels;

namespace Mtfm.Engine.Serving;

/// <summary>Settings of a <see cref="ScoringService"/>.</summary>
public sealed class ScoringServiceOptions
{
    /// <summary>Requests waiting to be scored at most; a request beyond it is refused (<see cref="ServiceOverloadedException"/>).</summary>
    public int QueueCapacity { get; init; } = 256;

    /// <summary>
    /// Micro-batching: after taking a request, the worker waits up to this long for more requests to score in the same
    /// forward (their candidates batched per scenario). <see cref="TimeSpan.Zero"/> batches only what is already queued.
    /// </summary>
    public TimeSpan BatchWindow { get; init; } = TimeSpan.FromMilliseconds(2);

    /// <summary>Candidates of one micro-batch at most (a single larger request is still scored, alone).</summary>
    public int MaxBatchCandidates { get; init; } = 4096;

    /// <summary>False scores every request in its own forward (for comparison).</summary>
    public bool MicroBatching { get; init; } = true;
}

/// <summary>Thrown by <see cref="ScoringService.ScoreAsync"/> when the queue is full (the caller should retry later) or the service is stopping.</summary>
public sealed class ServiceOverloadedException(string message) : Exception(message);

/// <summary>A scored request and the version of the model that scored it.</summary>
public sealed record ScoredResult(ScoreResponse Response, long ModelVersion);

/// <summary>
/// Scores requests concurrently submitted by many callers with one <see cref="Scorer"/>: a bounded queue feeds one
/// worker, which takes the queued requests (waiting up to <see cref="ScoringServiceOptions.BatchWindow"/> for more),
/// prepares each (its H/R context encoded once, or taken from the context cache), and scores the candidates of all
/// requests of one scenario in one forward. The model can be swapped atomically while requests flow: each micro-batch
/// is scored by one model, and a replaced model is disposed once no batch uses it. <see cref="StopAsync"/> refuses new
/// requests and drains the queued ones.
/// </summary>
public sealed class ScoringService : IAsyncDisposable
{
    private readonly ScoringServiceOptions _o;
    private readonly Channel<Item> _queue;
    private readonly Thread _worker;
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ModelHandle _current;
    private readonly Lock _swap = new();
    private readonly Lock _runLock = new();
    private int _depth;
    private long _candidatesScored, _batches, _requestsScored;
    private volatile bool _stopping;
    private int _disposed;

    /// <summary>Starts the worker with <paramref name="scorer"/> (owned from now on: disposed when replaced or at the end) as model version <paramref name="version"/>.</summary>
    public ScoringService(Scorer scorer, ScoringServiceOptions? options = null, long version = 1)
    {
        ArgumentNullException.ThrowIfNull(scorer);
        _o = options ?? new ScoringServiceOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(_o.QueueCapacity, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(_o.MaxBatchCandidates, 1, nameof(options));
        _current = new ModelHandle(scorer, version);
        _queue = Channel.CreateBounded<Item>(new BoundedChannelOptions(_o.QueueCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        _worker = new Thread(Work) { IsBackground = true, Name = "mtfm-scoring" };
        _worker.Start();
    }

    /// <summary>Requests queued and not yet taken by the worker.</summary>
    public int QueueDepth => Volatile.Read(ref _depth);

    /// <summary>The version of the model new micro-batches are scored with.</summary>
    public long ModelVersion { get { lock (_swap) return _current.Version; } }

    /// <summary>Candidates scored so far.</summary>
    public long CandidatesScored => Interlocked.Read(ref _candidatesScored);

    /// <summary>Requests scored so far.</summary>
    public long RequestsScored => Interlocked.Read(ref _requestsScored);

    /// <summary>Forwards (micro-batches of one scenario) run so far.</summary>
    public long Batches => Interlocked.Read(ref _batches);

    /// <summary>Context cache hits of the current model.</summary>
    public long ContextCacheHits { get { lock (_swap) return _current.Scorer.ContextCacheHits; } }

    /// <summary>Context cache misses of the current model.</summary>
    public long ContextCacheMisses { get { lock (_swap) return _current.Scorer.ContextCacheMisses; } }

    /// <summary>Test hook: when set, the worker waits on it before taking each micro-batch (a test holds it to fill the queue deterministically).</summary>
    internal SemaphoreSlim? WorkerGate { get; set; }

    /// <summary>
    /// Queues <paramref name="request"/> and completes with its scores; throws <see cref="ServiceOverloadedException"/>
    /// at once when the queue is full or the service is stopping, and <see cref="ScoreRequestException"/> (through the
    /// task) for a bad request.
    /// </summary>
    public Task<ScoredResult> ScoreAsync(ScoreRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (_stopping) throw new ServiceOverloadedException("the service is shutting down");
        var item = new Item(request);
        Interlocked.Increment(ref _depth);
        if (!_queue.Writer.TryWrite(item))
        {
            Interlocked.Decrement(ref _depth);
            throw new ServiceOverloadedException(_stopping ? "the service is shutting down" : $"the scoring queue is full ({_o.QueueCapacity} requests)");
        }
        return item.Done.Task;
    }

    /// <summary>
    /// Makes <paramref name="scorer"/> (owned from now on) the model of every later micro-batch, as version
    /// <paramref name="version"/>; a batch being scored finishes on the old model, which is disposed after it.
    /// </summary>
    public void Swap(Scorer scorer, long version)
    {
        ArgumentNullException.ThrowIfNull(scorer);
        ModelHandle old;
        lock (_swap)
        {
            old = _current;
            _current = new ModelHandle(scorer, version);
        }
        old.Release();
    }

    /// <summary>Refuses new requests, scores every queued one, and stops the worker.</summary>
    public Task StopAsync()
    {
        _stopping = true;
        _queue.Writer.TryComplete();
        return _done.Task;
    }

    /// <summary>Stops (draining the queue) and disposes the model.</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        lock (_swap) _current.Release();
    }

    private void Work()
    {
        var reader = _queue.Reader;
        var batch = new List<Item>();
        try
        {
            while (true)
            {
                WorkerGate?.Wait();
                if (!reader.TryRead(out var first))
                {
                    if (!reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult()) break;
                    continue;
                }
                Interlocked.Decrement(ref _depth);
                batch.Clear();
                batch.Add(first);
                if (_o.MicroBatching) Gather(reader, batch);
                Run(batch);
            }
        }
        finally
        {
            _done.TrySetResult();
        }
    }

    /// <summary>Adds queued requests to <paramref name="batch"/> until the window closes or the candidate budget is reached.</summary>
    private void Gather(ChannelReader<Item> reader, List<Item> batch)
    {
        long candidates = batch[0].Request.Candidates?.Count ?? 0;
        long deadline = Stopwatch.GetTimestamp() + (long)(_o.BatchWindow.TotalSeconds * Stopwatch.Frequency);
        while (candidates < _o.MaxBatchCandidates)
        {
            if (reader.TryPeek(out var next))
            {
                int c = next.Request.Candidates?.Count ?? 0;
                if (candidates + c > _o.MaxBatchCandidates) break;
                reader.TryRead(out _);
                Interlocked.Decrement(ref _depth);
                batch.Add(next);
                candidates += c;
                continue;
            }
            long left = deadline - Stopwatch.GetTimestamp();
            if (left <= 0) break;
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds((double)left / Stopwatch.Frequency));
            try
            {
                if (!reader.WaitToReadAsync(cts.Token).AsTask().GetAwaiter().GetResult()) break;
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="action"/> between micro-batches (the worker waits meanwhile; requests keep queueing): for
    /// work on the backend the scorer uses, such as loading the next checkpoint, which must not overlap a forward.
    /// </summary>
    public T RunBetweenBatches<T>(Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        lock (_runLock) return action();
    }

    private void Run(List<Item> batch)
    {
        lock (_runLock) RunLocked(batch);
    }

    private void RunLocked(List<Item> batch)
    {
        ModelHandle model;
        lock (_swap)
        {
            model = _current;
            model.Retain();
        }
        try
        {
            var prepared = new List<(Item Item, PreparedRequest Prepared)>(batch.Count);
            try
            {
                foreach (var it in batch)
                {
                    try
                    {
                        prepared.Add((it, model.Scorer.Prepare(it.Request)));
                    }
                    catch (Exception ex)
                    {
                        it.Done.TrySetException(ex);
                    }
                }
                foreach (var group in prepared.GroupBy(p => p.Prepared.Encoded.Scenario))
                {
                    var list = group.ToList();
                    try
                    {
                        var responses = model.Scorer.ScoreMany(list.Select(p => p.Prepared).ToList());
                        Interlocked.Increment(ref _batches);
                        for (int i = 0; i < list.Count; i++)
                        {
                            Interlocked.Add(ref _candidatesScored, list[i].Prepared.Candidates);
                            Interlocked.Increment(ref _requestsScored);
                            list[i].Item.Done.TrySetResult(new ScoredResult(responses[i], model.Version));
                        }
                    }
                    catch (Exception ex)
                    {
                        foreach (var p in list) p.Item.Done.TrySetException(ex);
                    }
                }
            }
            finally
            {
                foreach (var p in prepared) p.Prepared.Dispose();
            }
        }
        finally
        {
            model.Release();
        }
    }

    private sealed class Item(ScoreRequest request)
    {
        public ScoreRequest Request { get; } = request;
        public TaskCompletionSource<ScoredResult> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>A scorer with a reference count: the service holds one reference, each batch using it one more.</summary>
    private sealed class ModelHandle(Scorer scorer, long version)
    {
        private int _refs = 1;
        public Scorer Scorer { get; } = scorer;
        public long Version { get; } = version;
        public void Retain() => Interlocked.Increment(ref _refs);
        public void Release()
        {
            if (Interlocked.Decrement(ref _refs) == 0) Scorer.Dispose();
        }
    }
}
