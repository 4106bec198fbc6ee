-- metric_summary: for each run and metric, what was the last value logged, and what range did it cover?
--
-- One row per (run_id, key) over `metrics`. last_value is the value at the greatest step, then the greatest
-- timestamp (then the latest recorded_at, should a retried write have logged the same point twice).
-- min/max/mean ignore NaN values so that one diverged step does not hide the range; count counts every value.
--
-- Columns:
--   run_id      run that logged the metric
--   key         metric name
--   last_value  value at the greatest step (ties: greatest timestamp)
--   last_step   greatest step logged
--   min_value   smallest non-NaN value
--   max_value   largest non-NaN value
--   mean_value  mean of the non-NaN values
--   count       number of values logged
SELECT
    run_id,
    "key",
    arg_max("value", {'step': step, 'timestamp': "timestamp", 'recorded_at': recorded_at}) AS last_value,
    max(step) AS last_step,
    -- list_extract(["value"], 1) is "value", hidden from DuckDB's statistics: Parquet files leave NaN out of their
    -- min/max, and DuckDB (seen on 2.0.1) then takes isnan("value") for false in a file that holds NaN
    min("value") FILTER (WHERE NOT isnan(list_extract(["value"], 1))) AS min_value,
    max("value") FILTER (WHERE NOT isnan(list_extract(["value"], 1))) AS max_value,
    avg("value") FILTER (WHERE NOT isnan(list_extract(["value"], 1))) AS mean_value,
    count(*) AS "count"
FROM metrics
GROUP BY run_id, "key"
