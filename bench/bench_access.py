"""What access control and masking cost, side by side in one run.

1. A SQL aggregate over `--points` metric points (default 1,000,000) grouped by a masked column
   (`recorded_by`, a keyed hash for a reader without `unmask`): `lake.masked().sql(...)` against `lake.sql(...)`
   on the same lake, the two alternating, `--repeat` times each (default 7), medians. Target: at most 1.5x.
2. One request, `GET /api/v1/runs/{id}`, `--requests` times (default 400) against two servers on the same lake:
   `metalake serve` deciding by grants, called with the token of a principal who may read the lake but not
   unmask it (authentication, the grant decision and masking on every request), and `metalake serve --no-auth`.
   The two alternate request by request; p50 of each and the difference. Target: under 1 ms added at p50.

The search over 10,000 experiments with 1,000 grants is not measured here yet.

Quick try: `python bench/bench_access.py --points 100000 --requests 100 --no-record`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import publish
from bench_api import Server, free_port, start

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"
sys.path.insert(0, str(SRC))

import metalake  # noqa: E402

AGGREGATE = "select recorded_by, count(*), avg(value), max(value) from metrics group by recorded_by"


def fill(lake: metalake.Lake, points: int) -> str:
    """One run per 100,000 points, logged by five actors (so the group-by has groups); returns a run id."""
    run_id = ""
    per_run = 100_000
    for number in range(max(1, points // per_run)):
        actor_lake = metalake.connect(lake.location.uri, actor=f"trainer-{number % 5}@example.com")
        with actor_lake.runs.start("bench", name=f"run-{number}") as run:
            run.log_params({"lr": 0.1, "api_key": "sk-secret"})
            for step in range(min(per_run, points)):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
            run_id = run.run_id
        actor_lake.close()
    return run_id


def sql_figures(lake: metalake.Lake, repeat: int) -> tuple[float, float]:
    masked = lake.masked()
    clear_times, masked_times = [], []
    lake.sql(AGGREGATE).fetchall()  # warm both sessions: files opened, views made
    masked.sql(AGGREGATE).fetchall()
    for _ in range(repeat):
        for target, times in ((lake, clear_times), (masked, masked_times)):
            started = time.perf_counter()
            target.sql(AGGREGATE).fetchall()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(clear_times), statistics.median(masked_times)


def serve(root: Path, workdir: Path, name: str, *options: str) -> tuple[Server, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "metalake.cli", "--lake", str(root), "serve", "--port", str(port)]
    command += ["--spool", str(workdir / f"spool-{name}"), *options]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return start(name, command, env, workdir / f"{name}.log", "/api/v1/health", url), url


def request_figures(root: Path, workdir: Path, token: str, run_id: str, count: int) -> tuple[float, float]:
    guarded, guarded_url = serve(root, workdir, "grants")
    open_server, open_url = serve(root, workdir, "no-auth", "--no-auth")
    try:
        path = f"/api/v1/runs/{run_id}"
        with httpx.Client(timeout=30) as client:
            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(20):  # warm: caches of both lakes built
                assert client.get(guarded_url + path, headers=headers).status_code == 200
                assert client.get(open_url + path).status_code == 200
            guarded_times, open_times = [], []
            for _ in range(count):
                for url, extra, times in ((guarded_url, headers, guarded_times), (open_url, {}, open_times)):
                    started = time.perf_counter()
                    answer = client.get(url + path, headers=extra)
                    times.append((time.perf_counter() - started) * 1000)
                    assert answer.status_code == 200, answer.text
            assert "sk-secret" not in client.get(guarded_url + path, headers=headers).text
        return statistics.median(guarded_times), statistics.median(open_times)
    finally:
        for server in (guarded, open_server):
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument(
        "--no-record", action="store_true", help="print the figures, do not append RESULTS.md"
    )
    args = parser.parse_args()
    os.environ.setdefault("METALAKE_MASK_KEY", "4d" * 32)
    with tempfile.TemporaryDirectory(prefix="bench-access-") as folder:
        workdir = Path(folder)
        os.environ["METALAKE_JOURNAL"] = str(workdir / "journal")
        root = workdir / "lake"
        lake = metalake.connect(root, actor="bench")
        lake.access.init("root")
        lake.access.create_principal("viewer")
        lake.access.grant("viewer", "read", "lake")
        token = lake.access.create_token("viewer").token
        started = time.perf_counter()
        run_id = fill(lake, args.points)
        print(f"filled {args.points:,} points in {time.perf_counter() - started:.1f} s", flush=True)
        clear_ms, masked_ms = sql_figures(lake, args.repeat)
        lake.close()
        guarded_ms, open_ms = request_figures(root, workdir, token, run_id, args.requests)
    sql_ratio = masked_ms / clear_ms
    sections = [
        "| | clear | masked (no unmask) | ratio | target |",
        "|---|---|---|---|---|",
        f"| SQL group-by over {args.points:,} points by a masked column, median of {args.repeat} "
        f"| {clear_ms:.1f} ms | {masked_ms:.1f} ms | {sql_ratio:.2f}x | at most 1.5x "
        f"({'met' if sql_ratio <= 1.5 else 'not met'}) |",
        "",
        "| | `--no-auth` | grants + masking | added | target |",
        "|---|---|---|---|---|",
        f"| `GET /api/v1/runs/{{id}}` p50 of {args.requests} | {open_ms:.2f} ms | {guarded_ms:.2f} ms "
        f"| {guarded_ms - open_ms:+.2f} ms | under 1 ms ({'met' if guarded_ms - open_ms < 1 else 'not met'}) |",
    ]
    publish(
        "Access control and masking (bench_access.py)",
        "bench/bench_access.py",
        sections,
        no_record=args.no_record,
    )


if __name__ == "__main__":
    main()
