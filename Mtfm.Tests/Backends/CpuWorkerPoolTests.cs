using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Tests.Backends;

public class CpuWorkerPoolTests
{
    private struct Mark(int[] hits, int failAt) : IRangeBody
    {
        public void Run(int start, int end)
        {
            for (int i = start; i < end; i++)
            {
                if (i == failAt) throw new InvalidOperationException($"index {i}");
                Interlocked.Increment(ref hits[i]);
            }
        }
    }

    /// <summary>
    /// Thousands of loops back to back with chunk counts from 1 to more than the workers, on a pool whose idle workers
    /// spin (the default) and on one whose workers sleep after every loop (spin 0: each loop wakes them): every index
    /// runs exactly once per loop, a failing chunk surfaces as an AggregateException and leaves the pool usable,
    /// Dispose ends the workers.
    /// </summary>
    [Theory]
    [InlineData(2, CpuWorkerPool.SpinMicroseconds)]
    [InlineData(3, CpuWorkerPool.SpinMicroseconds)]
    [InlineData(2, 0)]
    [InlineData(3, 0)]
    public void EveryIndexRunsOnceWhetherWorkersSpinOrSleep(int threads, int spinMicroseconds)
    {
        var pool = new CpuWorkerPool(threads, workerStarting: null, spinMicroseconds);
        var rng = new Random(3);
        for (int loop = 0; loop < 3000; loop++)
        {
            int count = rng.Next(1, 64);
            var hits = new int[count];
            var body = new Mark(hits, failAt: -1);
            pool.For(count, rng.Next(1, 8), ref body);
            Assert.All(hits, h => Assert.Equal(1, h));
        }
        var failing = new Mark(new int[100], failAt: 99); // in the last chunk, a worker's
        var ex = Assert.Throws<AggregateException>(() => pool.For(100, 1, ref failing));
        Assert.Contains("index 99", ex.InnerException!.Message);
        var again = new int[100];
        var ok = new Mark(again, failAt: -1);
        pool.For(100, 1, ref ok);
        Assert.All(again, h => Assert.Equal(1, h));
        pool.Dispose();
        pool.Dispose();
    }

    /// <summary>
    /// A worker thread that starts only after the first loop was published still takes its chunk (it once read the
    /// current generation as "seen" and waited for the next loop while the caller waited for it: a deadlock on a loaded
    /// machine). The hook holds the worker until the loop is published, so the old code hangs here every time.
    /// </summary>
    [Fact]
    public void AWorkerThatStartsAfterTheFirstLoopStillRunsIt()
    {
        CpuWorkerPool? pool = null;
        pool = new CpuWorkerPool(2, _ => SpinWait.SpinUntil(() => Volatile.Read(ref pool) is { Generation: > 0 }));
        var hits = new int[64];
        var body = new Mark(hits, failAt: -1);
        pool.For(64, 1, ref body);
        Assert.All(hits, h => Assert.Equal(1, h));
        pool.Dispose();
    }

    /// <summary>Records, per index, the managed thread that ran it.</summary>
    private struct Owner(int[] threadOf) : IRangeBody
    {
        public void Run(int start, int end)
        {
            for (int i = start; i < end; i++) Interlocked.Exchange(ref threadOf[i], Environment.CurrentManagedThreadId);
        }
    }

    /// <summary>
    /// Chunks are claimed, not assigned: while the worker threads cannot run (here they are held before their first
    /// loop, as the OS holds a thread on a machine shared with other work), the caller claims and runs every chunk
    /// itself and the loops finish without them: every index runs once, on the calling thread. (With one chunk assigned
    /// to each thread the first loop would wait for a held worker; nothing here depends on how long anything takes.)
    /// </summary>
    [Fact]
    public void LoopsFinishWhileAWorkerCannotRun()
    {
        using var release = new ManualResetEventSlim(false);
        var pool = new CpuWorkerPool(3, _ => release.Wait());
        try
        {
            int caller = Environment.CurrentManagedThreadId;
            for (int loop = 0; loop < 50; loop++)
            {
                var threadOf = new int[90];
                var body = new Owner(threadOf);
                pool.For(threadOf.Length, 1, ref body);
                Assert.All(threadOf, t => Assert.Equal(caller, t));
            }
        }
        finally
        {
            release.Set();
            pool.Dispose();
        }
    }

    /// <summary>
    /// The delegate form covers every index once; after Dispose a loop that would need the (stopped) workers throws
    /// instead of waiting for them forever, and a loop small enough for the calling thread alone still runs.
    /// </summary>
    [Fact]
    public void DelegateLoopsRunAndADisposedPoolRefusesParallelLoops()
    {
        var pool = new CpuWorkerPool(2);
        var hits = new int[100];
        pool.For(hits.Length, 1, (s, e) => { for (int i = s; i < e; i++) Interlocked.Increment(ref hits[i]); });
        Assert.All(hits, h => Assert.Equal(1, h));
        pool.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pool.For(hits.Length, 1, (s, e) => { }));
        int ran = 0;
        pool.For(4, 4, (s, e) => ran += e - s);
        Assert.Equal(4, ran);
    }
}
