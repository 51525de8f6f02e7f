namespace Mtfm.Engine.Data;

/// <summary>
/// The reference SQL (DuckDB dialect, Spark-compatible in spirit) of user-level aggregation, as printed in
/// <c>docs/data.md</c>. Inputs: a table <c>events(event_id BIGINT, user_id VARCHAR, ts BIGINT, is_exposure BOOLEAN,
/// source VARCHAR, click INTEGER, conversion INTEGER)</c> (labels NULL where absent) and <c>caps(source VARCHAR, cap INTEGER)</c> (the history cap per sequence); the placeholders
/// <c>{window}</c> and <c>{origin}</c> are the window length and origin in seconds. Output: the columns of
/// <see cref="AggregatedParquetWriter.ColumnsFor"/> for the tasks click and conversion.
/// </summary>
internal static class ReferenceSql
{
    /// <summary>The query text.</summary>
    public const string UserWindowAggregation = """
WITH ev AS (
  SELECT *, CAST(floor((ts - {origin}) / {window}) AS BIGINT) AS w FROM events
),
inst AS (
  SELECT DISTINCT user_id, w FROM ev WHERE is_exposure
),
h AS (
  SELECT user_id, w,
         list(event_id ORDER BY ts, event_id) AS h_event_id,
         list(ts ORDER BY ts, event_id) AS h_time,
         list(source ORDER BY ts, event_id) AS h_source
  FROM (
    SELECT i.user_id, i.w, e.event_id, e.ts, e.source
    FROM inst i
    JOIN ev e ON e.user_id = i.user_id AND NOT e.is_exposure AND e.ts < {origin} + i.w * {window}
    JOIN caps c ON c.source = e.source
    QUALIFY row_number() OVER (PARTITION BY i.user_id, i.w, e.source ORDER BY e.ts DESC, e.event_id DESC) <= c.cap
  )
  GROUP BY user_id, w
),
r AS (
  SELECT user_id, w,
         list(event_id ORDER BY ts, event_id) AS r_event_id,
         list(ts ORDER BY ts, event_id) AS r_time,
         list(source ORDER BY ts, event_id) AS r_source
  FROM ev WHERE NOT is_exposure GROUP BY user_id, w
),
t AS (
  SELECT user_id, w,
         list(event_id ORDER BY ts, event_id) AS t_event_id,
         list(ts ORDER BY ts, event_id) AS t_time,
         list(source ORDER BY ts, event_id) AS t_source,
         list(click ORDER BY ts, event_id) AS t_click,
         list(conversion ORDER BY ts, event_id) AS t_conversion
  FROM ev WHERE is_exposure GROUP BY user_id, w
)
SELECT t.user_id, {origin} + t.w * {window} AS window_start,
       coalesce(h.h_event_id, []) AS h_event_id, coalesce(h.h_time, []) AS h_time, coalesce(h.h_source, []) AS h_source,
       coalesce(r.r_event_id, []) AS r_event_id, coalesce(r.r_time, []) AS r_time, coalesce(r.r_source, []) AS r_source,
       t.t_event_id, t.t_time, t.t_source, t.t_click, t.t_conversion
FROM t
LEFT JOIN h ON h.user_id = t.user_id AND h.w = t.w
LEFT JOIN r ON r.user_id = t.user_id AND r.w = t.w
ORDER BY t.user_id, window_start
""";
}
