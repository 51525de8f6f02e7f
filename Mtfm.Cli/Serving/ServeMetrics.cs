using System.Diagnostics;
using System.Globalization;
using System.Text;
using Mtfm.Engine.Serving;

namespace Mtfm.Cli.Serving;

/// <summary>Counters of <c>mtfm serve</c>, rendered in the Prometheus text format by <see cref="Render"/>.</summary>
internal sealed class ServeMetrics
{
    /// <summary>Upper bounds (seconds) of the latency histogram's buckets.</summary>
    public static readonly double[] LatencyBuckets = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5];

    private readonly Lock _gate = new();
    private readonly SortedDictionary<int, long> _byCode = [];
    private readonly long[] _bucketCounts = new long[LatencyBuckets.Length];
    private long _latencyCount;
    private double _latencySum;
    private long _lastCandidates;
    private long _lastTicks = Stopwatch.GetTimestamp();
    private double _candidatesPerSecond;

    /// <summary>Counts one answered scoring call with its status code and duration.</summary>
    public void Record(int status, double seconds)
    {
        lock (_gate)
        {
            _byCode[status] = _byCode.GetValueOrDefault(status) + 1;
            _latencyCount++;
            _latencySum += seconds;
            for (int b = 0; b < LatencyBuckets.Length; b++) if (seconds <= LatencyBuckets[b]) _bucketCounts[b]++;
        }
    }

    /// <summary>Requests answered with <paramref name="status"/> so far.</summary>
    public long Count(int status) { lock (_gate) return _byCode.GetValueOrDefault(status); }

    /// <summary>The metrics in Prometheus text exposition format.</summary>
    public string Render(ScoringService service, bool ready)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        lock (_gate)
        {
            long cand = service.CandidatesScored, now = Stopwatch.GetTimestamp();
            double dt = (double)(now - _lastTicks) / Stopwatch.Frequency;
            if (dt >= 1)
            {
                _candidatesPerSecond = (cand - _lastCandidates) / dt;
                _lastCandidates = cand;
                _lastTicks = now;
            }
            sb.Append("# HELP mtfm_requests_total Scoring calls (POST /v1/score) answered, by HTTP status code.\n# TYPE mtfm_requests_total counter\n");
            foreach (var (code, n) in _byCode) sb.Append(inv, $"mtfm_requests_total{{code=\"{code}\"}} {n}\n");
            sb.Append("# HELP mtfm_errors_total Scoring calls answered with a 4xx or 5xx code, by code.\n# TYPE mtfm_errors_total counter\n");
            foreach (var (code, n) in _byCode) if (code >= 400) sb.Append(inv, $"mtfm_errors_total{{code=\"{code}\"}} {n}\n");
            sb.Append("# HELP mtfm_request_duration_seconds Time from receiving a scoring call to its answer.\n# TYPE mtfm_request_duration_seconds histogram\n");
            for (int b = 0; b < LatencyBuckets.Length; b++)
                sb.Append(inv, $"mtfm_request_duration_seconds_bucket{{le=\"{LatencyBuckets[b]}\"}} {_bucketCounts[b]}\n");
            sb.Append(inv, $"mtfm_request_duration_seconds_bucket{{le=\"+Inf\"}} {_latencyCount}\n");
            sb.Append(inv, $"mtfm_request_duration_seconds_sum {_latencySum}\nmtfm_request_duration_seconds_count {_latencyCount}\n");
            sb.Append(inv, $"# HELP mtfm_candidates_scored_total Candidates scored.\n# TYPE mtfm_candidates_scored_total counter\nmtfm_candidates_scored_total {cand}\n");
            sb.Append(inv, $"# HELP mtfm_candidates_per_second Candidates scored per second between the last two scrapes at least 1 s apart.\n# TYPE mtfm_candidates_per_second gauge\nmtfm_candidates_per_second {_candidatesPerSecond}\n");
        }
        sb.Append(inv, $"# HELP mtfm_forward_batches_total Forwards run (one per scenario of a micro-batch).\n# TYPE mtfm_forward_batches_total counter\nmtfm_forward_batches_total {service.Batches}\n");
        sb.Append(inv, $"# HELP mtfm_queue_depth Requests waiting for the scoring worker.\n# TYPE mtfm_queue_depth gauge\nmtfm_queue_depth {service.QueueDepth}\n");
        sb.Append(inv, $"# HELP mtfm_context_cache_hits_total H/R contexts found in the cache (current model).\n# TYPE mtfm_context_cache_hits_total counter\nmtfm_context_cache_hits_total {service.ContextCacheHits}\n");
        sb.Append(inv, $"# HELP mtfm_context_cache_misses_total H/R contexts computed (current model).\n# TYPE mtfm_context_cache_misses_total counter\nmtfm_context_cache_misses_total {service.ContextCacheMisses}\n");
        sb.Append(inv, $"# HELP mtfm_model_version Version of the serving model (1 at start, +1 per reload).\n# TYPE mtfm_model_version gauge\nmtfm_model_version {service.ModelVersion}\n");
        sb.Append(inv, $"# HELP mtfm_ready 1 when the model is loaded and warmed up.\n# TYPE mtfm_ready gauge\nmtfm_ready {(ready ? 1 : 0)}\n");
        return sb.ToString();
    }
}
