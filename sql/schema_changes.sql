-- schema_changes: how did each dataset's schema change from one version to the next, and was it breaking?
--
-- One row per column that was added, removed or changed type between a dataset version and the version before
-- it, unnested from dataset_versions.schema_changes (computed when the version was registered). A removal or a
-- type change that old readers cannot follow (anything but a widening such as INTEGER -> BIGINT) is breaking.
--
-- Columns:
--   dataset           dataset name
--   version           the version whose schema changed
--   previous_version  the version it is compared with (version - 1)
--   column_name       the column that changed
--   change            added, removed or type_changed
--   old_type          type in the previous version (null when added)
--   new_type          type in this version (null when removed)
--   breaking          true when readers of the previous version may break
--   recorded_at       when the version was registered
--   recorded_by       who registered it
SELECT
    v.dataset,
    v.version,
    v.version - 1 AS previous_version,
    c.change_record."column" AS column_name,
    c.change_record.change AS change,
    c.change_record.old_type AS old_type,
    c.change_record.new_type AS new_type,
    c.change_record.breaking AS breaking,
    v.recorded_at,
    v.recorded_by
FROM dataset_versions AS v
CROSS JOIN unnest(
    from_json(
        v.schema_changes,
        '[{"column": "VARCHAR", "change": "VARCHAR", "old_type": "VARCHAR", "new_type": "VARCHAR", "breaking": "BOOLEAN"}]'
    )
) AS c(change_record)
WHERE v.schema_changes IS NOT NULL
