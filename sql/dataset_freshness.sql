-- dataset_freshness: how old is the latest version of every dataset?
--
-- One row per dataset, from dataset_versions_current; the age is measured against the query's current time.
--
-- Columns:
--   dataset        dataset name
--   version        latest version number
--   registered_at  when the latest version was registered
--   age_seconds    now() - registered_at, in seconds
--   age_hours      the same in hours
--   age_days       the same in days (filter on it: where age_days > 7)
--   owner          current owner, to ask about stale data
SELECT
    dataset,
    version,
    registered_at,
    date_diff('microsecond', registered_at, now()) / 1e6 AS age_seconds,
    date_diff('microsecond', registered_at, now()) / 3.6e9 AS age_hours,
    date_diff('microsecond', registered_at, now()) / 8.64e10 AS age_days,
    owner
FROM dataset_versions_current
