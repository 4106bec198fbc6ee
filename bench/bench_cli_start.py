"""`metalake --help` start-up time (target: under 0.5 s), beside a bare `python -c pass` for scale."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from _common import median_ms, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    script = shutil.which("metalake") or str(Path(sys.executable).with_name("metalake"))
    help_ms = median_ms(
        lambda: subprocess.run([script, "--help"], check=True, capture_output=True), args.repeat
    )
    bare_ms = median_ms(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), args.repeat)
    record(
        "CLI start-up (bench/bench_cli_start.py)",
        "python bench/bench_cli_start.py",
        [
            "| command | median wall time |",
            "|---|---|",
            f"| `metalake --help` | **{help_ms:.0f} ms** (target < 500 ms) |",
            f"| `python -c pass` | {bare_ms:.0f} ms |",
        ],
    )


if __name__ == "__main__":
    main()
