-- registry_current: what is each registered model version now: its stage, its aliases, where it came from?
--
-- One row per live (model, version): a version deleted, or whose model was deleted or renamed after it was
-- registered, is left out (its history stays in model_stage_history). The stage is the latest stage_transition event of the version ('none' when it
-- never moved); aliases are the aliases whose latest event is alias_set pointing at it. Ask for what serves:
--   select * from registry_current where model = 'churn' and stage = 'production'
--
-- Columns:
--   model, version   the model version
--   stage            none, staging, production or archived
--   stage_since      when it entered that stage (null while 'none' since registration)
--   aliases          list of aliases that name it now
--   run_id           run that trained it
--   artifact_uri     where its files are
--   flavor           framework flavor, e.g. sklearn
--   description      description given at registration
--   registered_at    when it was registered
--   registered_by    who registered it
--
-- metalake: materialize
WITH versions AS (
    SELECT
        model,
        version,
        arg_min(run_id, recorded_at) AS run_id,
        arg_min(artifact_uri, recorded_at) AS artifact_uri,
        arg_min(flavor, recorded_at) AS flavor,
        arg_min(description, recorded_at) AS description,
        min(recorded_at) AS registered_at,
        arg_min(recorded_by, recorded_at) AS registered_by
    FROM model_versions
    GROUP BY model, version
),
stages AS (
    SELECT
        model,
        version,
        arg_max(stage, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS stage,
        max(event_time) AS stage_since
    FROM model_events
    WHERE event_type = 'stage_transition'
    GROUP BY model, version
),
alias_state AS (
    SELECT
        model,
        alias,
        arg_max(event_type, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS last_event,
        arg_max(version, {'t': event_time, 'r': recorded_at, 'e': event_id}) AS version
    FROM model_events
    WHERE event_type IN ('alias_set', 'alias_deleted')
    GROUP BY model, alias
),
removed AS (
    SELECT DISTINCT v.model, v.version, true AS is_removed
    FROM (SELECT model, version, min(recorded_at) AS registered_at FROM model_versions GROUP BY model, version) AS v
    JOIN model_events AS e ON e.model = v.model
    WHERE (e.event_type = 'deleted' AND e.version = v.version)
        OR (e.event_type IN ('deleted', 'renamed') AND e.version IS NULL AND e.event_time >= v.registered_at)
),
aliases AS (
    SELECT model, version, list(alias ORDER BY alias) AS aliases
    FROM alias_state
    WHERE last_event = 'alias_set'
    GROUP BY model, version
)
SELECT
    v.model,
    v.version,
    coalesce(s.stage, 'none') AS stage,
    s.stage_since,
    coalesce(a.aliases, CAST([] AS VARCHAR[])) AS aliases,
    v.run_id,
    v.artifact_uri,
    v.flavor,
    v.description,
    v.registered_at,
    v.registered_by
FROM versions AS v
LEFT JOIN stages AS s USING (model, version)
LEFT JOIN aliases AS a USING (model, version)
LEFT JOIN removed AS r USING (model, version)
WHERE r.is_removed IS NULL
