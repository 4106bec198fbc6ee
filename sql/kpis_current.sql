-- kpis_current: which KPIs are defined, how, and what was last observed? One row per KPI.
--
-- The definition comes from kpi_definitions (the latest row of `kpis` for the KPI): re-defining a KPI updates it.
-- Observation figures come from `kpi_observations`, all segments and environments together.
--
-- Columns:
--   kpi                KPI name
--   unit               unit of the values, e.g. "%", "EUR", "ms"
--   direction          higher_is_better or lower_is_better
--   description        what it measures
--   owner              person or team responsible
--   tags               JSON object of labels
--   models             JSON list of the models whose deployments it follows; an empty list or null means
--                      every model (see model_kpi_impact)
--   defined_at         when the KPI was first defined
--   updated_at         when the current definition was recorded
--   observations       number of observed values
--   first_observed_at  earliest observed_at
--   last_observed_at   latest observed_at
--   last_value         value observed last (ties: the one recorded last)
--
-- metalake: materialize
WITH observed AS (
    SELECT
        kpi,
        count(*) AS observations,
        min(observed_at) AS first_observed_at,
        max(observed_at) AS last_observed_at,
        arg_max("value", {'t': observed_at, 'r': recorded_at}) AS last_value
    FROM kpi_observations
    GROUP BY kpi
)
SELECT
    d.kpi,
    d.unit,
    d.direction,
    d.description,
    d.owner,
    d.tags,
    d.models,
    d.defined_at,
    d.updated_at,
    coalesce(o.observations, 0) AS observations,
    o.first_observed_at,
    o.last_observed_at,
    o.last_value
FROM kpi_definitions AS d
LEFT JOIN observed AS o USING (kpi)
