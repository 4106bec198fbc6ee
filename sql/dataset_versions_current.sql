-- dataset_versions_current: what is the latest version of every dataset, and what is it?
--
-- One row per dataset: its current version from dataset_versions (the one seen last: observed_at for versions
-- reported by OpenLineage events, which may arrive out of order, else recorded_at; usually the highest number),
-- with the dataset's current description, owner and tags (the latest datasets row) and the number of versions.
--
-- Columns:
--   dataset          dataset name
--   version          current version number (the version seen last)
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
    SELECT dataset, version, versions
    FROM (
        SELECT
            dataset,
            version,
            count(*) OVER (PARTITION BY dataset) AS versions,
            row_number() OVER (
                PARTITION BY dataset
                ORDER BY
                    -- seen: observed_at; a registered version when recorded; an OpenLineage version stored before
                    -- observed_at existed at an unknown moment, before all others
                    coalesce(observed_at, CASE WHEN coalesce(source_format, '') <> 'openlineage' THEN recorded_at END)
                        DESC NULLS LAST,
                    version DESC
            ) AS recency
        FROM dataset_versions
    ) AS ranked
    WHERE recency = 1
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
