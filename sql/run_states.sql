-- run_states: every run's state as its events give it, before the clock is looked at (see runs_current).
--
-- One row per run_id, built from the run's events in `runs` in one aggregation. The latest event (ordered by
-- event_time, then recorded_at, then event_id) gives the state: status, end_time, error_type, error_message. Descriptive
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
--   last_event_time  event_time of the latest event (for a running run, its last heartbeat)
--   recorded_at      when the latest event was recorded
--   recorded_by      who recorded the latest event
--   deleted          true once the run was deleted (through the MLflow-compatible endpoints), until restored
--
-- metalake: materialize
SELECT
    run_id,
    arg_max(experiment, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS experiment,
    arg_max(name, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS name,
    arg_max_null(status, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS status,
    min(start_time) AS start_time,
    arg_max_null(end_time, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS end_time,
    date_diff('microsecond', min(start_time), arg_max_null(end_time, {'t': event_time, 'r': recorded_at, 'e': event_id})) / 1e6
        AS duration_s,
    arg_max(parent_run_id, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS parent_run_id,
    arg_max("user", {'t': event_time, 'r': recorded_at, 'e': event_id}) AS "user",
    arg_max(host, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS host,
    arg_max(command, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS command,
    arg_max(python_version, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS python_version,
    arg_max(git_commit, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS git_commit,
    arg_max(git_branch, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS git_branch,
    arg_max(git_dirty, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS git_dirty,
    arg_max(packages_hash, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS packages_hash,
    arg_max(source, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS source,
    arg_max_null(error_type, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS error_type,
    arg_max_null(error_message, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS error_message,
    count(*) AS event_count,
    arg_max(event_id, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS last_event_id,
    max(event_time) AS last_event_time,
    arg_max_null(recorded_at, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS recorded_at,
    arg_max_null(recorded_by, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS recorded_by,
    coalesce(arg_max(deleted, {'t': event_time, 'r': recorded_at, 'e': event_id}), false) AS deleted
FROM runs
GROUP BY run_id
