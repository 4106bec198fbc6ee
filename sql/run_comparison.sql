-- run_comparison: runs side by side, one row per run and param, tag or metric, with what differs flagged.
--
-- Filter on the runs to compare; `differs_in_experiment` says whether the value is not the same for every run
-- of the experiment that has the key (a quick way to find the params that matter):
--   select * from run_comparison where run_id in ('…', '…') order by kind, key, run_id
--
-- Columns:
--   run_id      run
--   experiment  its experiment
--   name        its name
--   kind        'param', 'tag' or 'metric'
--   key         the param, tag or metric name
--   value       the value as text (metrics: the last value)
--   number      the value as a number where it is one (metrics; numeric params), else null
--   differs_in_experiment  true when runs of the experiment disagree on this key
WITH facts AS (
    SELECT run_id, 'param' AS kind, "key", arg_max("value", recorded_at) AS "value" FROM params GROUP BY run_id, "key"
    UNION ALL
    SELECT run_id, 'tag' AS kind, "key", arg_max("value", recorded_at) AS "value" FROM run_tags GROUP BY run_id, "key"
        HAVING NOT arg_max(coalesce(deleted, false), recorded_at)
    UNION ALL
    SELECT run_id, 'metric' AS kind, "key", CAST(last_value AS VARCHAR) AS "value" FROM run_metrics
)
SELECT
    f.run_id,
    r.experiment,
    r.name,
    f.kind,
    f."key",
    f."value",
    TRY_CAST(f."value" AS DOUBLE) AS number,
    -- two distinct values exactly when the smallest and the largest differ (DISTINCT is not allowed in windows
    -- on Spark or Trino)
    coalesce(
        min(f."value") OVER (PARTITION BY r.experiment, f.kind, f."key")
            <> max(f."value") OVER (PARTITION BY r.experiment, f.kind, f."key"),
        false
    ) AS differs_in_experiment
FROM facts AS f
JOIN runs_current AS r USING (run_id)
