-- runs_current: what is the current state of every run?
--
-- One row per run_id, as run_states gives it, with one status derived from the clock: a run logged by metalake
-- whose latest event says running and whose last heartbeat (last_event_time: each flush records one, and a
-- running job's timer one a minute) is older than the lake's lost-after setting (connect(lost_after=...),
-- $METALAKE_LOST_AFTER, default 10 minutes) is shown `lost`: its process most likely died. Nothing is
-- rewritten: the run shows running again once it logs (resume), and as of a past moment the clock is that
-- moment. Runs imported from elsewhere (source other than metalake) record no heartbeats and are never lost.
--
-- Columns:
--   run_id           run id
--   experiment       experiment the run belongs to
--   name             run name
--   status           scheduled, running, lost (derived, see above), finished, failed or killed
--   start_time       earliest start_time over the run's events
--   end_time         end time from the latest event (null while the run has not ended)
--   duration_s       end_time - start_time in seconds (null while the run has not ended)
--   parent_run_id    parent run of a nested run
--   user, host, command, python_version, git_commit, git_branch, git_dirty, packages_hash, source
--                    run context, latest non-null value
--   error_type       error of the latest event (null unless it failed)
--   error_message    error message of the latest event
--   event_count      number of events recorded for the run (heartbeats included)
--   last_event_id    event_id of the latest event
--   last_event_time  event_time of the latest event (for a running run, its last heartbeat)
--   recorded_at      when the latest event was recorded
--   recorded_by      who recorded the latest event
--   deleted          true once the run was deleted (MLflow's lifecycle stage), until restored
SELECT
    run_id,
    experiment,
    name,
    CASE
        WHEN status = 'running' AND source = 'metalake'
            AND last_event_time < (SELECT lost_before FROM lake_clock) THEN 'lost'
        ELSE status
    END AS status,
    start_time,
    end_time,
    duration_s,
    parent_run_id,
    "user",
    host,
    command,
    python_version,
    git_commit,
    git_branch,
    git_dirty,
    packages_hash,
    source,
    error_type,
    error_message,
    event_count,
    last_event_id,
    last_event_time,
    recorded_at,
    recorded_by,
    deleted
FROM run_states
