-- model_lineage: what was each model version trained from, and could that data be trusted?
--
-- One row per (model version, input dataset version of its source run): model version -> run -> dataset versions
-- the run read (run.log_input) -> their data-quality verdict. A version whose run logged no inputs has one row
-- with null dataset columns. The verdicts come from run_input_quality, the one definition that model_kpi_impact
-- and the governance rule require_passing_data_quality use too.
--
-- Columns:
--   model, version, stage          the model version and its current stage
--   run_id, experiment, run_name   the run that trained it
--   run_status                     the run's current status
--   dataset, dataset_version       an input the run read (dataset_version null: not versioned in the lake)
--   context                        its role, e.g. training or validation
--   validation_id                  the latest validation of that dataset version, whatever the suite (null: never
--                                  validated, or the input has no version, so which data was read is unknown)
--   dq_success                     whether that dataset version passed: the latest validation of every suite run
--                                  on it passed (null: never validated, or no version; run_input_quality)
--   failed_suite                   a suite whose latest validation of it failed (null when none did)
--   dq_validated_at                when its latest validation ran
--   suite_name                     the suite that latest validation ran
--   training_data_ok               the verdict on all the inputs of the run, the same on each of its rows: false
--                                  when any failed, true when every one passed, null otherwise (no inputs, an input
--                                  never validated or read without a version)
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
    q.dq_success,
    q.failed_suite,
    q.validated_at AS dq_validated_at,
    q.suite_name,
    t.training_data_ok
FROM registry_current AS m
LEFT JOIN runs_current AS r ON r.run_id = m.run_id
LEFT JOIN run_inputs AS i ON i.run_id = m.run_id
LEFT JOIN run_input_quality AS q
    ON q.run_id = i.run_id AND q.dataset = i.dataset AND q.version = i.version  -- unversioned: quality unknown
LEFT JOIN (SELECT DISTINCT run_id, training_data_ok FROM run_input_quality) AS t ON t.run_id = m.run_id
