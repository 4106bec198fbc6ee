-- runs_current: what is the current state of every run?
--
-- One row per run_id, as run_states gives it, with one status derived from the clock: a run whose latest event
-- says running and whose last heartbeat (last_event_time: each flush records one, and a running job's timer
-- one a minute) is older than the lake's lost-after setting (connect(lost_after=...), $METALAKE_LOST_AFTER,
-- default 10 minutes) is shown `lost`: its process most likely died. Nothing is rewritten: the same run shows
-- running again once it logs (resume), and as of a past moment the clock is that moment.
--
-- Columns: those of run_states; status is scheduled, running, lost, finished, failed or killed.
SELECT * REPLACE (
    CASE
        WHEN status = 'running' AND last_event_time < (SELECT lost_before FROM lake_clock) THEN 'lost'
        ELSE status
    END AS status
)
FROM run_states
