-- audit_log: who changed which table, when, how and why?
--
-- One row per Delta commit of every lake table, newest first, from `lake_commits` (the commit history and the
-- commit metadata that metalake writes with every commit).
--
-- Columns:
--   table_name       table committed to
--   version          Delta version the commit created
--   committed_at     when the commit happened (UTC)
--   operation        operation recorded with the commit, e.g. WRITE, OPTIMIZE, VACUUM
--   actor            who made the commit
--   reason           why, as given by the actor
--   idempotency_key  key that makes a retried write a no-op
--   rows_added       rows the commit added
SELECT
    table_name,
    version,
    committed_at,
    operation,
    actor,
    reason,
    idempotency_key,
    rows_added
FROM lake_commits
ORDER BY committed_at DESC, table_name, version DESC
