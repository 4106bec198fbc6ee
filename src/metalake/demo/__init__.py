"""`metalake demo`: builds a realistic lake from real scikit-learn data and models, one round per call.

`rounds` orchestrates a round; `data` prepares the deliveries, suites and ETL lineage; `training` runs the
scikit-learn jobs; `business` holds the policy, deployments and KPIs; `report` prints what the lake answers.
"""

from metalake.demo.rounds import DEFAULT_DEMO_LAKE, SNAPSHOT_PREFIX, DemoRound, check_extras, run_demo

__all__ = ["DEFAULT_DEMO_LAKE", "SNAPSHOT_PREFIX", "DemoRound", "check_extras", "run_demo"]
