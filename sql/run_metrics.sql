-- run_metrics: for each run and metric, its last value and range, from the summaries written at each flush.
--
-- Reads `metric_summaries` (a few rows per run and key), not every point in `metrics`, so it stays fast with
-- millions of points. Runs logged through `lake.runs` and the MLflow importer write these summaries; for raw
-- points appended to `metrics` by hand, `metric_summary` computes the same from the points.
--
-- Columns:
--   run_id      run that logged the metric
--   key         metric name
--   last_value  value at the greatest step (ties: latest timestamp)
--   last_step   greatest step logged
--   min_value   smallest value
--   max_value   largest value
--   mean_value  mean of the values
--   count       number of points
--
-- metalake: materialize
SELECT
    run_id,
    "key",
    arg_max(last_value, {'step': last_step, 'timestamp': last_timestamp, 'recorded_at': recorded_at}) AS last_value,
    max(last_step) AS last_step,
    min(min_value) AS min_value,
    max(max_value) AS max_value,
    sum(sum_value) / sum("count") AS mean_value,
    CAST(sum("count") AS BIGINT) AS "count"
FROM metric_summaries
GROUP BY run_id, "key"
