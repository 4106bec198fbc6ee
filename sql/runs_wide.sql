-- runs_wide: one row per run with its state, params, tags and the last value of every metric.
--
-- Params, tags and metrics are maps, so the view works whatever keys the runs logged:
--   select name, params['depth'], metrics['val_auc'] from runs_wide where experiment = 'churn'
-- (`lake.runs.search` returns the same runs with one column per param and metric.)
--
-- Columns:
--   run_id, experiment, name, status, start_time, end_time, duration_s, parent_run_id, user, source
--                  from runs_current
--   params         MAP(VARCHAR, VARCHAR): the run's params
--   tags           MAP(VARCHAR, VARCHAR): the run's tags (latest value per key)
--   metrics        MAP(VARCHAR, DOUBLE): the last value of each metric (see run_metrics)
--
-- metalake: materialize
WITH run_params AS (
    SELECT run_id, map_from_entries(list({'k': "key", 'v': "value"} ORDER BY "key")) AS params
    FROM (SELECT run_id, "key", arg_max("value", recorded_at) AS "value" FROM params GROUP BY run_id, "key")
    GROUP BY run_id
),
run_tag_values AS (
    SELECT run_id, map_from_entries(list({'k': "key", 'v': "value"} ORDER BY "key")) AS tags
    FROM (SELECT run_id, "key", arg_max("value", recorded_at) AS "value" FROM run_tags GROUP BY run_id, "key" HAVING NOT arg_max(coalesce(deleted, false), recorded_at))
    GROUP BY run_id
),
run_metric_values AS (
    SELECT run_id, map_from_entries(list({'k': "key", 'v': last_value} ORDER BY "key")) AS metrics
    FROM run_metrics
    GROUP BY run_id
)
SELECT
    r.run_id,
    r.experiment,
    r.name,
    r.status,
    r.start_time,
    r.end_time,
    r.duration_s,
    r.parent_run_id,
    r."user",
    r.source,
    coalesce(p.params, MAP {}::MAP(VARCHAR, VARCHAR)) AS params,
    coalesce(t.tags, MAP {}::MAP(VARCHAR, VARCHAR)) AS tags,
    coalesce(m.metrics, MAP {}::MAP(VARCHAR, DOUBLE)) AS metrics
FROM runs_current AS r
LEFT JOIN run_params AS p USING (run_id)
LEFT JOIN run_tag_values AS t USING (run_id)
LEFT JOIN run_metric_values AS m USING (run_id)
