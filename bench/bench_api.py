"""metalake's REST API (`metalake serve`) against a real `mlflow server` on SQLite, both over HTTP, one client.

Both servers hold the same `--runs` runs (default 10,000) in one experiment, with the same ids and values: each run
has 5 params, 3 tags and 5 metrics x 3 steps, plus one extra run with one metric of `--big-points` points
(default 1,000,000). Loading is timed and printed but is not part of the figures:

- MLflow: `MlflowClient` on the SQLite file creates the schema and the experiment; the runs are then inserted
  with `sqlite3.executemany` into MLflow's own tables (runs, tags with `mlflow.runName`, params, metrics,
  latest_metrics), in the shape `MlflowClient.log_batch` writes (checked against one run read back through
  `MlflowClient.get_run`). Logging 10,000 runs through the client or HTTP would take many minutes.
- metalake: `lake.append` of whole tables (runs, params, run_tags, metrics, metric_summaries; the import path
  of bench_tracking.py), then `lake.maintain()` as `metalake maintain` would.

Then `mlflow server --workers 1` and `metalake serve` run as child processes, each is warmed up, and the same
httpx client (keep-alive) measures, alternating between the two servers in rounds:

1. one run by id: `GET /api/v1/runs/{id}` vs `GET /api/2.0/mlflow/runs/get`;
2. search with a metric filter and order, 100 results: `GET /api/v1/runs?...` vs `POST .../runs/search`;
3. one metric of 1M points downsampled to 1,000: `GET /api/v1/runs/{id}/metrics/{key}?max_points=1000` vs
   MLflow's `GET .../metrics/get-history-bulk-interval?max_results=1000` (and one full `get-history`, timed once);
4. `--clients` threads (each its own httpx.Client) mixing run gets, searches and one-point writes for
   `--seconds` against each server in turn: `POST /api/v1/runs/{id}/log` vs `POST .../runs/log-batch`.

Quick try: `python bench/bench_api.py --runs 500 --seconds 5 --no-record`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _api_workload import (
    BIG_KEY,
    EXPERIMENT,
    METRICS,
    SEED,
    STEPS,
    Workload,
    load_lake,
    load_mlflow,
    workload,
)
from _common import publish
from bench_tracking import progress, timed, verdict

SEARCH_WHERE, SEARCH_ORDER = "metrics.m0 > 0.5", "metrics.m0 desc"
MIX = ("get", "search", "write", "get")  # the clients' cycle: half gets, a quarter each of the rest
SRC = Path(__file__).resolve().parents[1] / "src"


# -- the two servers ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A server in a child process, with the requests of each measured kind in its own API."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    requests: dict[str, Callable[..., httpx.Request]] = field(default_factory=dict)

    def send(self, client: httpx.Client, kind: str, *args: Any) -> httpx.Response:
        return client.send(self.requests[kind](*args))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(name: str, command: list[str], env: dict[str, str], log: Path, health: str, url: str) -> Server:
    """Start `command` and wait until `health` answers 200 (at most two minutes)."""
    handle = log.open("wb")
    process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + health, timeout=2).status_code == 200:
                return Server(name, url, process)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{name} did not answer {health} within 120 s:\n{log.read_text()[-3000:]}")


def metalake_server(root: Path, workdir: Path, experiment: str) -> Server:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "metalake.cli", "--lake", str(root), "serve", "--port", str(port)]
    command += ["--spool", str(workdir / "spool"), "--no-auth"]
    server = start("metalake serve", command, env, workdir / "metalake-serve.log", "/api/v1/health", url)
    search = {"experiment": experiment, "where": SEARCH_WHERE, "order_by": SEARCH_ORDER, "limit": 100}
    server.requests = {
        "get": lambda run_id: httpx.Request("GET", f"{url}/api/v1/runs/{run_id}"),
        "search": lambda: httpx.Request("GET", f"{url}/api/v1/runs", params=search),
        "write": lambda run_id, step: httpx.Request(
            "POST",
            f"{url}/api/v1/runs/{run_id}/log",
            json={"metrics": [{"key": "c", "value": 0.1, "step": step}]},
        ),
        "history": lambda run_id: httpx.Request(
            "GET", f"{url}/api/v1/runs/{run_id}/metrics/{BIG_KEY}", params={"max_points": 1000}
        ),
    }
    return server


def mlflow_server(db: Path, artifacts: Path, workdir: Path, experiment_id: str) -> Server:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}"]
    command += ["--default-artifact-root", str(artifacts), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1"]
    server = start("mlflow server", command, {**os.environ}, workdir / "mlflow-server.log", "/health", url)
    api = f"{url}/api/2.0/mlflow"
    search = {
        "experiment_ids": [experiment_id],
        "filter": SEARCH_WHERE,
        "order_by": ["metrics.m0 DESC"],
        "max_results": 100,
    }
    server.requests = {
        "get": lambda run_id: httpx.Request("GET", f"{api}/runs/get", params={"run_id": run_id}),
        "search": lambda: httpx.Request("POST", f"{api}/runs/search", json=search),
        "write": lambda run_id, step: httpx.Request(
            "POST",
            f"{api}/runs/log-batch",
            json={
                "run_id": run_id,
                "metrics": [{"key": "c", "value": 0.1, "timestamp": int(time.time() * 1000), "step": step}],
            },
        ),
        "history": lambda run_id: httpx.Request(
            "GET",
            f"{api}/metrics/get-history-bulk-interval",
            params={"run_ids": run_id, "metric_key": BIG_KEY, "max_results": 1000},
        ),
        "full_history": lambda run_id: httpx.Request(
            "GET", f"{api}/metrics/get-history", params={"run_id": run_id, "metric_key": BIG_KEY}
        ),
    }
    return server


# -- measuring ------------------------------------------------------------------------------------------------


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.array(seconds), q)) * 1000 if seconds else float("nan")


def checked(server: Server, client: httpx.Client, kind: str, *args: Any) -> httpx.Response:
    response = server.send(client, kind, *args)
    if response.status_code != 200:
        raise SystemExit(f"{server.name} {kind} {args}: HTTP {response.status_code}: {response.text[:2000]}")
    return response


def alternate(
    servers: list[Server], kind: str, arguments: list[tuple[Any, ...]], rounds: int
) -> dict[str, list[float]]:
    """Seconds of each request of `kind`, the servers taking turns in `rounds` blocks (noise hits both alike)."""
    times: dict[str, list[float]] = {server.name: [] for server in servers}
    block = max(1, len(arguments) // rounds)
    with httpx.Client(timeout=120) as client:
        for start_at in range(0, len(arguments), block):
            for server in servers:
                for args in arguments[start_at : start_at + block]:
                    began = time.perf_counter()
                    checked(server, client, kind, *args)
                    times[server.name].append(time.perf_counter() - began)
    return times


def warm_up(server: Server, work: Workload, run_ids: list[str]) -> None:
    with httpx.Client(timeout=120) as client:
        for run_id in run_ids[:20]:
            checked(server, client, "get", run_id)
        for _ in range(3):
            checked(server, client, "search")
            checked(server, client, "history", work.big_run_id)


@dataclass
class Tally:
    """One client thread's (or all threads') latencies and errors per request kind."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in set(MIX)})
    errors: dict[str, int] = field(default_factory=lambda: {kind: 0 for kind in set(MIX)})
    first_error: str | None = None

    def merge(self, other: Tally) -> None:
        for kind in self.seconds:
            self.seconds[kind] += other.seconds[kind]
            self.errors[kind] += other.errors[kind]
        self.first_error = self.first_error or other.first_error


def client_thread(server: Server, index: int, run_ids: list[str], deadline: float, tally: Tally) -> None:
    """Requests in the MIX cycle until the deadline; this thread writes into its own run, step after step."""
    write_run = run_ids[index]
    read_ids = run_ids[index::7] or run_ids
    step = 1000
    with httpx.Client(timeout=120) as client:
        position = index
        while time.perf_counter() < deadline:
            kind = MIX[position % len(MIX)]
            position += 1
            args: tuple[Any, ...] = ()
            if kind == "get":
                args = (read_ids[position % len(read_ids)],)
            elif kind == "write":
                args, step = (write_run, step), step + 1
            began = time.perf_counter()
            try:
                response = server.send(client, kind, *args)
                failed = response.status_code != 200
                detail = f"{kind}: HTTP {response.status_code}: {response.text[:500]}"
            except httpx.HTTPError as error:
                failed, detail = True, f"{kind}: {type(error).__name__}: {error}"
            if failed:
                tally.errors[kind] += 1
                tally.first_error = tally.first_error or detail
            else:
                tally.seconds[kind].append(time.perf_counter() - began)


def concurrent(server: Server, clients: int, seconds: float, run_ids: list[str]) -> Tally:
    deadline = time.perf_counter() + seconds
    tallies = [Tally() for _ in range(clients)]
    threads = [
        threading.Thread(target=client_thread, args=(server, index, run_ids, deadline, tallies[index]))
        for index in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    return total


# -- the parts ------------------------------------------------------------------------------------------------


def part_latency(args: argparse.Namespace, lake: Server, mlflow: Server, work: Workload) -> list[str]:
    rng = np.random.default_rng([SEED, 1])
    picked = [(work.run_ids[i],) for i in rng.choice(len(work.run_ids), args.requests).tolist()]
    progress(f"1. run get: {len(picked)} requests per server")
    gets = alternate([lake, mlflow], "get", picked, args.rounds)
    progress(f"2. search: {args.search_requests} requests per server")
    searches = alternate([lake, mlflow], "search", [()] * args.search_requests, args.rounds)
    progress(f"3. downsampled history: {args.history_requests} requests per server")
    histories = alternate(
        [lake, mlflow], "history", [(work.big_run_id,)] * args.history_requests, args.rounds
    )

    progress(f"1'. run get right after a write: {args.after_write} per server")
    after = {server.name: get_after_write(server, work, args.after_write) for server in (lake, mlflow)}
    same_search = same_search_answer(lake, mlflow)
    lake_points, mlflow_points = history_sizes(lake, mlflow, work.big_run_id)
    g50, g99 = percentile_ms(gets[lake.name], 50), percentile_ms(gets[lake.name], 99)
    m50, m99 = percentile_ms(gets[mlflow.name], 50), percentile_ms(gets[mlflow.name], 99)
    s_lake, s_mlflow = percentile_ms(searches[lake.name], 50), percentile_ms(searches[mlflow.name], 50)
    s99_lake, s99_mlflow = percentile_ms(searches[lake.name], 99), percentile_ms(searches[mlflow.name], 99)
    h_lake, h_mlflow = percentile_ms(histories[lake.name], 50), percentile_ms(histories[mlflow.name], 50)
    h99_lake, h99_mlflow = percentile_ms(histories[lake.name], 99), percentile_ms(histories[mlflow.name], 99)
    full = full_history(args, mlflow, work.big_run_id)
    big = f"{len(work.big_values):,}"
    return [
        f"{len(picked)} run gets (random runs), {args.search_requests} searches and {args.history_requests} "
        f"history reads per server, one httpx.Client with keep-alive, the servers taking turns in {args.rounds} "
        "blocks. Each server was warmed up first (20 gets, 3 searches, 3 history reads).",
        "",
        "| request | metalake p50 | metalake p99 | MLflow p50 | MLflow p99 | MLflow / metalake (p50) | target "
        "| result |",
        "|---|---|---|---|---|---|---|---|",
        f"| 1. one run by id: `GET /api/v1/runs/{{id}}` vs `GET /api/2.0/mlflow/runs/get` | **{g50:.1f} ms** | "
        f"{g99:.1f} ms | {m50:.1f} ms | {m99:.1f} ms | **{m50 / g50:.1f}x** | < 5 ms and >= 5x | "
        f"{verdict(g50 < 5 and m50 / g50 >= 5)} |",
        f"| 1'. the same, each get right after a one-point write into another run (median of "
        f"{args.after_write}) | {percentile_ms(after[lake.name], 50):.1f} ms | "
        f"{percentile_ms(after[lake.name], 100):.1f} ms (max) | {percentile_ms(after[mlflow.name], 50):.1f} ms | "
        f"{percentile_ms(after[mlflow.name], 100):.1f} ms (max) | "
        f"{percentile_ms(after[mlflow.name], 50) / percentile_ms(after[lake.name], 50):.2f}x | (reference) | |",
        f"| 2. search `{SEARCH_WHERE}` order by `{SEARCH_ORDER}`, 100 results: `GET /api/v1/runs` vs "
        f"`POST /api/2.0/mlflow/runs/search` (same 100 runs in the same order: {same_search}) | {s_lake:.1f} ms | "
        f"{s99_lake:.1f} ms | {s_mlflow:.1f} ms | {s99_mlflow:.1f} ms | **{s_mlflow / s_lake:.1f}x** | >= 5x | "
        f"{verdict(s_mlflow / s_lake >= 5)} |",
        f"| 3. one metric of {big} points downsampled: `GET /api/v1/runs/{{id}}/metrics/{{key}}?max_points=1000` "
        f"({lake_points:,} points back) vs `GET /api/2.0/mlflow/metrics/get-history-bulk-interval?max_results=1000` "
        f"({mlflow_points:,} points back) | **{h_lake:.1f} ms** | {h99_lake:.1f} ms | {h_mlflow:.1f} ms | "
        f"{h99_mlflow:.1f} ms | {h_mlflow / h_lake:.1f}x | < 100 ms | {verdict(h_lake < 100)} |",
        f"| 3'. MLflow's whole history of the {big} points: `GET /api/2.0/mlflow/metrics/get-history` (no "
        f"max_results), one request | | | {full} | | | (reference) | |",
    ]


def get_after_write(server: Server, work: Workload, count: int) -> list[float]:
    """Seconds of run gets that each follow a committed one-point write (into the last run; gets of others)."""
    times = []
    with httpx.Client(timeout=120) as client:
        for index in range(count):
            checked(server, client, "write", work.run_ids[-1], 100_000 + index)
            began = time.perf_counter()
            checked(server, client, "get", work.run_ids[index])
            times.append(time.perf_counter() - began)
    return times


def same_search_answer(lake: Server, mlflow: Server) -> str:
    with httpx.Client(timeout=120) as client:
        ours = [row["name"] for row in checked(lake, client, "search").json()["items"]]
        theirs = [run["info"]["run_name"] for run in checked(mlflow, client, "search").json()["runs"]]
    return "yes" if ours == theirs and len(ours) == 100 else f"**no** ({len(ours)} vs {len(theirs)} runs)"


def history_sizes(lake: Server, mlflow: Server, run_id: str) -> tuple[int, int]:
    with httpx.Client(timeout=120) as client:
        ours = len(checked(lake, client, "history", run_id).json()["points"])
        theirs = len(checked(mlflow, client, "history", run_id).json().get("metrics", []))
    return ours, theirs


def full_history(args: argparse.Namespace, mlflow: Server, run_id: str) -> str:
    """One unpaged get-history of the big metric, or why it was not measured."""
    if args.full_history_timeout <= 0:
        return "not measured (`--full-history-timeout 0`)"
    progress(f"3'. MLflow full get-history, timeout {args.full_history_timeout:.0f} s")
    with httpx.Client(timeout=args.full_history_timeout) as client:
        try:
            seconds, response = timed(lambda: checked(mlflow, client, "full_history", run_id))
        except httpx.TimeoutException:
            return f"not measured: no answer within {args.full_history_timeout:.0f} s"
    points = len(response.json().get("metrics", []))
    return f"{seconds * 1000:,.0f} ms ({points:,} points, {len(response.content) / 2**20:.0f} MB of JSON)"


def part_concurrent(args: argparse.Namespace, lake: Server, mlflow: Server, work: Workload) -> list[str]:
    lines = [
        f"{args.clients} threads, each its own httpx.Client, for {args.seconds:.0f} s per server (metalake first, "
        "then MLflow, the other idle). Each thread cycles get, search, write, get (start staggered): gets of "
        "random runs, the search of row 2, and a one-point write into the thread's own run "
        '(`{"metrics": [{"key": "c", "value": 0.1, "step": N}]}`; MLflow: `log-batch` with a timestamp). '
        "Latencies of successful requests; the client threads share this process's GIL and the 2 cores with the "
        "server, the same for both servers.",
        "",
        "| server | requests done | per second | errors | get p50 / p99 | search p50 / p99 | write p50 / p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    done: dict[str, int] = {}
    failures: dict[str, int] = {}
    notes = []
    for server in (lake, mlflow):
        progress(f"4. {args.clients} clients against {server.name} for {args.seconds:.0f} s")
        tally = concurrent(server, args.clients, args.seconds, work.run_ids)
        done[server.name] = sum(len(values) for values in tally.seconds.values())
        failures[server.name] = sum(tally.errors.values())
        cells = [
            f"{percentile_ms(tally.seconds[kind], 50):.0f} / {percentile_ms(tally.seconds[kind], 99):.0f} ms "
            f"({len(tally.seconds[kind]):,})"
            for kind in ("get", "search", "write")
        ]
        errors = ", ".join(f"{kind} {count}" for kind, count in sorted(tally.errors.items()) if count)
        lines.append(
            f"| {server.name} | {done[server.name]:,} | {done[server.name] / args.seconds:,.0f} | "
            f"{failures[server.name]}{f' ({errors})' if errors else ''} | {' | '.join(cells)} |"
        )
        if tally.first_error:
            notes.append(f"First error from {server.name}: `{tally.first_error[:300]}`")
        progress(f"4. {server.name}: {done[server.name]:,} requests, {failures[server.name]} errors")
    ratio = done[lake.name] / max(done[mlflow.name], 1)
    lines += [
        f"| metalake / MLflow | **{ratio:.1f}x** | | target 0 errors on metalake: "
        f"{verdict(failures[lake.name] == 0)} | | | |",
        "",
        *notes,
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10_000, help="runs in each system (default 10,000)")
    parser.add_argument("--big-points", type=int, default=1_000_000, help="points of the one big metric")
    parser.add_argument("--requests", type=int, default=400, help="run gets per server (default 400)")
    parser.add_argument("--search-requests", type=int, default=60, help="searches per server (default 60)")
    parser.add_argument(
        "--history-requests", type=int, default=20, help="history reads per server (default 20)"
    )
    parser.add_argument("--after-write", type=int, default=10, help="run gets each right after a write")
    parser.add_argument("--rounds", type=int, default=4, help="blocks in which the servers take turns")
    parser.add_argument("--clients", type=int, default=32, help="concurrent client threads (default 32)")
    parser.add_argument("--seconds", type=float, default=30, help="seconds of concurrent load per server")
    parser.add_argument(
        "--full-history-timeout",
        type=float,
        default=120,
        help="seconds to wait for MLflow's whole 1M-point get-history (0: skip it)",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="print the figures, do not append RESULTS.md"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the lake, the database and the logs (path printed)"
    )
    args = parser.parse_args()
    if args.runs < args.clients or args.clients < 1:
        parser.error("--runs must be at least --clients, and --clients at least 1")

    workdir = Path(tempfile.mkdtemp(prefix="metalake-bench-api-"))
    db, artifacts, root = workdir / "mlflow.db", workdir / "art", workdir / "lake"
    servers: list[Server] = []
    try:
        progress(f"workload: {args.runs:,} runs + one run with {args.big_points:,} points")
        work = workload(args.runs, args.big_points)
        progress("loading MLflow's SQLite store")
        mlflow_s, experiment_id = timed(lambda: load_mlflow(db, artifacts, work))
        progress(f"MLflow store loaded in {mlflow_s:.1f} s; loading the lake")
        append_s, maintain_s = load_lake(root, work)
        progress(f"lake loaded in {append_s:.1f} s, maintained in {maintain_s:.1f} s; starting the servers")
        lake_start_s, lake = timed(lambda: metalake_server(root, workdir, EXPERIMENT))
        servers.append(lake)
        mlflow_start_s, mlflow = timed(lambda: mlflow_server(db, artifacts, workdir, experiment_id))
        servers.append(mlflow)
        progress(f"servers up (metalake {lake_start_s:.1f} s, MLflow {mlflow_start_s:.1f} s); warming up")
        for server in servers:
            warm_up(server, work, work.run_ids)
        latency = part_latency(args, lake, mlflow, work)
        load = part_concurrent(args, lake, mlflow, work)
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    points = args.runs * STEPS * METRICS
    sections = [
        f"Both servers hold the same {args.runs:,} runs in one experiment (same ids and values; each 5 params, 3 "
        f"tags, 5 metrics x 3 steps: {points:,} points) and one run with one metric of {args.big_points:,} points. "
        f"MLflow {mlflow_version()} `mlflow server --workers 1` on SQLite; `metalake serve` on a local lake. "
        f"Load average at the end: {os.getloadavg()[0]:.1f} (the machine is shared).",
        "",
        "Setup (not in the figures): MLflow store written with `sqlite3.executemany` into MLflow's tables after "
        f"`MlflowClient` made the schema, {mlflow_s:.1f} s (checked through `MlflowClient.get_run`); lake: one "
        f"`lake.append` per table {append_s:.1f} s, then `lake.maintain()` {maintain_s:.1f} s; servers up "
        f"(`/health` answering): metalake {lake_start_s:.1f} s, MLflow {mlflow_start_s:.1f} s.",
        "",
        "### Single requests",
        "",
        *latency,
        "",
        f"### {args.clients} concurrent clients, reads and writes",
        "",
        *load,
    ]
    publish(
        "REST API vs mlflow server (bench/bench_api.py)",
        "bench/bench_api.py",
        sections,
        no_record=args.no_record,
    )


def mlflow_version() -> str:
    import mlflow

    return str(mlflow.__version__)


if __name__ == "__main__":
    main()
