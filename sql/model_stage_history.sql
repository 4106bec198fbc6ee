-- model_stage_history: when was each model version in each stage? One row per period.
--
-- Built from the append-only model_events, so the answer about a past moment never changes. A version is in
-- stage 'none' from its registration to its first transition. Which version was in production on a date:
--   select model, version from model_stage_history
--   where model = 'churn' and stage = 'production'
--     and valid_from <= TIMESTAMPTZ '2026-03-01' and (valid_to is null or valid_to > TIMESTAMPTZ '2026-03-01')
--
-- Columns:
--   model, version   the model version
--   stage            none, staging, production or archived
--   valid_from       when the version entered the stage
--   valid_to         when it left it (null: still there)
--   changed_by       who made the change
--   reason           why, as given
--   override         true when the move was forced past a governance rule
SELECT
    model,
    version,
    CASE WHEN event_type = 'registered' THEN 'none' ELSE stage END AS stage,
    event_time AS valid_from,
    lead(event_time) OVER (PARTITION BY model, version ORDER BY event_time, recorded_at, event_id) AS valid_to,
    recorded_by AS changed_by,
    reason,
    coalesce(override, false) AS override
FROM model_events
WHERE event_type IN ('registered', 'stage_transition') AND version IS NOT NULL
