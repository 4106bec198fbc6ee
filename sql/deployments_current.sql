-- deployments_current: which model version served where, and when? One row per deployment, with its window.
--
-- Built from the start and end events in `deployments`. A deployment serves from its start to its end, or is
-- still serving (ended_at null). Windows are per model and environment: recording a new version of a model in
-- an environment ends the deployment it replaces there (`lake.deployments.record`), so consecutive windows of a
-- model in an environment follow each other. If an end was recorded twice (two writers racing), the earliest
-- counts.
--
-- Columns:
--   deployment_id             deployment id (UUIDv7)
--   model, version            model version deployed
--   environment               where it serves, e.g. staging or production
--   started_at                start of the window
--   ended_at                  end of the window; null while the deployment is serving
--   duration_s                ended_at - started_at in seconds; null while serving
--   is_active                 true while the deployment has no end event
--   endpoint                  serving endpoint
--   git_sha, ci_run_id        commit and CI run that deployed it
--   pipeline_run              pipeline run that deployed it (pipeline_runs.run_id)
--   start_reason, end_reason  why it started / ended (e.g. "replaced by deployment ...", "rollback")
--   previous_deployment_id    deployment of the same model in the same environment that started just before
--   previous_version          its model version (null for the first deployment there)
--   deployed_by               who recorded the start (recorded_by)
--   recorded_at               when the latest event of the deployment was recorded
--
-- metalake: materialize
WITH windows AS (
    SELECT
        deployment_id,
        any_value(model) FILTER (WHERE event_type = 'start') AS model,
        any_value(version) FILTER (WHERE event_type = 'start') AS version,
        any_value(environment) FILTER (WHERE event_type = 'start') AS environment,
        min("at") FILTER (WHERE event_type = 'start') AS started_at,
        min("at") FILTER (WHERE event_type = 'end') AS ended_at,
        any_value(endpoint) FILTER (WHERE event_type = 'start') AS endpoint,
        any_value(git_sha) FILTER (WHERE event_type = 'start') AS git_sha,
        any_value(ci_run_id) FILTER (WHERE event_type = 'start') AS ci_run_id,
        any_value(pipeline_run) FILTER (WHERE event_type = 'start') AS pipeline_run,
        any_value(reason) FILTER (WHERE event_type = 'start') AS start_reason,
        arg_min(reason, "at") FILTER (WHERE event_type = 'end') AS end_reason,
        any_value(recorded_by) FILTER (WHERE event_type = 'start') AS deployed_by,
        max(recorded_at) AS recorded_at
    FROM deployments
    GROUP BY deployment_id
    HAVING count(*) FILTER (WHERE event_type = 'start') > 0
)
SELECT
    deployment_id,
    model,
    version,
    environment,
    started_at,
    ended_at,
    epoch_us(ended_at - started_at) / 1e6 AS duration_s,
    ended_at IS NULL AS is_active,
    endpoint,
    git_sha,
    ci_run_id,
    pipeline_run,
    start_reason,
    end_reason,
    lag(deployment_id) OVER same_place AS previous_deployment_id,
    lag(version) OVER same_place AS previous_version,
    deployed_by,
    recorded_at
FROM windows
WINDOW same_place AS (PARTITION BY model, environment ORDER BY started_at, deployment_id)
