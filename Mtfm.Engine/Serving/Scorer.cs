using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.IO;

namespace Mtfm.Engine.Serving;

/// <summary>
/// Scores requests with a trained MTFM checkpoint on the CPU. The checkpoint (weights, schema, numeric statistics) is
/// loaded once; each request becomes one instance (H and R encoded once, every candidate one T token at the request
/// time) and only the requested scenario's tokenizer and heads run. With a context cache (the default) the H/R tokens'
/// per-layer K/V are computed once per distinct H/R content and reused by later requests (spec §6); the scores are the
/// same bit for bit with or without it. Calls are serialised (one at a time); the scores are bitwise deterministic for a
/// fixed thread count.
/// </summary>
public sealed class Scorer : IDisposable
{
    private readonly IBackend? _ownedBackend;
    private readonly MtfmModel _model;
    private readonly bool _ownsModel;
    private readonly RequestEncoder _encoder;
    private readonly string[][] _scenarioTasks;
    private readonly int[][] _scenarioTaskIndex;
    private readonly Lock _gate = new();
    private readonly ContextCache? _cache;
    private bool _disposed;

    private Scorer(MtfmModel model, NumericStats stats, bool ownsModel, IBackend? ownedBackend, long contextCacheBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(contextCacheBytes);
        _model = model;
        _ownsModel = ownsModel;
        _ownedBackend = ownedBackend;
        var l = model.Layout;
        _encoder = new RequestEncoder(l, stats, model.Population);
        _scenarioTaskIndex = new int[l.ScenarioCount][];
        _scenarioTasks = new string[l.ScenarioCount][];
        for (int s = 0; s < l.ScenarioCount; s++)
        {
            _scenarioTaskIndex[s] = Enumerable.Range(0, l.TaskCount).Where(k => l.ScenarioTaskLabel[s][k] == 1).ToArray();
            _scenarioTasks[s] = _scenarioTaskIndex[s].Select(k => l.Schema.Tasks[k]).ToArray();
        }
        if (contextCacheBytes > 0) _cache = new ContextCache(contextCacheBytes);
    }

    /// <summary>Wraps an already loaded model (not owned: the caller disposes it); <paramref name="contextCacheBytes"/> = 0 runs the plain full forward.</summary>
    internal Scorer(MtfmModel model, NumericStats stats, long contextCacheBytes = 0) : this(model ?? throw new ArgumentNullException(nameof(model)),
        stats ?? throw new ArgumentNullException(nameof(stats)), ownsModel: false, ownedBackend: null, contextCacheBytes) { }

    /// <summary>
    /// Loads a checkpoint written by <c>mtfm train</c>: a run directory (its <c>model.safetensors</c>) or the file
    /// itself, onto a CPU backend with <paramref name="threads"/> threads (0 = one per core).
    /// <paramref name="contextCacheMegabytes"/> bounds the memory of encoded H/R contexts (per-layer K/V) kept for reuse,
    /// least recently used evicted first; 0 turns the cache off (every request runs the full forward).
    /// </summary>
    public static Scorer Load(string path, int threads = 0, int contextCacheMegabytes = 256) =>
        Load(path, ComputeDevice.Cpu(threads), contextCacheMegabytes);

    /// <summary>
    /// Loads a checkpoint (run directory or <c>.safetensors</c> file) onto <paramref name="device"/>
    /// (<see cref="ComputeDevice.Cpu"/> or <see cref="ComputeDevice.Cuda"/>); the scorer owns the device's backend and
    /// frees it on <see cref="Dispose"/>. <paramref name="contextCacheMegabytes"/> as in the CPU overload.
    /// </summary>
    public static Scorer Load(string path, ComputeDevice device, int contextCacheMegabytes = 256)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentOutOfRangeException.ThrowIfNegative(contextCacheMegabytes);
        ArgumentException.ThrowIfNullOrEmpty(path);
        string file = Directory.Exists(path) ? Path.Combine(path, "model.safetensors") : path;
        if (!File.Exists(file)) throw new FileNotFoundException($"model '{file}' does not exist (expected a run directory or a .safetensors file).", file);
        var backend = device.Open();
        try
        {
            var (model, stats) = MtfmCheckpoint.Load(file, backend);
            return new Scorer(model, stats, ownsModel: true, ownedBackend: backend, contextCacheMegabytes * (1L << 20));
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads a checkpoint (run directory or <c>.safetensors</c> file) onto <paramref name="backend"/> (CPU or CUDA, not
    /// owned: the caller disposes it after the scorer). <paramref name="contextCacheMegabytes"/> as in the CPU overload.
    /// </summary>
    internal static Scorer Load(string path, IBackend backend, int contextCacheMegabytes = 256)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentOutOfRangeException.ThrowIfNegative(contextCacheMegabytes);
        ArgumentException.ThrowIfNullOrEmpty(path);
        string file = Directory.Exists(path) ? Path.Combine(path, "model.safetensors") : path;
        if (!File.Exists(file)) throw new FileNotFoundException($"model '{file}' does not exist (expected a run directory or a .safetensors file).", file);
        var (model, stats) = MtfmCheckpoint.Load(file, backend);
        return new Scorer(model, stats, ownsModel: true, ownedBackend: null, contextCacheMegabytes * (1L << 20));
    }

    /// <summary>Bytes of encoded contexts the cache holds now.</summary>
    internal long ContextCacheBytes { get { lock (_gate) return _cache?.Bytes ?? 0; } }

    /// <summary>
    /// Validates and encodes <paramref name="request"/> and obtains its H/R context: from the cache, or encoded now (and
    /// cached when it fits). The result holds the context until disposed; throws <see cref="ScoreRequestException"/>.
    /// </summary>
    internal PreparedRequest Prepare(ScoreRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var enc = _encoder.Encode(request);
        int nc = enc.HistoryTokens + enc.RealtimeTokens;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            EncodedContext ctx;
            if (_cache is null) ctx = _model.EncodeContext(enc.Batch, nc);
            else
            {
                string key = ContextCache.KeyOf(enc.Batch, nc);
                if (_cache.TryGet(key, out ctx)) ctx.Retain();
                else
                {
                    ctx = _model.EncodeContext(enc.Batch, nc);
                    if (_cache.Add(key, ctx)) ctx.Retain();
                }
            }
            return new PreparedRequest(request, enc, ctx);
        }
    }

    /// <summary>
    /// Scores prepared requests of one scenario in one forward (their candidates batched, each attending to its own
    /// context); the scores of each request are bit for bit those of scoring it alone this way (CPU backend).
    /// </summary>
    internal ScoreResponse[] ScoreMany(IReadOnlyList<PreparedRequest> requests)
    {
        ArgumentNullException.ThrowIfNull(requests);
        if (requests.Count == 0) return [];
        int scenario = requests[0].Encoded.Scenario;
        var items = new (EncodedContext, JaggedBatch)[requests.Count];
        for (int i = 0; i < items.Length; i++)
        {
            if (requests[i].Encoded.Scenario != scenario) throw new ArgumentException("all requests of one ScoreMany call must share a scenario.", nameof(requests));
            items[i] = (requests[i].Context, requests[i].Encoded.Batch);
        }
        float[][] probs;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            probs = _model.ScoreTargets(items, scenario, MtfmModel.MinTargetRows);
        }
        var result = new ScoreResponse[requests.Count];
        for (int i = 0; i < result.Length; i++) result[i] = ToResponse(requests[i].Request, scenario, requests[i].Encoded.Batch.TargetCount, probs[i]);
        return result;
    }

    private ScoreResponse ToResponse(ScoreRequest request, int scenario, int count, float[] probs)
    {
        int tasks = _model.Layout.TaskCount;
        var names = _scenarioTasks[scenario];
        var idx = _scenarioTaskIndex[scenario];
        var resp = new ScoreResponse { User = request.User, Scenario = request.Scenario, Scores = new(count) };
        for (int c = 0; c < count; c++)
        {
            var d = new Dictionary<string, float>(names.Length, StringComparer.Ordinal);
            for (int k = 0; k < idx.Length; k++) d[names[k]] = probs[c * tasks + idx[k]];
            resp.Scores.Add(d);
        }
        return resp;
    }

    /// <summary>The dataset schema the model was trained with (features, scenarios, sequences, tasks).</summary>
    public DatasetSchema Schema => _model.Layout.Schema;

    /// <summary>The task names reported for scenario <paramref name="scenario"/> (the tasks it has labels for), in schema order.</summary>
    public IReadOnlyList<string> TasksOf(string scenario) =>
        _model.Layout.TryGetSource(scenario, out int s) && s < _model.Layout.ScenarioCount ? _scenarioTasks[s]
            : throw new ScoreRequestException("scenario", $"'{scenario}' is unknown");

    /// <summary>Requests whose H/R context was found in the context cache.</summary>
    public long ContextCacheHits { get { lock (_gate) return _cache?.Hits ?? 0; } }

    /// <summary>Requests whose H/R context was computed (and cached, when the cache is on and it fits).</summary>
    public long ContextCacheMisses { get { lock (_gate) return _cache?.Misses ?? 0; } }

    internal MtfmModel Model => _model;

    internal RequestEncoder Encoder => _encoder;

    /// <summary>Scores every candidate of <paramref name="request"/>; throws <see cref="ScoreRequestException"/> (naming the field) for a bad request.</summary>
    public ScoreResponse Score(ScoreRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var enc = _encoder.Encode(request);
        return ToResponse(request, enc.Scenario, enc.Batch.TargetCount, Run(enc));
    }

    /// <summary>Probabilities [candidates, tasks] (all tasks, row-major) of an encoded request.</summary>
    internal float[] ScoreProbabilities(ScoreRequest request) => Run(_encoder.Encode(request));

    private float[] Run(EncodedRequest enc)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_cache is null) return _model.Score(enc.Batch);
            int nc = enc.HistoryTokens + enc.RealtimeTokens;
            string key = ContextCache.KeyOf(enc.Batch, nc);
            bool kept = true;
            if (!_cache.TryGet(key, out var ctx))
            {
                ctx = _model.EncodeContext(enc.Batch, nc);
                kept = _cache.Add(key, ctx);
            }
            try
            {
                return _model.ScoreTargets([(ctx, enc.Batch)], enc.Scenario)[0];
            }
            finally
            {
                if (!kept) ctx.Dispose();
            }
        }
    }

    /// <summary>Frees the model and its backend (when loaded by <see cref="Load(string, int, int)"/>).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _cache?.Dispose();
            if (_ownsModel) _model.Dispose();
            _ownedBackend?.Dispose();
        }
    }
}

/// <summary>A validated, encoded request holding its H/R context (one reference, released by <see cref="Dispose"/>).</summary>
internal sealed class PreparedRequest(ScoreRequest request, EncodedRequest encoded, EncodedContext context) : IDisposable
{
    public ScoreRequest Request { get; } = request;
    public EncodedRequest Encoded { get; } = encoded;
    public EncodedContext Context { get; } = context;
    public int Candidates => Encoded.Batch.TargetCount;
    public void Dispose() => Context.Dispose();
}
