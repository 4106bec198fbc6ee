-- model_lineage: what was each model version trained from, and could that data be trusted?
--
-- One row per (model version, input dataset version of its source run): model version -> run -> dataset versions
-- the run read (run.log_input) -> their latest data-quality validation. A version whose run logged no inputs has
-- one row with null dataset columns.
--
-- Columns:
--   model, version, stage          the model version and its current stage
--   run_id, experiment, run_name   the run that trained it
--   run_status                     the run's current status
--   dataset, dataset_version       an input the run read (dataset_version null: not versioned in the lake)
--   context                        its role, e.g. training or validation
--   validation_id                  the latest validation of that dataset version (null: never validated, or the
--                                  input has no version, so which data was read is unknown)
--   dq_success                     whether that validation passed
--   dq_validated_at                when it ran
--   suite_name                     the suite it ran
WITH latest_validation AS (
    SELECT
        dataset,
        version,
        arg_max(validation_id, {'v': validated_at, 'r': recorded_at}) AS validation_id,
        arg_max(success, {'v': validated_at, 'r': recorded_at}) AS success,
        max(validated_at) AS validated_at,
        arg_max(suite_name, {'v': validated_at, 'r': recorded_at}) AS suite_name
    FROM dq_validations
    GROUP BY dataset, version
)
SELECT
    m.model,
    m.version,
    m.stage,
    m.run_id,
    r.experiment,
    r.name AS run_name,
    r.status AS run_status,
    i.dataset,
    i.version AS dataset_version,
    i.context,
    q.validation_id,
    q.success AS dq_success,
    q.validated_at AS dq_validated_at,
    q.suite_name
FROM registry_current AS m
LEFT JOIN runs_current AS r ON r.run_id = m.run_id
LEFT JOIN run_inputs AS i ON i.run_id = m.run_id
LEFT JOIN latest_validation AS q
    ON q.dataset = i.dataset AND q.version = i.version  -- an unversioned input: quality unknown
