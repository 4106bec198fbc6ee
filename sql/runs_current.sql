-- runs_current: what is the current state of every run?
--
-- One row per run_id, built from the run's events in `runs`. The latest event (ordered by event_time, then
-- recorded_at, then event_id) gives the state: status, end_time, error_type, error_message. Descriptive
-- attributes (experiment, name, user, git info, ...) are the latest non-null value over the run's events, so a
-- state-change event need not repeat them. start_time is the earliest start_time over the run's events.
--
-- Columns:
--   run_id           run id
--   experiment       experiment the run belongs to
--   name             run name
--   status           current status: scheduled, running, finished, failed or killed
--   start_time       earliest start_time over the run's events
--   end_time         end time from the latest event (null while the run has not ended)
--   duration_s       end_time - start_time in seconds (null while the run has not ended)
--   parent_run_id    parent run of a nested run
--   user, host, command, python_version, git_commit, git_branch, git_dirty, packages_hash, source
--                    run context, latest non-null value
--   error_type       error of the latest event (null unless it failed)
--   error_message    error message of the latest event
--   event_count      number of events recorded for the run
--   last_event_id    event_id of the latest event
--   last_event_time  event_time of the latest event
--   recorded_at      when the latest event was recorded
--   recorded_by      who recorded the latest event
SELECT
    run_id,
    last_value(experiment IGNORE NULLS) OVER run_events AS experiment,
    last_value(name IGNORE NULLS) OVER run_events AS name,
    status,
    min(start_time) OVER run_events AS start_time,
    end_time,
    epoch_us(end_time - min(start_time) OVER run_events) / 1e6 AS duration_s,
    last_value(parent_run_id IGNORE NULLS) OVER run_events AS parent_run_id,
    last_value("user" IGNORE NULLS) OVER run_events AS "user",
    last_value(host IGNORE NULLS) OVER run_events AS host,
    last_value(command IGNORE NULLS) OVER run_events AS command,
    last_value(python_version IGNORE NULLS) OVER run_events AS python_version,
    last_value(git_commit IGNORE NULLS) OVER run_events AS git_commit,
    last_value(git_branch IGNORE NULLS) OVER run_events AS git_branch,
    last_value(git_dirty IGNORE NULLS) OVER run_events AS git_dirty,
    last_value(packages_hash IGNORE NULLS) OVER run_events AS packages_hash,
    last_value(source IGNORE NULLS) OVER run_events AS source,
    error_type,
    error_message,
    count(*) OVER run_events AS event_count,
    event_id AS last_event_id,
    event_time AS last_event_time,
    recorded_at,
    recorded_by
FROM runs
WINDOW run_events AS (
    PARTITION BY run_id
    ORDER BY event_time, recorded_at, event_id
    ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
)
QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY event_time DESC, recorded_at DESC, event_id DESC) = 1
