-- pipeline_runs_current: what is the state of every pipeline run (OpenLineage job run), whatever order its events came in?
--
-- One row per run_id over pipeline_runs (each event counted once, by event_id). The state is the latest terminal
-- event (COMPLETE, FAIL, ABORT) by event time when the run has one, else its latest event (START, RUNNING,
-- OTHER); a START that arrives after the COMPLETE does not reopen the run. start_time is the earliest START
-- (else the earliest event), end_time the latest terminal event.
--
-- Columns:
--   run_id           OpenLineage runId
--   namespace        job namespace
--   job_name         job name
--   state            START, RUNNING, COMPLETE, FAIL, ABORT or OTHER
--   start_time       earliest START event time (earliest event when no START arrived)
--   end_time         time of the terminal event (null while the run has not ended)
--   duration_s       end_time - start_time in seconds (null while the run has not ended)
--   parent_run_id    run id of the parent run (e.g. the Airflow DAG run of a task run)
--   parent_job       parent job as NAMESPACE/NAME
--   error_message    message of the errorMessage run facet of a failed run
--   event_count      distinct events received for the run
--   last_event_time  time of the latest event
--   producer         software that emitted the latest event
--
-- metalake: materialize
WITH events AS (
    SELECT DISTINCT ON (event_id)
        *,
        state IN ('COMPLETE', 'FAIL', 'ABORT') AS terminal,
        CASE state WHEN 'START' THEN 1 WHEN 'RUNNING' THEN 2 WHEN 'OTHER' THEN 0 ELSE 3 END AS rank
    FROM pipeline_runs
    ORDER BY event_id, recorded_at
)
SELECT
    run_id,
    arg_max(namespace, event_time) AS namespace,
    arg_max(job_name, event_time) AS job_name,
    arg_max(state, {'terminal': terminal, 't': event_time, 'rank': rank, 'e': event_id}) AS state,
    coalesce(min(event_time) FILTER (WHERE state = 'START'), min(event_time)) AS start_time,
    max(event_time) FILTER (WHERE terminal) AS end_time,
    date_diff(
        'microsecond',
        coalesce(min(event_time) FILTER (WHERE state = 'START'), min(event_time)),
        max(event_time) FILTER (WHERE terminal)
    ) / 1e6 AS duration_s,
    arg_max(parent_run_id, event_time) AS parent_run_id,
    arg_max(parent_job, event_time) AS parent_job,
    arg_max(json_extract_string(facets, '$.errorMessage.message'), event_time)
        FILTER (WHERE state = 'FAIL') AS error_message,
    count(*) AS event_count,
    max(event_time) AS last_event_time,
    arg_max(producer, event_time) AS producer
FROM events
GROUP BY run_id
