"""Shared helpers for the benchmarks: timing, machine description, appending figures to RESULTS.md."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def median_ms(action: Callable[[], object], repeat: int) -> float:
    """Median wall time of `repeat` calls, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def record(title: str, command: str, lines: list[str]) -> None:
    """Print the figures and append them, dated, to bench/RESULTS.md."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores"
    block = [f"## {title}", "", f"{stamp} · `{command}` · {machine}", "", *lines, ""]
    text = "\n".join(block)
    print(text)
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmark results\n\nFigures appended by the scripts in bench/, newest last.\n\n"
        )
    with RESULTS.open("a") as handle:
        handle.write(text + "\n")


def publish(title: str, script: str, sections: list[str], *, no_record: bool) -> None:
    """Print the figures (`--no-record`) or append them to RESULTS.md, with the command line that made them."""
    import sys

    command = " ".join([f"python {script}", *sys.argv[1:]])
    if no_record:
        print("\n".join([f"## {title}", "", f"`{command}`", "", *sections]))
    else:
        record(title, command, sections)
