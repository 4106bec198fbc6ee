-- run_input_quality: did the data each run read pass its data-quality checks? The one definition of that verdict.
--
-- One row per run and distinct dataset version it read (run_inputs), with the verdict on that version and the
-- verdict on all of the run's inputs. model_lineage, model_kpi_impact and the governance rule
-- require_passing_data_quality all read it, so a model version's training data gets one answer everywhere.
--
-- A dataset version passed when the latest validation of every suite run on it passed (a later validation by
-- another suite does not hide a failure); it failed when the latest validation of any suite failed; its verdict
-- is null (unknown) when it was never validated, or when the run read it without a version (which data the run
-- read, and so its quality, is unknown). "Latest" orders by validated_at, then recorded_at.
--
-- Columns:
--   run_id                   the run (runs.run_id)
--   dataset, version         an input it read (version null: not versioned in the lake)
--   dq_success               the input's verdict: true (passed), false (failed), null (unknown, as above)
--   suites                   how many suites validated that dataset version (0: never validated)
--   failed_suites            how many of them failed in their latest validation
--   failed_suite             the first of those by name (null when none failed)
--   validation_id            the latest validation of that dataset version, whatever the suite
--   suite_name               the suite it ran
--   validated_at             when it ran
--   successful, evaluated    expectations passed and evaluated, over the latest validation of each suite
--   training_inputs          how many distinct dataset versions the run read
--   validated_inputs         how many of them have a verdict
--   training_data_ok         the verdict on all the run's inputs: false when any input failed, true when every
--                            input passed, null otherwise (an input never validated, or read without a version)
--   training_data_pass_rate  passed / evaluated expectations over all the run's validated inputs
WITH latest_by_suite AS (
    SELECT
        dataset,
        version,
        suite_name,
        arg_max(success, {'v': validated_at, 'r': recorded_at}) AS success,
        arg_max(successful, {'v': validated_at, 'r': recorded_at}) AS successful,
        arg_max(evaluated, {'v': validated_at, 'r': recorded_at}) AS evaluated
    FROM dq_validations
    WHERE version IS NOT NULL
    GROUP BY dataset, version, suite_name
),
verdicts AS (
    SELECT
        dataset,
        version,
        bool_and(success) AS dq_success,
        count(*) AS suites,
        count(*) FILTER (WHERE NOT success) AS failed_suites,
        min(suite_name) FILTER (WHERE NOT success) AS failed_suite,
        sum(successful) AS successful,
        sum(evaluated) AS evaluated
    FROM latest_by_suite
    GROUP BY dataset, version
),
latest AS (
    SELECT
        dataset,
        version,
        arg_max(validation_id, {'v': validated_at, 'r': recorded_at}) AS validation_id,
        arg_max(suite_name, {'v': validated_at, 'r': recorded_at}) AS suite_name,
        max(validated_at) AS validated_at
    FROM dq_validations
    WHERE version IS NOT NULL
    GROUP BY dataset, version
),
per_input AS (
    SELECT
        i.run_id,
        i.dataset,
        i.version,
        v.dq_success,
        coalesce(v.suites, 0) AS suites,
        coalesce(v.failed_suites, 0) AS failed_suites,
        v.failed_suite,
        l.validation_id,
        l.suite_name,
        l.validated_at,
        v.successful,
        v.evaluated
    FROM (SELECT DISTINCT run_id, dataset, version FROM run_inputs) AS i
    LEFT JOIN verdicts AS v ON v.dataset = i.dataset AND v.version = i.version
    LEFT JOIN latest AS l ON l.dataset = i.dataset AND l.version = i.version
),
per_run AS (
    SELECT
        run_id,
        count(*) AS training_inputs,
        count(dq_success) AS validated_inputs,
        CASE
            WHEN bool_or(NOT dq_success) THEN false
            WHEN count(dq_success) = count(*) THEN true
        END AS training_data_ok,
        sum(successful) / nullif(sum(evaluated), 0) AS training_data_pass_rate
    FROM per_input
    GROUP BY run_id
)
SELECT
    p.run_id,
    p.dataset,
    p.version,
    p.dq_success,
    p.suites,
    p.failed_suites,
    p.failed_suite,
    p.validation_id,
    p.suite_name,
    p.validated_at,
    p.successful,
    p.evaluated,
    r.training_inputs,
    r.validated_inputs,
    r.training_data_ok,
    r.training_data_pass_rate
FROM per_input AS p
JOIN per_run AS r ON r.run_id = p.run_id
