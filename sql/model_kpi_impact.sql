-- model_kpi_impact: did the new model help? Each KPI before and after each deployment, with offline metrics.
--
-- For each deployment and each KPI that follows its model: the KPI's mean before and after the deployment
-- started, beside the model version's offline metrics and the quality of the data it was trained on.
--
-- The window is 7 days (exactly 604,800 s, whatever the session time zone) here; `lake.kpis.impact(window="14d")`
-- and `metalake kpis impact --window 14d` compute the same with another window, bound as parameters in place of
-- the `settings` line below (which also names the environments where unlabeled observations count).
--   before  [deployed_at - window, deployed_at), cut so that it measures only what the deployment replaced:
--           never earlier than the start of the deployment it replaced (deployments_current's
--           previous_deployment_id: after a canary, the old version, not the canary), nor than the latest end of
--           another deployment of the model in that environment (no time served by a version that ended before)
--   after   [deployed_at, deployed_at + window), cut at ended_at: only while this deployment was serving
-- A KPI follows the models in its `models` list; an empty list (or none) means it follows every model. An
-- observation counts when its environment is the deployment's. An observation without an environment counts
-- only for deployments to a production environment, so staging deployments are never judged by production
-- traffic: the lake's setting (`lake.kpis.set_production_environments([...])`, `metalake kpis production-envs
-- --set ...`, kept as the latest `kpi_production_environments` row of `policies`, so time travel reads the list
-- in force then), else production, prod, prd and live. `impact(unlabeled_environment=...)` and
-- `--unlabeled-env` bind other environments for one query (None, '': such observations count nowhere).
-- Segments are compared separately, never mixed: one row per segment observed (segment null = the overall
-- value), and one row with null means when no observation falls in either window.
--
-- Columns:
--   deployment_id, model, version, environment  the deployment
--   deployed_at, ended_at     its window (ended_at null while serving)
--   previous_version          version it replaced in that environment (deployments_current; null when it
--                             replaced nothing: the first one there, a canary, a start after a manual end)
--   kpi, segment, unit, direction
--   window_s                  the window, in seconds
--   before_from, after_until  the exact bounds used: before = [before_from, deployed_at),
--                             after = [deployed_at, after_until)
--   before_mean, before_count, after_mean, after_count   KPI mean and number of observations on each side
--   change                    after_mean - before_mean
--   relative_change           change / |before_mean| (null when before_mean is 0)
--   improved                  whether the change goes the KPI's way (higher_is_better: change > 0,
--                             lower_is_better: change < 0); null without a direction or a side without data
--   registered                whether the model version is in model_versions
--   run_id                    training run of the model version
--   offline_metrics           map of metric -> last value of that run (run_metrics), e.g. offline_metrics['val_auc']
--   training_inputs           dataset versions the training run read (run_inputs)
--   validated_inputs          how many of them have a data-quality validation (an input read without a version
--                             has none: which data the run read, and so its quality, is unknown)
--   training_data_ok          whether the latest validation of every suite on every validated input passed;
--                             null when none was validated
--   training_data_pass_rate   passed / evaluated expectations over those latest validations
--
-- metalake: materialize
WITH lake_setting AS (
    SELECT coalesce(
        from_json(arg_max(document, recorded_at), '["VARCHAR"]'), ['production', 'prod', 'prd', 'live']
    ) AS production_environments
    FROM policies
    WHERE policy = 'kpi_production_environments'
),
settings AS (
    SELECT to_microseconds(604800000000) AS impact_window, production_environments FROM lake_setting
),
earlier_ends AS (
    SELECT d.deployment_id, max(o.ended_at) AS last_end
    FROM deployments_current AS d
    JOIN deployments_current AS o
        ON o.model = d.model AND o.environment = d.environment AND o.ended_at < d.started_at
    GROUP BY d.deployment_id
),
deployed AS (
    SELECT
        d.deployment_id,
        d.model,
        d.version,
        d.environment,
        d.started_at,
        d.ended_at,
        d.previous_version,
        s.impact_window,
        s.production_environments,
        list_contains(s.production_environments, d.environment) AS counts_unlabeled,
        greatest(d.started_at - s.impact_window, p.started_at, e.last_end) AS before_from,
        least(d.started_at + s.impact_window, d.ended_at) AS after_until
    FROM deployments_current AS d
    CROSS JOIN settings AS s
    LEFT JOIN deployments_current AS p ON p.deployment_id = d.previous_deployment_id
    LEFT JOIN earlier_ends AS e ON e.deployment_id = d.deployment_id
),
linked AS (
    SELECT dep.*, k.kpi, k.unit, k.direction
    FROM deployed AS dep
    JOIN kpis_current AS k
        ON coalesce(json_array_length(k.models), 0) = 0
        OR list_contains(from_json(k.models, '["VARCHAR"]'), dep.model)
),
observed AS (
    SELECT
        l.deployment_id,
        l.kpi,
        o.segment,
        avg(o."value") FILTER (WHERE o.observed_at < l.started_at) AS before_mean,
        count(*) FILTER (WHERE o.observed_at < l.started_at) AS before_count,
        avg(o."value") FILTER (WHERE o.observed_at >= l.started_at) AS after_mean,
        count(*) FILTER (WHERE o.observed_at >= l.started_at) AS after_count
    FROM linked AS l
    JOIN kpi_observations AS o
        ON o.kpi = l.kpi
        AND (o.environment = l.environment OR (o.environment IS NULL AND l.counts_unlabeled))
        AND o.observed_at >= l.before_from
        AND o.observed_at < l.after_until
    GROUP BY l.deployment_id, l.kpi, o.segment
),
versions AS (
    SELECT model, version, arg_max(run_id, recorded_at) AS run_id
    FROM model_versions
    GROUP BY model, version
),
offline AS (
    SELECT run_id, map_from_entries(list({'key': "key", 'value': last_value} ORDER BY "key")) AS offline_metrics
    FROM run_metrics
    WHERE run_id IN (SELECT run_id FROM versions)
    GROUP BY run_id
),
latest_validations AS (
    SELECT
        dataset,
        version,
        suite_name,
        arg_max(success, {'v': validated_at, 'r': recorded_at}) AS success,
        arg_max(successful, {'v': validated_at, 'r': recorded_at}) AS successful,
        arg_max(evaluated, {'v': validated_at, 'r': recorded_at}) AS evaluated
    FROM dq_validations
    GROUP BY dataset, version, suite_name
),
training_quality AS (
    SELECT
        i.run_id,
        count(DISTINCT {'d': i.dataset, 'v': i.version}) AS training_inputs,
        count(DISTINCT {'d': i.dataset, 'v': i.version}) FILTER (WHERE q.success IS NOT NULL) AS validated_inputs,
        bool_and(q.success) AS training_data_ok,
        sum(q.successful) / nullif(sum(q.evaluated), 0) AS training_data_pass_rate
    FROM (
        SELECT DISTINCT run_id, dataset, version
        FROM run_inputs
        WHERE run_id IN (SELECT run_id FROM versions)
    ) AS i
    LEFT JOIN latest_validations AS q ON q.dataset = i.dataset AND q.version = i.version
    GROUP BY i.run_id
)
SELECT
    l.deployment_id,
    l.model,
    l.version,
    l.environment,
    l.started_at AS deployed_at,
    l.ended_at,
    l.previous_version,
    l.kpi,
    ob.segment,
    l.unit,
    l.direction,
    date_diff('microsecond', l.started_at, l.started_at + l.impact_window) / 1e6 AS window_s,
    l.before_from,
    l.after_until,
    ob.before_mean,
    coalesce(ob.before_count, 0) AS before_count,
    ob.after_mean,
    coalesce(ob.after_count, 0) AS after_count,
    ob.after_mean - ob.before_mean AS change,
    (ob.after_mean - ob.before_mean) / nullif(abs(ob.before_mean), 0) AS relative_change,
    CASE
        WHEN ob.before_mean IS NULL OR ob.after_mean IS NULL OR l.direction IS NULL THEN NULL
        WHEN l.direction = 'higher_is_better' THEN ob.after_mean > ob.before_mean
        ELSE ob.after_mean < ob.before_mean
    END AS improved,
    v.model IS NOT NULL AS registered,
    v.run_id,
    m.offline_metrics,
    coalesce(t.training_inputs, 0) AS training_inputs,
    coalesce(t.validated_inputs, 0) AS validated_inputs,
    t.training_data_ok,
    t.training_data_pass_rate
FROM linked AS l
LEFT JOIN observed AS ob ON ob.deployment_id = l.deployment_id AND ob.kpi = l.kpi
LEFT JOIN versions AS v ON v.model = l.model AND v.version = l.version
LEFT JOIN offline AS m ON m.run_id = v.run_id
LEFT JOIN training_quality AS t ON t.run_id = v.run_id
