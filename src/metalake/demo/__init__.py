"""`metalake demo`: builds a realistic lake from real scikit-learn data and models, one round per call.

`rounds` orchestrates a round; `target` decides which lakes it may write to; `data` prepares the deliveries,
suites and ETL lineage; `training` runs the scikit-learn jobs; `business` holds the policy, deployments and KPIs
on the simulated calendar; `report` prints what the lake answers.
"""

from metalake.demo.rounds import DEFAULT_DEMO_LAKE, DemoRound, check_extras, run_demo
from metalake.demo.target import SNAPSHOT_PREFIX
from metalake.errors import NotADemoLake

__all__ = ["DEFAULT_DEMO_LAKE", "SNAPSHOT_PREFIX", "DemoRound", "NotADemoLake", "check_extras", "run_demo"]
