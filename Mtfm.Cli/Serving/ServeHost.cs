using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Mtfm.Cli.Commands;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Serving;

namespace Mtfm.Cli.Serving;

/// <summary>Settings of <c>mtfm serve</c> (see docs/serving.md §7).</summary>
internal sealed class ServeOptions
{
    public required string Model { get; init; }
    public string Host { get; init; } = "127.0.0.1";
    public int Port { get; init; } = 8080;
    public string Device { get; init; } = "cpu";
    public int Threads { get; init; }
    public int ContextCacheMb { get; init; } = 256;
    public int QueueCapacity { get; init; } = 256;
    public double BatchWindowMs { get; init; } = 2;
    public int MaxBatchCandidates { get; init; } = 4096;
    public bool MicroBatching { get; init; } = true;
    public long MaxBodyBytes { get; init; } = 8 << 20;
    public int MaxCandidates { get; init; } = 2000;
    public int MaxEvents { get; init; } = 10_000;
    public int MaxRequestsPerCall { get; init; } = 64;
    public bool WatchModel { get; init; }
}

/// <summary>
/// The HTTP face of a <see cref="ScoringService"/> on Kestrel: <c>POST /v1/score</c>, <c>GET /healthz</c>,
/// <c>GET /readyz</c>, <c>GET /metrics</c>, <c>POST /admin/reload</c> (loopback only) and, with
/// <see cref="ServeOptions.WatchModel"/>, a reload whenever the checkpoint file changes.
/// </summary>
internal sealed class ServeHost : IAsyncDisposable
{
    private readonly ServeOptions _o;
    private readonly IBackend _backend;
    private readonly WebApplication _app;
    private readonly SemaphoreSlim _reloadGate = new(1, 1);
    private readonly TextWriter _log;
    private FileSystemWatcher? _watcher;
    private Timer? _debounce;
    private long _version = 1;
    private volatile bool _ready;
    private int _disposed;

    private ServeHost(ServeOptions o, IBackend backend, ScoringService service, WebApplication app, TextWriter log)
    {
        _o = o; _backend = backend; Service = service; _app = app; _log = log;
    }

    /// <summary>The scoring service behind the endpoints.</summary>
    public ScoringService Service { get; }

    /// <summary>The counters behind <c>/metrics</c>.</summary>
    public ServeMetrics Metrics { get; } = new();

    /// <summary>The address Kestrel listens on (with the actual port when <see cref="ServeOptions.Port"/> is 0).</summary>
    public Uri Address { get; private set; } = null!;

    /// <summary>True once the model is loaded and a warm-up request scored.</summary>
    public bool Ready => _ready;

    /// <summary>Loads the model, warms it up and starts listening.</summary>
    public static async Task<ServeHost> StartAsync(ServeOptions o, TextWriter? log = null)
    {
        ArgumentNullException.ThrowIfNull(o);
        if (o.MaxCandidates < 1) throw new ArgumentException($"--max-candidates {o.MaxCandidates}: must be >= 1.");
        if (o.MaxEvents < 0) throw new ArgumentException($"--max-events {o.MaxEvents}: must be >= 0.");
        if (o.MaxBodyBytes < 1) throw new ArgumentException($"--max-body-bytes {o.MaxBodyBytes}: must be >= 1.");
        if (o.QueueCapacity < 1) throw new ArgumentException($"--queue {o.QueueCapacity}: must be >= 1.");
        if (o.BatchWindowMs < 0) throw new ArgumentException($"--batch-window-ms {o.BatchWindowMs}: must be >= 0.");
        if (o.ContextCacheMb < 0) throw new ArgumentException($"--context-cache-mb {o.ContextCacheMb}: must be >= 0.");
        if (!IPAddress.TryParse(o.Host == "localhost" ? "127.0.0.1" : o.Host, out var ip)) throw new ArgumentException($"--host {o.Host}: not an IP address.");
        log ??= TextWriter.Null;
        var backend = TrainCommand.OpenBackend(o.Device, o.Threads);
        ScoringService? service = null;
        try
        {
            var scorer = Scorer.Load(o.Model, backend, o.ContextCacheMb);
            service = new ScoringService(scorer, new ScoringServiceOptions
            {
                QueueCapacity = o.QueueCapacity,
                BatchWindow = TimeSpan.FromMilliseconds(o.BatchWindowMs),
                MaxBatchCandidates = o.MaxBatchCandidates,
                MicroBatching = o.MicroBatching,
            });
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseKestrel(k =>
            {
                k.Limits.MaxRequestBodySize = null;                // checked by the endpoint, answered 413 naming the limit
                k.Listen(ip, o.Port);
            });
            var app = builder.Build();
            var host = new ServeHost(o, backend, service, app, log);
            host.Map(app);
            await host.WarmUp(scorer.Schema).ConfigureAwait(false);
            await app.StartAsync().ConfigureAwait(false);
            var addr = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            host.Address = new Uri(addr.Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
            if (o.WatchModel) host.Watch();
            host._ready = true;
            return host;
        }
        catch
        {
            if (service is not null) await service.DisposeAsync().ConfigureAwait(false);
            backend.Dispose();
            throw;
        }
    }

    private async Task WarmUp(Mtfm.Engine.Data.DatasetSchema schema)
    {
        foreach (var sc in schema.Scenarios)
            await Service.ScoreAsync(SyntheticRequests.Make(schema, sc.Name, schema.WindowOrigin + schema.WindowSeconds / 2, 8, 2, 2, "warmup")).ConfigureAwait(false);
    }

    private void Map(WebApplication app)
    {
        app.MapGet("/healthz", (HttpContext ctx) => Text(ctx, 200, "ok\n"));
        app.MapGet("/readyz", (HttpContext ctx) => _ready ? Text(ctx, 200, "ready\n") : Text(ctx, 503, "not ready\n"));
        app.MapGet("/metrics", (HttpContext ctx) =>
        {
            ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            return ctx.Response.WriteAsync(Metrics.Render(Service, _ready));
        });
        app.MapPost("/admin/reload", async (HttpContext ctx) =>
        {
            var remote = ctx.Connection.RemoteIpAddress;
            if (remote is null || !IPAddress.IsLoopback(remote)) { await Error(ctx, 403, "admin", "reload is allowed from loopback only"); return; }
            try
            {
                long v = await ReloadAsync().ConfigureAwait(false);
                await Text(ctx, 200, $"{{\"version\":{v}}}\n", "application/json");
            }
            catch (Exception ex) when (ex is IOException or ArgumentException or InvalidOperationException or Mtfm.Engine.IO.CheckpointFormatException)
            {
                await Error(ctx, 500, "model", $"reload failed, the old model keeps serving: {ex.Message}");
            }
        });
        app.MapPost("/v1/score", Score);
    }

    /// <summary>Loads the checkpoint again beside the serving one and swaps it in; returns the new version.</summary>
    public async Task<long> ReloadAsync()
    {
        await _reloadGate.WaitAsync().ConfigureAwait(false);
        try
        {
            var scorer = await Task.Run(() => Service.RunBetweenBatches(() => Scorer.Load(_o.Model, _backend, _o.ContextCacheMb))).ConfigureAwait(false);
            long v = Interlocked.Increment(ref _version);
            Service.Swap(scorer, v);
            _log.WriteLine($"mtfm serve: model reloaded from {_o.Model}, version {v}");
            return v;
        }
        finally
        {
            _reloadGate.Release();
        }
    }

    private void Watch()
    {
        string file = Path.GetFullPath(Directory.Exists(_o.Model) ? Path.Combine(_o.Model, "model.safetensors") : _o.Model);
        _debounce = new Timer(_ =>
        {
            try { ReloadAsync().GetAwaiter().GetResult(); }
            catch (Exception ex) { _log.WriteLine($"mtfm serve: reload after a change of {file} failed, the old model keeps serving: {ex.Message}"); }
        });
        _watcher = new FileSystemWatcher(Path.GetDirectoryName(file)!, Path.GetFileName(file))
        {
            NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size | NotifyFilters.CreationTime,
        };
        FileSystemEventHandler onChange = (_, _) => _debounce.Change(500, Timeout.Infinite);
        _watcher.Changed += onChange;
        _watcher.Created += onChange;
        _watcher.Renamed += (_, _) => _debounce.Change(500, Timeout.Infinite);
        _watcher.EnableRaisingEvents = true;
    }

    private async Task Score(HttpContext ctx)
    {
        long t0 = Stopwatch.GetTimestamp();
        int status = 500;
        try
        {
            status = await ScoreCore(ctx).ConfigureAwait(false);
        }
        finally
        {
            Metrics.Record(status, Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
    }

    private async Task<int> ScoreCore(HttpContext ctx)
    {
        var req = ctx.Request;
        if (req.ContentLength > _o.MaxBodyBytes)
            return await Error(ctx, 413, "request", $"body of {req.ContentLength} bytes exceeds the limit of {_o.MaxBodyBytes} bytes (--max-body-bytes)");
        var body = new MemoryStream();
        var buf = new byte[16384];
        int read;
        while ((read = await req.Body.ReadAsync(buf, ctx.RequestAborted).ConfigureAwait(false)) > 0)
        {
            if (body.Length + read > _o.MaxBodyBytes)
                return await Error(ctx, 413, "request", $"body exceeds the limit of {_o.MaxBodyBytes} bytes (--max-body-bytes)");
            body.Write(buf, 0, read);
        }
        List<ScoreRequest> requests;
        bool isArray;
        try
        {
            (requests, isArray) = Parse(body.GetBuffer().AsMemory(0, (int)body.Length));
        }
        catch (ScoreRequestException ex)
        {
            return await Error(ctx, 400, ex.Field, ex.Message);
        }
        if (requests.Count > _o.MaxRequestsPerCall)
            return await Error(ctx, 413, "request", $"{requests.Count} requests in one call exceed the limit of {_o.MaxRequestsPerCall} (--max-requests-per-call)");
        for (int i = 0; i < requests.Count; i++)
        {
            string prefix = isArray ? $"[{i}]." : "";
            int nc = requests[i].Candidates?.Count ?? 0, ne = requests[i].Events?.Count ?? 0;
            if (nc > _o.MaxCandidates)
                return await Error(ctx, 413, prefix + "candidates", $"{prefix}candidates: {nc} candidates exceed the limit of {_o.MaxCandidates} (--max-candidates)");
            if (ne > _o.MaxEvents)
                return await Error(ctx, 413, prefix + "events", $"{prefix}events: {ne} events exceed the limit of {_o.MaxEvents} (--max-events)");
        }
        var tasks = new Task<ScoredResult>[requests.Count];
        try
        {
            for (int i = 0; i < tasks.Length; i++) tasks[i] = Service.ScoreAsync(requests[i]);
        }
        catch (ServiceOverloadedException ex)
        {
            ctx.Response.Headers.RetryAfter = "1";
            return await Error(ctx, 503, "request", $"service overloaded: {ex.Message}; retry later");
        }
        var results = new ScoredResult[tasks.Length];
        for (int i = 0; i < tasks.Length; i++)
        {
            try
            {
                results[i] = await tasks[i].ConfigureAwait(false);
            }
            catch (ScoreRequestException ex)
            {
                string prefix = isArray ? $"[{i}]." : "";
                for (int j = i + 1; j < tasks.Length; j++) _ = tasks[j].ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
                return await Error(ctx, 400, prefix + ex.Field, prefix + ex.Message);
            }
        }
        var sb = new StringBuilder();
        if (isArray) sb.Append('[');
        for (int i = 0; i < results.Length; i++)
        {
            if (i > 0) sb.Append(',');
            sb.Append(results[i].Response.ToJson());
        }
        if (isArray) sb.Append(']');
        sb.Append('\n');
        ctx.Response.Headers["X-Model-Version"] = string.Join(",", results.Select(r => r.ModelVersion));
        await Text(ctx, 200, sb.ToString(), "application/json");
        return 200;
    }

    /// <summary>One request object, or an array of them (then fields are named <c>[i].field</c>).</summary>
    private static (List<ScoreRequest>, bool) Parse(ReadOnlyMemory<byte> body)
    {
        if (!System.Text.Unicode.Utf8.IsValid(body.Span))
            throw new ScoreRequestException("request", "request: the body is not valid UTF-8");
        string text = Encoding.UTF8.GetString(body.Span);
        if (!text.AsSpan().TrimStart().StartsWith("[", StringComparison.Ordinal)) return ([ScoreRequest.Parse(text)], false);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(text);
        }
        catch (JsonException ex)
        {
            throw new ScoreRequestException("request", $"request: invalid JSON: {ex.Message}");
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.GetArrayLength() == 0) throw new ScoreRequestException("request", "request: empty array (at least one request is needed)");
            var list = new List<ScoreRequest>(root.GetArrayLength());
            int i = 0;
            foreach (var el in root.EnumerateArray())
            {
                try
                {
                    list.Add(ScoreRequest.Parse(el.GetRawText()));
                }
                catch (ScoreRequestException ex)
                {
                    throw new ScoreRequestException($"[{i}].{ex.Field}", $"[{i}].{ex.Message}");
                }
                i++;
            }
            return (list, true);
        }
    }

    private static async Task<int> Error(HttpContext ctx, int status, string field, string message)
    {
        var buf = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buf))
        {
            w.WriteStartObject();
            w.WriteString("error", message);
            w.WriteString("field", field);
            w.WriteEndObject();
        }
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.Body.WriteAsync(buf.WrittenMemory);
        await ctx.Response.Body.WriteAsync("\n"u8.ToArray());
        return status;
    }

    private static Task Text(HttpContext ctx, int status, string text, string type = "text/plain; charset=utf-8")
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = type;
        return ctx.Response.WriteAsync(text);
    }

    /// <summary>Stops listening (in-flight HTTP requests finish), drains the scoring queue, frees model and backend.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _ready = false;
        _watcher?.Dispose();
        if (_debounce is not null) await _debounce.DisposeAsync().ConfigureAwait(false);
        await _app.StopAsync().ConfigureAwait(false);
        await Service.DisposeAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        _backend.Dispose();
        _reloadGate.Dispose();
    }
}
