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
--   training_data_ok          the verdict on the training data (run_input_quality, as in model_lineage and
--                             the governance rule): true when the latest validation of every suite on every
--                             input passed, false when any failed, null otherwise (no inputs, an input never
--                             validated or read without a version)
--   training_data_pass_rate   passed / evaluated expectations over the latest validations of the validated inputs
--   note                      why a side has no observations; null when both have some. It names the window
--                             searched and the environment counted ("no observations labeled 'staging' in the
--                             7 days before or in the 7 days after"), a window with no time in it, "none since
--                             it started" when nothing has counted since the deployment (the window has not
--                             passed, or values are late), and the observations there that did not count:
--                             unlabeled ones (they count only for the production environments, listed) and
--                             ones labeled with another environment (one named)
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
        date_diff('microsecond', d.started_at, d.started_at + s.impact_window) AS window_us,
        p.started_at AS replaced_started_at,
        greatest(d.started_at - s.impact_window, p.started_at, e.last_end) AS before_from,
        least(d.started_at + s.impact_window, d.ended_at) AS after_until
    FROM deployments_current AS d
    CROSS JOIN settings AS s
    LEFT JOIN deployments_current AS p ON p.deployment_id = d.previous_deployment_id
    LEFT JOIN earlier_ends AS e ON e.deployment_id = d.deployment_id
),
linked AS (
    SELECT
        dep.*,
        k.kpi,
        k.unit,
        k.direction,
        'labeled ''' || dep.environment || '''' || CASE WHEN dep.counts_unlabeled THEN ' or unlabeled' ELSE '' END
            AS counted,
        CASE  -- the window in words: "7 days", "36 hours"
            WHEN dep.window_us % 86400000000 = 0
                THEN CAST(CAST(dep.window_us / 86400000000 AS BIGINT) AS VARCHAR) || ' day'
            WHEN dep.window_us % 3600000000 = 0
                THEN CAST(CAST(dep.window_us / 3600000000 AS BIGINT) AS VARCHAR) || ' hour'
            WHEN dep.window_us % 60000000 = 0
                THEN CAST(CAST(dep.window_us / 60000000 AS BIGINT) AS VARCHAR) || ' minute'
            WHEN dep.window_us % 1000000 = 0
                THEN CAST(CAST(dep.window_us / 1000000 AS BIGINT) AS VARCHAR) || ' second'
            ELSE CAST(dep.window_us AS VARCHAR) || ' microsecond'
        END
        || CASE WHEN dep.window_us IN (86400000000, 3600000000, 60000000, 1000000, 1) THEN '' ELSE 's' END
            AS window_text
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
compared AS (  -- one row per deployment, KPI and segment observed; the sides without observations, in words
    SELECT
        l.*,
        ob.segment,
        ob.before_mean,
        coalesce(ob.before_count, 0) AS before_count,
        ob.after_mean,
        coalesce(ob.after_count, 0) AS after_count,
        CASE
            WHEN coalesce(ob.before_count, 0) > 0 OR l.before_from >= l.started_at THEN NULL
            WHEN l.before_from = l.started_at - l.impact_window THEN 'in the ' || l.window_text || ' before'
            WHEN l.before_from = l.replaced_started_at THEN 'before it, since the deployment it replaced started'
            ELSE 'before it, since an earlier deployment there ended'
        END AS before_gap,
        CASE
            WHEN coalesce(ob.after_count, 0) > 0 OR l.after_until <= l.started_at THEN NULL
            WHEN l.after_until = l.ended_at THEN 'in the time it served, until it ended'
            ELSE 'in the ' || l.window_text || ' after'
        END AS after_gap
    FROM linked AS l
    LEFT JOIN observed AS ob ON ob.deployment_id = l.deployment_id AND ob.kpi = l.kpi
),
gaps AS (  -- the deployments and KPIs with a side without observations (in some segment), for the note
    SELECT
        deployment_id,
        kpi,
        environment,
        counts_unlabeled,
        started_at,
        before_from,
        after_until,
        bool_or(before_count = 0) AS before_missing,
        bool_or(after_count = 0) AS after_missing
    FROM compared
    WHERE before_count = 0 OR after_count = 0
    GROUP BY deployment_id, kpi, environment, counts_unlabeled, started_at, before_from, after_until
),
left_out AS (  -- the observations in those windows that did not count
    SELECT
        g.deployment_id,
        g.kpi,
        count(*) FILTER (WHERE o.environment IS NULL AND NOT g.counts_unlabeled) AS unlabeled_left_out,
        count(*) FILTER (WHERE o.environment <> g.environment) AS labeled_elsewhere,
        min(o.environment) FILTER (WHERE o.environment <> g.environment) AS other_environment
    FROM gaps AS g
    JOIN kpi_observations AS o
        ON o.kpi = g.kpi
        AND o.observed_at >= g.before_from
        AND o.observed_at < g.after_until
        AND (
            (g.before_missing AND o.observed_at < g.started_at) OR (g.after_missing AND o.observed_at >= g.started_at)
        )
    GROUP BY g.deployment_id, g.kpi
),
latest_observed AS (  -- when each KPI was last observed in each environment (null: unlabeled)
    SELECT kpi, environment, max(observed_at) AS last_at
    FROM kpi_observations
    WHERE kpi IN (SELECT kpi FROM gaps)
    GROUP BY kpi, environment
),
last_counted AS (  -- the latest observation that counts for each of those deployments, at any time
    SELECT g.deployment_id, g.kpi, max(lo.last_at) AS last_at
    FROM gaps AS g
    JOIN latest_observed AS lo
        ON lo.kpi = g.kpi AND (lo.environment = g.environment OR (lo.environment IS NULL AND g.counts_unlabeled))
    GROUP BY g.deployment_id, g.kpi
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
training_quality AS (  -- the one verdict on a run's training data (run_input_quality)
    SELECT DISTINCT run_id, training_inputs, validated_inputs, training_data_ok, training_data_pass_rate
    FROM run_input_quality
    WHERE run_id IN (SELECT run_id FROM versions)
)
SELECT
    c.deployment_id,
    c.model,
    c.version,
    c.environment,
    c.started_at AS deployed_at,
    c.ended_at,
    c.previous_version,
    c.kpi,
    c.segment,
    c.unit,
    c.direction,
    date_diff('microsecond', c.started_at, c.started_at + c.impact_window) / 1e6 AS window_s,
    c.before_from,
    c.after_until,
    c.before_mean,
    c.before_count,
    c.after_mean,
    c.after_count,
    c.after_mean - c.before_mean AS change,
    (c.after_mean - c.before_mean) / nullif(abs(c.before_mean), 0) AS relative_change,
    CASE
        WHEN c.before_mean IS NULL OR c.after_mean IS NULL OR c.direction IS NULL THEN NULL
        WHEN c.direction = 'higher_is_better' THEN c.after_mean > c.before_mean
        ELSE c.after_mean < c.before_mean
    END AS improved,
    v.model IS NOT NULL AS registered,
    v.run_id,
    m.offline_metrics,
    coalesce(t.training_inputs, 0) AS training_inputs,
    coalesce(t.validated_inputs, 0) AS validated_inputs,
    t.training_data_ok,
    t.training_data_pass_rate,
    CASE WHEN c.before_count = 0 OR c.after_count = 0 THEN concat_ws(
        '; ',
        CASE WHEN c.before_count = 0 AND c.before_gap IS NULL
            THEN 'nothing before it to compare: the deployment it replaced started at the same moment' END,
        CASE WHEN c.after_count = 0 AND c.after_gap IS NULL
            THEN 'nothing after it to compare: it ended as it started' END,
        'no observations ' || c.counted || ' ' || CASE
            WHEN c.before_gap IS NOT NULL AND c.after_gap IS NOT NULL THEN c.before_gap || ' or ' || c.after_gap
            ELSE coalesce(c.before_gap, c.after_gap)
        END,
        CASE WHEN c.before_count > 0 AND c.after_gap IS NOT NULL
            AND (c.ended_at IS NULL OR c.after_until < c.ended_at)  -- the whole window after, not cut at an end
            AND (lc.last_at IS NULL OR lc.last_at < c.started_at)
            THEN 'none since it started: the window has not passed yet, or the values have not arrived' END,
        CASE WHEN u.unlabeled_left_out > 0 THEN
            CAST(u.unlabeled_left_out AS VARCHAR)
            || CASE WHEN u.unlabeled_left_out = 1 THEN ' unlabeled observation there counts'
                ELSE ' unlabeled observations there count' END
            || ' only for deployments to production environments ('
            || coalesce(nullif(array_to_string(c.production_environments, ', '), ''), 'none in this query') || ')'
        END,
        CASE WHEN u.labeled_elsewhere > 0 THEN
            CAST(u.labeled_elsewhere AS VARCHAR)
            || CASE WHEN u.labeled_elsewhere = 1 THEN ' observation there is' ELSE ' observations there are' END
            || ' labeled with another environment, e.g. ''' || u.other_environment || ''''
        END
    ) END AS note
FROM compared AS c
LEFT JOIN left_out AS u ON u.deployment_id = c.deployment_id AND u.kpi = c.kpi
LEFT JOIN last_counted AS lc ON lc.deployment_id = c.deployment_id AND lc.kpi = c.kpi
LEFT JOIN versions AS v ON v.model = c.model AND v.version = c.version
LEFT JOIN offline AS m ON m.run_id = v.run_id
LEFT JOIN training_quality AS t ON t.run_id = v.run_id
