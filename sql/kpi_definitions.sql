-- kpi_definitions: how is each KPI defined now? One row per KPI, from its latest row in `kpis`.
--
-- Re-defining a KPI adds a row to `kpis`; each field is the latest non-null value given for it (by recorded_at).
-- kpis_current adds the observation figures; lake.kpis reads the definitions alone, without scanning
-- observations.
--
-- Columns:
--   kpi          KPI name
--   unit         unit of the values, e.g. "%", "EUR", "ms"
--   direction    higher_is_better or lower_is_better
--   description  what it measures
--   owner        person or team responsible
--   tags         JSON object of labels
--   models       JSON list of the models whose deployments it follows; an empty list or null means every model
--   defined_at   when the KPI was first defined
--   updated_at   when the current definition was recorded
SELECT
    kpi,
    arg_max_null(unit, recorded_at) AS unit,
    arg_max_null(direction, recorded_at) AS direction,
    arg_max_null(description, recorded_at) AS description,
    arg_max_null(owner, recorded_at) AS owner,
    arg_max_null(tags, recorded_at) AS tags,
    arg_max_null(models, recorded_at) AS models,
    min(recorded_at) AS defined_at,
    max(recorded_at) AS updated_at
FROM kpis
GROUP BY kpi
