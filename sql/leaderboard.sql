-- leaderboard: which finished run is best in each experiment, on each metric, in each direction?
--
-- One row per (experiment, metric, direction): direction 'max' ranks by the highest last value (accuracy,
-- AUC), 'min' by the lowest (loss, error). Choose the metric and direction with a filter:
--   select * from leaderboard where experiment = 'churn' and metric = 'val_auc' and direction = 'max'
--   select * from leaderboard where metric = 'val_loss' and direction = 'min'
-- Only finished runs compete; NaN values never win. Ties go to the earlier run.
--
-- Columns:
--   experiment   experiment name
--   metric       metric name
--   direction    'max' (higher is better) or 'min' (lower is better)
--   run_id       the best run
--   name         its name
--   value        its last value of the metric
--   runs         how many finished runs logged the metric
--
-- metalake: materialize
WITH run_states AS (
    -- runs_current's few columns this view needs, without computing the others
    SELECT
        run_id,
        arg_max(experiment, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS experiment,
        arg_max(name, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS name,
        arg_max_null(status, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS status,
        epoch_us(min(start_time)) AS started
    FROM runs
    GROUP BY run_id
),
candidates AS (
    SELECT r.experiment, m."key" AS metric, r.run_id, r.name, r.started, m.last_value AS value
    FROM run_metrics AS m
    JOIN run_states AS r USING (run_id)
    -- list_extract([x], 1) is x, hidden from DuckDB's statistics (see metric_summary.sql)
    WHERE r.status = 'finished' AND NOT isnan(list_extract([m.last_value], 1))
)
SELECT
    experiment, metric, 'max' AS direction,
    arg_max(run_id, {'value': value, 'earlier': -started}) AS run_id,
    arg_max(name, {'value': value, 'earlier': -started}) AS name,
    max(value) AS value,
    count(*) AS runs
FROM candidates
GROUP BY experiment, metric
UNION ALL
SELECT
    experiment, metric, 'min' AS direction,
    arg_min(run_id, {'value': value, 'started': started}) AS run_id,
    arg_min(name, {'value': value, 'started': started}) AS name,
    min(value) AS value,
    count(*) AS runs
FROM candidates
GROUP BY experiment, metric
