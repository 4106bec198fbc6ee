"""CLI start-up and short commands on the demo lake, side by side with a bare `python -c pass` for scale.

Targets (median wall time): `metalake --help` under 0.5 s, `tables` and `describe metrics` under 0.6 s,
`runs list` on the demo lake under 1 s. The demo lake is built with `metalake demo` (the demo extra) unless
`--lake` names one. The code measured is the `metalake` that the interpreter imports (set PYTHONPATH to measure
a checkout).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import median_ms, record


def cpu_ms(command: list[str], env: dict[str, str], repeat: int) -> float:
    """Median CPU time (user + system) of a child process: steadier than wall time on a busy machine."""
    times = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(command, check=True, capture_output=True, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return statistics.median(times)


COMMANDS: list[tuple[str, list[str], float | None]] = [
    ("metalake --help", ["--help"], 500),
    ("metalake tables", ["tables"], 600),
    ("metalake describe metrics", ["describe", "metrics"], 600),
    ("metalake runs list", ["runs", "list"], 1000),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument(
        "--lake", type=Path, help="A demo lake to read (default: build one in a temp folder)."
    )
    parser.add_argument("--label", default="", help="Added to the title in RESULTS.md, e.g. 'before'.")
    args = parser.parse_args()
    script = shutil.which("metalake") or str(Path(sys.executable).with_name("metalake"))
    with tempfile.TemporaryDirectory() as scratch:
        lake = args.lake or build_demo_lake(script, Path(scratch) / "demo-lake")
        # As users run it: with compiled bytecode cached (the warm-up call writes it where it is missing).
        env = {**os.environ, "COLUMNS": "200", "METALAKE_URI": str(lake)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        bare_ms = median_ms(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), args.repeat)
        bare_cpu = cpu_ms([sys.executable, "-c", "pass"], env, args.repeat)
        rows = [
            "| command | median wall time | vs `python -c pass` | target | result | median CPU time |",
            "|---|---|---|---|---|---|",
            f"| `python -c pass` | {bare_ms:.0f} ms | 1.0x | | | {bare_cpu:.0f} ms |",
        ]
        for name, argv, target in COMMANDS:
            subprocess.run([script, *argv], check=True, capture_output=True, env=env)  # warm the file cache
            took = median_ms(
                lambda argv=argv: subprocess.run([script, *argv], check=True, capture_output=True, env=env),
                args.repeat,
            )
            cpu = cpu_ms([script, *argv], env, args.repeat)
            verdict = "" if target is None else ("PASS" if took < target else "FAIL")
            rows.append(
                f"| `{name}` | **{took:.0f} ms** | {took / bare_ms:.1f}x | < {target:.0f} ms | {verdict} "
                f"| {cpu:.0f} ms |"
            )
    load = os.getloadavg()[0]
    rows += [
        "",
        f"Median of {args.repeat} runs each; load average at the end: {load:.1f} (the machine is shared).",
    ]
    title = "CLI start-up and short commands on the demo lake (bench/bench_cli_start.py)"
    record(f"{title}{', ' + args.label if args.label else ''}", "python bench/bench_cli_start.py", rows)


def build_demo_lake(script: str, path: Path) -> Path:
    """One round of `metalake demo` (needs `pip install 'metalake[demo]'`)."""
    subprocess.run([script, "--lake", str(path), "demo"], check=True, capture_output=True)
    return path


if __name__ == "__main__":
    main()
