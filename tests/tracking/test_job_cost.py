"""A training job's fixed cost stays small: logging a run loads no reader or validator that a clean flush does not use.

A short CI job used to pay about 1.5 s beyond its own imports: pandera (0.4 s, only needed to explain a refused
batch), pandas (pulled in by pyarrow's conversion of Python lists) and the packages hash. The timings are in
bench/bench_jobs.py; this checks the causes, which do not depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import metalake

UNUSED_ON_A_JOB = ("pandas", "pandera", "duckdb", "sqlglot")
JOB = """
import json, sys
import metalake
lake = metalake.connect(sys.argv[1])
run = lake.runs.start(experiment="ci", name="short-job")
run.log_params({"lr": 0.1, "depth": 6})
for step in range(100):
    run.log_metrics({f"m{i}": step / (i + 1) for i in range(10)}, step=step)
run.end()
lake.runs.wait()
print(json.dumps({"run_id": run.run_id, "loaded": [m for m in sys.argv[2:] if m in sys.modules]}))
"""


def test_a_job_logs_and_commits_without_loading_pandas_pandera_or_duckdb(lake_path: Path) -> None:
    metalake.connect(lake_path).close()  # the lake exists, as it does for every job but the first
    found = subprocess.run(
        [sys.executable, "-c", JOB, str(lake_path), *UNUSED_ON_A_JOB],
        check=True,
        capture_output=True,
        text=True,
    )
    job = json.loads(found.stdout)
    assert job["loaded"] == [], f"a job imported {job['loaded']}"
    lake = metalake.connect(lake_path)
    assert lake.sql("select status from runs_current where run_id = ?", [job["run_id"]]).fetchall() == [
        ("finished",)
    ]
    assert lake.sql("select count(*) from metrics").fetchall() == [(1000,)]
    assert lake.sql("select count(*) from metric_summaries").fetchall() == [(10,)]
