using System.Diagnostics;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Native;

namespace Mtfm.Bench.Cuda;

/// <summary>
/// Times device work on one stream. On a GPU: CUDA events with timing enabled, recorded between back-to-back
/// repetitions (e0, op, e1, op, e2, …; one host wait at the end), so the repetitions run without host gaps as long as the
/// host enqueues faster than the device computes; each repetition's time is elapsed(e_i, e_{i+1}). On the host
/// emulation every operation completes before it returns, so a host clock around each call measures the same thing.
/// </summary>
internal sealed class DeviceTimer : IDisposable
{
    private readonly ICudaDriver _driver;
    private readonly nint _stream;
    private readonly bool _events;
    private readonly List<nint> _pool = [];

    public DeviceTimer(ICudaDriver driver, nint stream)
    {
        _driver = driver;
        _stream = stream;
        _events = driver is NativeCudaDriver;
    }

    /// <summary>"cuda events" or "host clock (emulated device: operations are synchronous)".</summary>
    public string Method => _events ? "CUDA events (cuEventElapsedTime)" : "host clock (emulated device: operations complete synchronously)";

    /// <summary>
    /// Runs <paramref name="op"/> <paramref name="warmup"/> times untimed, then <paramref name="reps"/> times timed back to
    /// back; returns the per-repetition times in milliseconds (in order). <paramref name="op"/> must only enqueue work on
    /// the timer's stream.
    /// </summary>
    public double[] Time(Action op, int warmup, int reps)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(reps);
        for (int i = 0; i < warmup; i++) op();
        var ms = new double[reps];
        if (!_events)
        {
            _driver.SynchronizeStream(_stream);
            for (int i = 0; i < reps; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                op();
                _driver.SynchronizeStream(_stream);
                ms[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            }
            return ms;
        }
        _driver.MakeCurrent(); // the raw driver calls below need the device's context on this thread
        while (_pool.Count < reps + 1) _pool.Add(CudaDriverApi.EventCreate(timing: true));
        CudaDriverApi.EventRecord(_pool[0], _stream);
        for (int i = 0; i < reps; i++)
        {
            op();
            CudaDriverApi.EventRecord(_pool[i + 1], _stream);
        }
        CudaDriverApi.EventSynchronize(_pool[reps]);
        for (int i = 0; i < reps; i++) ms[i] = CudaDriverApi.EventElapsedMilliseconds(_pool[i], _pool[i + 1]);
        return ms;
    }

    /// <summary>Median of <paramref name="values"/>.</summary>
    public static double Median(double[] values)
    {
        var s = values.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : 0.5 * (s[s.Length / 2 - 1] + s[s.Length / 2]);
    }

    public void Dispose()
    {
        if (_pool.Count > 0) _driver.MakeCurrent();
        foreach (var e in _pool) CudaDriverApi.EventDestroy(e);
        _pool.Clear();
    }
}
