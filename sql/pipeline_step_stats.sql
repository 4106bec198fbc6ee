-- pipeline_step_stats: how long does each pipeline step (job) take, and how often does it fail?
--
-- One row per job (namespace, job_name) over pipeline_runs_current. Durations are over ended runs; the failure
-- rate is failed runs (FAIL or ABORT) over ended runs.
--
-- Columns:
--   namespace, job_name   the job
--   runs                  runs seen
--   completed             runs in state COMPLETE
--   failed                runs in state FAIL
--   aborted               runs in state ABORT
--   running               runs not ended yet (START, RUNNING or OTHER)
--   failure_rate          (failed + aborted) / ended runs, 0 to 1 (null when none ended)
--   mean_duration_s       mean duration of ended runs, seconds
--   p50_duration_s        median duration
--   p95_duration_s        95th percentile duration
--   max_duration_s        longest duration
--   last_start_time       start of the latest run
--   last_state            state of the latest run (by start time)
SELECT
    namespace,
    job_name,
    count(*) AS runs,
    count(*) FILTER (WHERE state = 'COMPLETE') AS completed,
    count(*) FILTER (WHERE state = 'FAIL') AS failed,
    count(*) FILTER (WHERE state = 'ABORT') AS aborted,
    count(*) FILTER (WHERE state NOT IN ('COMPLETE', 'FAIL', 'ABORT')) AS running,
    CAST(count(*) FILTER (WHERE state IN ('FAIL', 'ABORT')) AS DOUBLE)
        / nullif(count(*) FILTER (WHERE state IN ('COMPLETE', 'FAIL', 'ABORT')), 0) AS failure_rate,
    avg(duration_s) AS mean_duration_s,
    quantile_cont(duration_s, 0.5) AS p50_duration_s,
    quantile_cont(duration_s, 0.95) AS p95_duration_s,
    max(duration_s) AS max_duration_s,
    max(start_time) AS last_start_time,
    arg_max(state, start_time) AS last_state
FROM pipeline_runs_current
GROUP BY namespace, job_name
