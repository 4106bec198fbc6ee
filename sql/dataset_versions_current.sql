-- dataset_versions_current: what is the latest version of every dataset, and what is it?
--
-- One row per dataset: its highest version from dataset_versions, with the dataset's current description, owner
-- and tags (the latest datasets row) and the number of versions so far.
--
-- Columns:
--   dataset          dataset name
--   version          latest version number
--   versions         how many versions the dataset has
--   row_count        rows in the latest version
--   bytes            size of the latest version in bytes
--   file_count       files of the latest version
--   fingerprint      content fingerprint of the latest version
--   source_uri       where the latest version was read from
--   source_format    parquet, csv, json, delta, polars, pandas or arrow
--   delta_version    Delta table version pinned, when the source is a Delta table
--   breaking_change  true when the latest version's schema change was breaking
--   description      current description of the dataset
--   owner            current owner
--   tags             current tags (JSON object)
--   registered_at    when the latest version was registered
--   registered_by    who registered it
WITH latest AS (
    SELECT
        dataset,
        max(version) AS version,
        count(*) AS versions
    FROM dataset_versions
    GROUP BY dataset
),
about AS (
    SELECT
        dataset,
        arg_max(description, recorded_at) AS description,
        arg_max(owner, recorded_at) AS owner,
        arg_max(tags, recorded_at) AS tags
    FROM datasets
    GROUP BY dataset
)
SELECT
    v.dataset,
    v.version,
    l.versions,
    v.row_count,
    v.bytes,
    v.file_count,
    v.fingerprint,
    v.source_uri,
    v.source_format,
    v.delta_version,
    coalesce(
        array_length(list_filter(from_json(v.schema_changes, '[{"breaking": "BOOLEAN"}]'), lambda c: c.breaking)) > 0,
        false
    ) AS breaking_change,
    a.description,
    a.owner,
    a.tags,
    v.recorded_at AS registered_at,
    v.recorded_by AS registered_by
FROM dataset_versions AS v
JOIN latest AS l USING (dataset, version)
LEFT JOIN about AS a USING (dataset)
