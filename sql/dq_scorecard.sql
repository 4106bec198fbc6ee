-- dq_scorecard: can each dataset be trusted? Its latest validation, pass rates and the recent trend.
--
-- One row per dataset that has been validated, over dq_validations from both engines (Great Expectations and
-- pandera). "Recent" means the dataset's last 10 validations, whatever the suite.
--
-- Columns:
--   dataset               dataset name
--   latest_validation_id  id of the latest validation (dq_results.validation_id)
--   latest_version        dataset version it checked
--   latest_suite          suite (or schema) it ran
--   latest_engine         great_expectations or pandera
--   latest_success        true when every expectation passed
--   latest_pass_rate      share of the latest validation's expectations that passed (0 to 1)
--   latest_validated_at   when it ran
--   recent_validations    how many validations the trend covers (at most 10)
--   recent_success_rate   share of the recent validations that fully passed (0 to 1)
--   recent_pass_rates     expectation pass rate of each recent validation, oldest first (a list)
--   trend                 improving, declining or stable: latest pass rate against the mean of the ones before
--   validations           total number of validations of the dataset
WITH ranked AS (
    SELECT
        *,
        CASE WHEN evaluated > 0 THEN successful / evaluated ELSE 1.0 END AS pass_rate,
        row_number() OVER (PARTITION BY dataset ORDER BY validated_at DESC, recorded_at DESC) AS recency,
        count(*) OVER (PARTITION BY dataset) AS validations
    FROM dq_validations
),
recent AS (
    SELECT
        dataset,
        count(*) AS recent_validations,
        avg(CASE WHEN success THEN CAST(1 AS DOUBLE) ELSE 0 END) AS recent_success_rate,
        list(pass_rate ORDER BY recency DESC) AS recent_pass_rates,
        avg(pass_rate) FILTER (WHERE recency > 1) AS earlier_pass_rate
    FROM ranked
    WHERE recency <= 10
    GROUP BY dataset
)
SELECT
    r.dataset,
    r.validation_id AS latest_validation_id,
    r.version AS latest_version,
    r.suite_name AS latest_suite,
    r.engine AS latest_engine,
    r.success AS latest_success,
    r.pass_rate AS latest_pass_rate,
    r.validated_at AS latest_validated_at,
    t.recent_validations,
    t.recent_success_rate,
    t.recent_pass_rates,
    CASE
        WHEN t.earlier_pass_rate IS NULL THEN 'stable'
        WHEN r.pass_rate > t.earlier_pass_rate + 1e-9 THEN 'improving'
        WHEN r.pass_rate < t.earlier_pass_rate - 1e-9 THEN 'declining'
        ELSE 'stable'
    END AS trend,
    r.validations
FROM ranked AS r
JOIN recent AS t USING (dataset)
WHERE r.recency = 1
