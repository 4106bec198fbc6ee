-- deployments_current: which model version served where, and when? One row per deployment, with its window.
--
-- Built from the start and end events in `deployments`. A deployment serves from its start to its end, or is
-- still serving (ended_at null). If an end was recorded twice (two writers racing), the earliest counts.
-- Replacement: a start recorded with replacement (`lake.deployments.record`'s default; not a canary recorded
-- with replace_active=False / --keep-active) ends, at its start, every deployment of the same model in the same
-- environment that started before it and was still serving: the ones it ended in its own commit, and any that
-- a concurrent writer recorded without its knowledge, so two racing rollouts never leave both serving.
-- previous_deployment_id is what the deployment replaced: of the deployments that stopped serving at its start
-- because of it, the one that started first, e.g. the old version rather than the canary after a canary. Null
-- when it replaced nothing: the first deployment there, a canary, or a start after a manual end. (Starts
-- recorded before `replaces` existed count the deployments of the model there that ended at their start.)
--
-- Columns:
--   deployment_id             deployment id (UUIDv7)
--   model, version            model version deployed
--   environment               where it serves, e.g. staging or production
--   started_at                start of the window
--   ended_at                  end of the window; null while the deployment is serving
--   duration_s                ended_at - started_at in seconds; null while serving
--   is_active                 true while the deployment has not ended
--   endpoint                  serving endpoint
--   git_sha, ci_run_id        commit and CI run that deployed it
--   pipeline_run              pipeline run that deployed it (pipeline_runs.run_id)
--   start_reason, end_reason  why it started / ended (e.g. "replaced by deployment ...", "rollback")
--   replace_active            whether its start replaces the serving deployments (false: canary or A/B test)
--   replaced                  ids of the deployments it replaced (ended at its start), oldest first
--   previous_deployment_id    the first of them to have started (see above); null when it replaced nothing
--   previous_version          its model version
--   deployed_by               who recorded the start (recorded_by)
--   recorded_at               when the latest event of the deployment was recorded
--
-- metalake: materialize
WITH events AS (
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
        any_value(replace_active) FILTER (WHERE event_type = 'start') AS replace_active,
        any_value(replaces) FILTER (WHERE event_type = 'start') AS replaces,
        any_value(recorded_by) FILTER (WHERE event_type = 'start') AS deployed_by,
        max(recorded_at) AS recorded_at
    FROM deployments
    GROUP BY deployment_id
    HAVING count(*) FILTER (WHERE event_type = 'start') > 0
),
superseded AS (
    -- the first later start with replacement of the same model in the same environment
    SELECT
        e.deployment_id,
        min(s.started_at) AS superseded_at,
        arg_min(s.deployment_id, {'s': s.started_at, 'd': s.deployment_id}) AS superseded_by
    FROM events AS e
    JOIN events AS s
        ON s.model = e.model
        AND s.environment = e.environment
        AND s.replace_active
        AND s.started_at > e.started_at
    GROUP BY e.deployment_id
),
cuts AS (
    SELECT
        e.*,
        coalesce(s.superseded_at < e.ended_at, s.superseded_at IS NOT NULL) AS cut_by_later_start,
        s.superseded_at,
        s.superseded_by
    FROM events AS e
    LEFT JOIN superseded AS s USING (deployment_id)
),
windows AS (
    SELECT
        deployment_id,
        model,
        version,
        environment,
        started_at,
        CASE WHEN cut_by_later_start THEN superseded_at ELSE ended_at END AS ended_at,
        endpoint,
        git_sha,
        ci_run_id,
        pipeline_run,
        start_reason,
        CASE
            WHEN cut_by_later_start THEN 'replaced by deployment ' || superseded_by
            ELSE end_reason
        END AS end_reason,
        replace_active,
        replaces,
        deployed_by,
        recorded_at,
        cut_by_later_start,
        superseded_by
    FROM cuts
),
candidates AS (
    SELECT e.deployment_id, r.replaced_id
    FROM events AS e
    CROSS JOIN unnest(from_json(e.replaces, '["VARCHAR"]')) AS r(replaced_id)
    WHERE e.replaces IS NOT NULL
    UNION
    SELECT superseded_by AS deployment_id, deployment_id AS replaced_id
    FROM windows
    WHERE cut_by_later_start
    UNION
    SELECT s.deployment_id, e.deployment_id AS replaced_id
    FROM events AS s
    JOIN events AS e
        ON e.model = s.model
        AND e.environment = s.environment
        AND e.ended_at = s.started_at
        AND e.started_at <= s.started_at
        AND e.deployment_id <> s.deployment_id
    WHERE s.replaces IS NULL
),
replaced AS (
    SELECT
        c.deployment_id,
        list(p.deployment_id ORDER BY p.started_at, p.deployment_id) AS replaced,
        arg_min(p.deployment_id, {'s': p.started_at, 'd': p.deployment_id}) AS previous_deployment_id,
        arg_min(p.version, {'s': p.started_at, 'd': p.deployment_id}) AS previous_version
    FROM candidates AS c
    JOIN windows AS d ON d.deployment_id = c.deployment_id
    JOIN windows AS p ON p.deployment_id = c.replaced_id AND p.ended_at = d.started_at
    GROUP BY c.deployment_id
)
SELECT
    w.deployment_id,
    w.model,
    w.version,
    w.environment,
    w.started_at,
    w.ended_at,
    date_diff('microsecond', w.started_at, w.ended_at) / 1e6 AS duration_s,
    w.ended_at IS NULL AS is_active,
    w.endpoint,
    w.git_sha,
    w.ci_run_id,
    w.pipeline_run,
    w.start_reason,
    w.end_reason,
    w.replace_active,
    coalesce(r.replaced, []::VARCHAR[]) AS replaced,
    r.previous_deployment_id,
    r.previous_version,
    w.deployed_by,
    w.recorded_at
FROM windows AS w
LEFT JOIN replaced AS r USING (deployment_id)
