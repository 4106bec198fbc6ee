"""Unmodified MLflow client code against `metalake serve` and against a real `mlflow server`, side by side.

Both servers start as child processes on fresh stores in one temp folder: `mlflow server --workers 1` with a
SQLite backend store and a local artifact root, `metalake serve` on a new lake. The client is
bench/_mlflow_client_workload.py, one process per server with `MLFLOW_TRACKING_URI=http://127.0.0.1:PORT` and
`MLFLOW_HTTP_REQUEST_MAX_RETRIES=0` (a failed request is an error, not a silent retry); it imports mlflow only.
The two servers take turns (the order flips each round), the idle one waiting:

1. `--runs` runs (default 20) x `--points` points (default 1,000) of one metric, each run started with
   `mlflow.start_run`, 5 params (`mlflow.log_params`), 3 tags (`mlflow.set_tags`), ended by the `with` block:
   a. the points in `MlflowClient.log_batch` calls of `--batch` points (default 100: one call per epoch);
   b. `mlflow.log_metric` per step (one HTTP request per point).
   Wall time of the whole loop, in the client, over `--rounds` rounds.
2. `--processes` spawned client processes (default 8, `multiprocessing` "spawn") logging at once for
   `--seconds` (default 20): fluent runs of 100 steps, one `log_metric` per step. Points per second over the
   wall time, and every exception the client raised counted.
3. `--search-runs` runs (default 2,000) loaded through each server's MLflow endpoints from 4 client threads
   (`create_run`, one `log_batch` with 5 params, 3 tags, 5 metrics x 3 steps, `set_terminated`; the same values
   on both; load time printed, not a figure), then `MlflowClient.search_runs` with `metrics.m0 > 0.5` ordered by
   `metrics.m0 DESC`, 100 results, `--searches` times per server (default 60), median and p95.

Quick try: `python bench/bench_mlflow_server.py --quick --no-record`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from _common import publish
from bench_api import Server, free_port, start
from bench_tracking import progress, verdict

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"
CLIENT = BENCH / "_mlflow_client_workload.py"
SEARCH_SEED = 20261203
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}  # no calls out of this machine


# -- the servers and their clients ----------------------------------------------------------------------------


def metalake_server(root: Path, workdir: Path) -> Server:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "metalake.cli", "--lake", str(root), "serve", "--port", str(port)]
    command += ["--spool", str(workdir / "spool"), "--no-auth"]
    log = workdir / "metalake-serve.log"  # read by exceptions_logged
    return start("metalake", command, env, log, "/api/v1/health", f"http://127.0.0.1:{port}")


def mlflow_server(workdir: Path) -> Server:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{workdir}/mlflow.db",
    ]
    command += ["--default-artifact-root", str(workdir / "artifacts"), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]
    log = workdir / "mlflow-serve.log"
    return start(
        "mlflow", command, {**os.environ, **NO_TELEMETRY}, log, "/health", f"http://127.0.0.1:{port}"
    )


@dataclass
class Client:
    """The client script for one server: a process that takes JSON commands and answers JSON lines."""

    server: Server
    process: subprocess.Popen[str]
    failed: dict[str, str] = field(default_factory=dict)  # every failing request kind seen, first answer
    exceptions: dict[str, str] = field(default_factory=dict)  # first exception the client raised, per command
    sent: Counter[str] = field(default_factory=Counter)  # requests by "METHOD path status", all commands

    @classmethod
    def start(cls, server: Server, log: Path) -> Client:
        env = {
            key: value for key, value in os.environ.items() if key != "PYTHONPATH"
        }  # no metalake on the path
        env.update(MLFLOW_TRACKING_URI=server.url, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", **NO_TELEMETRY)
        process = subprocess.Popen(
            [sys.executable, str(CLIENT)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            bufsize=1,
        )
        client = cls(server, process)
        client.answer(log)
        return client

    @property
    def name(self) -> str:
        return self.server.name

    def ask(self, do: str, log: Path, **command: Any) -> dict[str, Any]:
        stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        stdin.write(json.dumps({"do": do, **command}) + "\n")
        stdin.flush()
        answer = self.answer(log)
        if answer.get("first_error"):
            self.exceptions.setdefault(do, answer["first_error"])
        for result in (answer, answer.get("child_requests", {})):
            self.sent.update(result.get("by_request", {}))
            for kind, detail in result.get("failed", {}).items():
                self.failed.setdefault(kind, detail)
        return answer

    def answer(self, log: Path) -> dict[str, Any]:
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise SystemExit(f"the {self.name} client exited:\n{log.read_text()[-3000:]}")
        return dict(json.loads(line))

    def stop(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def rounds_order(clients: list[Client], round_index: int) -> list[Client]:
    """Who goes first flips each round, so warming and machine noise fall on both alike."""
    return clients if round_index % 2 == 0 else clients[::-1]


# -- the parts ------------------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One row of the table: what, each server's cell, the ratio and its target."""

    what: str
    cells: dict[str, str]
    ratio: float
    target: float
    errors: dict[str, int]

    def row(self) -> str:
        measured = math.isfinite(self.ratio)
        passed = measured and self.ratio >= self.target and self.errors.get("metalake", 1) == 0
        both = len(self.cells) == 2
        return (
            f"| {self.what} | {self.cells.get('metalake', '')} | {self.cells.get('mlflow', '')} | "
            f"{f'**{self.ratio:.1f}x**' if measured else 'n/a'} | >= {self.target:g}x, 0 errors | "
            f"{verdict(passed) if both else 'n/a'} |"
        )


def part_logging(args: argparse.Namespace, clients: list[Client], logs: dict[str, Path]) -> list[Figure]:
    figures = []
    per_round = [args.runs // args.rounds + (i < args.runs % args.rounds) for i in range(args.rounds)]
    for mode in ("batch", "fluent"):
        totals = {
            client.name: {"seconds": 0.0, "points": 0, "requests": 0, "errors": 0} for client in clients
        }
        first = 0
        for round_index, runs in enumerate(per_round):
            for client in rounds_order(clients, round_index):
                progress(f"1. {mode}: {runs} runs x {args.points} points on {client.name}")
                answer = client.ask(
                    "log",
                    logs[client.name],
                    mode=mode,
                    runs=runs,
                    first=first,
                    points=args.points,
                    batch=args.batch,
                    experiment=f"bench-{mode}",
                )
                for key in totals[client.name]:
                    totals[client.name][key] += answer[key]
            first += runs
        figures.append(logging_figure(args, mode, totals))
    return figures


def logging_figure(args: argparse.Namespace, mode: str, totals: dict[str, dict[str, Any]]) -> Figure:
    how = (
        f"`MlflowClient.log_batch`, {args.batch} points a call"
        if mode == "batch"
        else "`mlflow.log_metric` per step"
    )
    cells = {
        name: f"{t['seconds']:.1f} s ({t['points'] / t['seconds']:,.0f} points/s, {t['requests']:,} requests, "
        f"{t['errors']} errors)"
        for name, t in totals.items()
    }
    return Figure(
        f"1{'a' if mode == 'batch' else 'b'}. {args.runs} runs x {args.points:,} points, {how}",
        cells,
        ratio(totals, "seconds", larger_is_better=False),
        3,
        {name: t["errors"] for name, t in totals.items()},
    )


def part_concurrent(args: argparse.Namespace, clients: list[Client], logs: dict[str, Path]) -> Figure:
    totals: dict[str, dict[str, Any]] = {}
    for client in clients:
        progress(f"2. {args.processes} processes logging at once on {client.name} for {args.seconds:.0f} s")
        answer = client.ask(
            "concurrent",
            logs[client.name],
            processes=args.processes,
            seconds=args.seconds,
            points=100,
            experiment="bench-concurrent",
        )
        requests = answer["child_requests"]["requests"]
        totals[client.name] = {
            "rate": answer["points"] / answer["seconds"],
            "requests": requests,
            "seconds": answer["seconds"],
            "errors": answer["errors"],
        }
        progress(
            f"2. {client.name}: {answer['points']:,} points, {requests:,} requests, {answer['errors']} errors"
        )
    cells = {
        name: f"{t['rate']:,.0f} points/s ({t['requests'] / t['seconds']:,.0f} requests/s, {t['errors']} errors)"
        for name, t in totals.items()
    }
    return Figure(
        f"2. {args.processes} spawned processes, each its own client, `mlflow.log_metric` per step for "
        f"{args.seconds:.0f} s",
        cells,
        ratio(totals, "rate", larger_is_better=True),
        3,
        {name: t["errors"] for name, t in totals.items()},
    )


def part_search(args: argparse.Namespace, clients: list[Client], logs: dict[str, Path]) -> tuple[Figure, str]:
    loaded = []
    for client in clients:
        progress(f"3. loading {args.search_runs:,} runs into {client.name} through its MLflow endpoints")
        answer = client.ask(
            "load",
            logs[client.name],
            runs=args.search_runs,
            threads=4,
            seed=SEARCH_SEED,
            experiment="bench-search",
        )
        loaded.append(
            f"{client.name} {answer['seconds']:.1f} s ({answer['requests']:,} requests, {answer['errors']} errors)"
        )
        progress(f"3. {loaded[-1]}")
    seconds: dict[str, list[float]] = {client.name: [] for client in clients}
    errors = {client.name: 0 for client in clients}
    names: dict[str, list[str]] = {}
    for client in clients:
        client.ask("search", logs[client.name], repeat=3, experiment="bench-search")  # warm-up
    per_round = max(1, args.searches // args.rounds)
    for round_index in range(math.ceil(args.searches / per_round)):
        for client in rounds_order(clients, round_index):
            answer = client.ask("search", logs[client.name], repeat=per_round, experiment="bench-search")
            seconds[client.name] += answer["seconds"]
            errors[client.name] += answer["errors"]
            names[client.name] = answer["names"]
        progress(f"3. search round {round_index + 1}")
    same = len({tuple(found) for found in names.values()}) == 1 and all(len(n) == 100 for n in names.values())
    medians = {name: float(np.median(s)) if s else math.nan for name, s in seconds.items()}
    cells = {
        name: f"{medians[name] * 1000:.1f} ms (p95 {np.percentile(s, 95) * 1000:.1f} ms, {errors[name]} errors)"
        if s
        else f"no answer ({errors[name]} errors)"
        for name, s in seconds.items()
    }
    ratio_value = medians.get("mlflow", math.nan) / medians.get("metalake", math.nan)
    figure = Figure(
        f"3. `MlflowClient.search_runs` `metrics.m0 > 0.5` order by `metrics.m0 DESC`, 100 of "
        f"{args.search_runs:,} runs, median of {max(len(s) for s in seconds.values())} (same 100 runs in the same "
        f"order: {'yes' if same else '**no**'})",
        cells,
        ratio_value,
        5,
        errors,
    )
    return figure, "; ".join(loaded)


def ratio(totals: dict[str, dict[str, Any]], key: str, *, larger_is_better: bool) -> float:
    if "metalake" not in totals or "mlflow" not in totals:
        return math.nan
    ours, theirs = totals["metalake"][key], totals["mlflow"][key]
    return ours / theirs if larger_is_better else theirs / ours


# -- main -----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="runs logged in part 1, each mode (default 20)")
    parser.add_argument("--points", type=int, default=1000, help="points per run in part 1 (default 1,000)")
    parser.add_argument("--batch", type=int, default=100, help="points per log_batch call (default 100)")
    parser.add_argument("--processes", type=int, default=8, help="client processes in part 2 (default 8)")
    parser.add_argument("--seconds", type=float, default=20, help="seconds of part 2 per server (default 20)")
    parser.add_argument(
        "--search-runs", type=int, default=2000, help="runs searched in part 3 (default 2,000)"
    )
    parser.add_argument("--searches", type=int, default=60, help="timed searches per server (default 60)")
    parser.add_argument("--rounds", type=int, default=4, help="turns the servers take in parts 1 and 3")
    parser.add_argument(
        "--quick", action="store_true", help="a small try: 4 runs x 200 points, 8 s, 300 runs, 12 searches"
    )
    parser.add_argument("--only", choices=["metalake", "mlflow"], help="run one server only (no ratios)")
    parser.add_argument(
        "--no-record", action="store_true", help="print the figures, do not append RESULTS.md"
    )
    parser.add_argument("--keep", action="store_true", help="keep the stores and the logs (path printed)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.points, args.seconds, args.search_runs, args.searches = 4, 200, 8, 300, 12
        args.rounds = 2
    if min(args.runs, args.points, args.batch, args.processes, args.searches, args.rounds) < 1:
        parser.error("sizes must be at least 1")
    if args.batch > 1000:
        parser.error("--batch: MLflow takes at most 1,000 metrics in one log_batch")

    workdir = Path(tempfile.mkdtemp(prefix="metalake-bench-mlflow-"))
    servers: list[Server] = []
    clients: list[Client] = []
    began = time.monotonic()
    try:
        names = [args.only] if args.only else ["metalake", "mlflow"]
        for name in names:
            server = (
                metalake_server(workdir / "lake", workdir) if name == "metalake" else mlflow_server(workdir)
            )
            servers.append(server)
        logs = {name: workdir / f"{name}-client.log" for name in names}
        clients = [Client.start(server, logs[server.name]) for server in servers]
        progress(f"servers and clients up: {', '.join(f'{s.name} {s.url}' for s in servers)}")
        figures = part_logging(args, clients, logs)
        figures.append(part_concurrent(args, clients, logs))
        search, loaded = part_search(args, clients, logs)
        figures.append(search)
        failed = {client.name: (client.failed, client.exceptions) for client in clients}
        sent = {client.name: client.sent for client in clients}
        raised = {server.name: exceptions_logged(workdir / f"{server.name}-serve.log") for server in servers}
    finally:
        for client in clients:
            client.stop()
        for server in servers:
            server.stop()
        if args.keep:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sections = [
        f"MLflow {mlflow_version()} client code, unmodified, in its own process per server "
        "(`MLFLOW_TRACKING_URI=http://127.0.0.1:PORT`, `MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`), against "
        "`mlflow server --workers 1` (SQLite store, local artifact root) and `metalake serve` (fresh lake), "
        f"the servers taking turns. Whole bench {time.monotonic() - began:.0f} s; load average at the end "
        f"{os.getloadavg()[0]:.1f} (2-core shared machine).",
        "",
        "| what | metalake | mlflow | ratio | target | result |",
        "|---|---|---|---|---|---|",
        *[figure.row() for figure in figures],
        "",
        f"Ratios: MLflow's time over metalake's (1, 3), metalake's points/s over MLflow's (2). Loading the "
        f"{args.search_runs:,} runs of part 3 (not a figure): {loaded}.",
        *failed_requests(failed),
        *requests_made(sent),
        *[f"- {name} server log, exceptions: {text}" for name, text in raised.items() if text],
    ]
    publish(
        "MLflow client against metalake serve and mlflow server (bench/bench_mlflow_server.py)",
        "bench/bench_mlflow_server.py",
        sections,
        no_record=args.no_record,
    )


def failed_requests(failed: dict[str, tuple[dict[str, str], dict[str, str]]]) -> list[str]:
    """Each failing request kind with its first answer, and the first exception of each part."""
    lines = []
    for name, (kinds, exceptions) in failed.items():
        for kind, detail in sorted(kinds.items()):
            lines.append(f"- {name}: `{kind}`: `{detail[:300]}`")
        for command, detail in exceptions.items():
            lines.append(f"- {name}, first exception in `{command}`: `{detail[:300]}`")
    if not lines:
        return []
    return [
        "",
        "Requests that answered an error status (first answer of each kind; `get-by-name` 404 is how "
        "`mlflow.set_experiment` finds a new name) and exceptions the client raised:",
        *lines,
    ]


def requests_made(sent: dict[str, Counter[str]]) -> list[str]:
    """What the MLflow client sent to each server, all parts together, most frequent first."""
    lines = ["", "HTTP requests the client sent (all parts):"]
    for name, counts in sent.items():
        cells = ", ".join(f"`{kind}` {count:,}" for kind, count in counts.most_common())
        lines.append(f"- {name}: {cells}")
    return lines


def exceptions_logged(log: Path) -> str:
    """The last line of each traceback in a server's log (what a 500 was), counted."""
    counts: Counter[str] = Counter()
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    for index, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = next(
                (i for i in range(index + 1, len(lines)) if not lines[i].startswith((" ", "\t"))), None
            )
            if end is not None:
                counts[lines[end][:200]] += 1
    return ", ".join(f"`{line}` x{count}" for line, count in counts.most_common(5))


def mlflow_version() -> str:
    import mlflow

    return str(mlflow.__version__)


if __name__ == "__main__":
    main()
