"""What access control and masking cost, side by side in one run.

1. A SQL aggregate over `--points` metric points (default 1,000,000) grouped by a masked column
   (`recorded_by`, a keyed hash for a reader without `unmask`): `lake.masked().sql(...)` against `lake.sql(...)`
   on the same lake, the two alternating, `--repeat` times each (default 7), medians. Target: at most 1.5x.
2. One request, `GET /api/v1/runs/{id}`, `--requests` times (default 400) against two servers on the same lake:
   `metalake serve` deciding by grants, called with the token of a principal who may read the lake but not
   unmask it (authentication, the grant decision and masking on every request), and `metalake serve --no-auth`.
   The two alternate request by request; p50 of each and the difference. Target: under 1 ms added at p50.

3. A search over `--experiments` experiments (default 10,000), by a principal holding `--grants` read grants
   (default 1,000, one per experiment): MLflow's `experiments/search` and the REST `GET /api/v1/experiments`,
   100 per page, against the same two servers (the `--no-auth` one answers all experiments, the other only the
   granted ones, filtered before paging). p50 of `--searches` each (default 100). Target: at most 1.2x.

The masked SQL figure is for a warm session. The first masked query after a table changes also reads the
distinct values of the hashed columns once (the dictionary its view looks hashes up in); that is measured too.

Quick try: `python bench/bench_access.py --points 100000 --requests 100 --experiments 1000 --grants 100 --no-record`.
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


def sql_after_a_write(lake: metalake.Lake, repeat: int) -> tuple[float, float]:
    """The aggregate right after a commit to the table: the clear session registers the new version, the masked
    one also rebuilds its dictionaries. Medians of `repeat` of each."""
    masked = lake.masked()
    clear_times, masked_times = [], []
    for _ in range(repeat):
        for target, times in ((lake, clear_times), (masked, masked_times)):
            with lake.runs.start("bench", name="one-more") as run:
                run.log_metric("loss", 0.5, step=0)
            lake.runs.wait()
            started = time.perf_counter()
            target.sql(AGGREGATE).fetchall()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(clear_times), statistics.median(masked_times)


def grant_experiments(lake: metalake.Lake, experiments: int, grants: int) -> str:
    """`experiments` experiments in one commit, and a principal with read on `grants` of them; its token."""
    names = [f"team-{number // 100}/exp-{number}" for number in range(experiments)]
    lake.experiments.create_many(names)
    lake.access.create_principal("searcher")
    step = max(1, experiments // max(1, grants))
    for name in names[::step][:grants]:
        lake.access.grant("searcher", "read", f"experiment:{name}")
    return lake.access.create_token("searcher").token


def p50(
    client: httpx.Client, calls: list[tuple[str, str, dict[str, str], dict[str, object] | None]], count: int
) -> list[float]:
    """The p50 of each call (method, url, headers, JSON body), the calls alternating `count` times."""
    for method, url, headers, body in calls:  # warm
        for _ in range(5):
            assert client.request(method, url, headers=headers, json=body).status_code == 200
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(count):
        for index, (method, url, headers, body) in enumerate(calls):
            started = time.perf_counter()
            answer = client.request(method, url, headers=headers, json=body)
            times[index].append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text
    return [statistics.median(each) for each in times]


def serve(root: Path, workdir: Path, name: str, *options: str) -> tuple[Server, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "metalake.cli", "--lake", str(root), "serve", "--port", str(port)]
    command += ["--spool", str(workdir / f"spool-{name}"), *options]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return start(name, command, env, workdir / f"{name}.log", "/api/v1/health", url), url


def request_figures(
    root: Path, workdir: Path, tokens: tuple[str, str], run_id: str, count: int, searches: int
) -> tuple[float, float, list[float]]:
    """Run by id (grants + masking vs --no-auth), then the experiment searches (a principal with grants vs
    --no-auth): REST list then MLflow search, each with grants and without."""
    viewer, searcher = tokens
    guarded, guarded_url = serve(root, workdir, "grants")
    open_server, open_url = serve(root, workdir, "no-auth", "--no-auth")
    try:
        path = f"/api/v1/runs/{run_id}"
        with httpx.Client(timeout=60) as client:
            headers = {"Authorization": f"Bearer {viewer}"}
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
            granted = {"Authorization": f"Bearer {searcher}"}
            rest, mlflow = "/api/v1/experiments?limit=100", "/api/2.0/mlflow/experiments/search"
            body = {"max_results": 100}
            search_times = p50(
                client,
                [
                    ("GET", guarded_url + rest, granted, None),
                    ("GET", open_url + rest, {}, None),
                    ("POST", guarded_url + mlflow, granted, body),
                    ("POST", open_url + mlflow, {}, body),
                ],
                searches,
            )
        return statistics.median(guarded_times), statistics.median(open_times), search_times
    finally:
        for server in (guarded, open_server):
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--experiments", type=int, default=10_000)
    parser.add_argument("--grants", type=int, default=1_000)
    parser.add_argument("--searches", type=int, default=100)
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
        clear_after_ms, masked_after_ms = sql_after_a_write(lake, args.repeat)
        started = time.perf_counter()
        searcher = grant_experiments(lake, args.experiments, args.grants)
        print(
            f"{args.experiments:,} experiments and {args.grants:,} grants in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        lake.close()
        guarded_ms, open_ms, searched = request_figures(
            root, workdir, (token, searcher), run_id, args.requests, args.searches
        )
    sql_ratio = masked_ms / clear_ms
    rest_ratio, mlflow_ratio = searched[0] / searched[1], searched[2] / searched[3]
    sections = [
        "| | clear | masked (no unmask) | ratio | target |",
        "|---|---|---|---|---|",
        f"| SQL group-by over {args.points:,} points by a masked column, median of {args.repeat} "
        f"| {clear_ms:.1f} ms | {masked_ms:.1f} ms | {sql_ratio:.2f}x | at most 1.5x "
        f"({'met' if sql_ratio <= 1.5 else 'not met'}) |",
        f"| the same, first query after a commit to the table, median of {args.repeat} | {clear_after_ms:.1f} ms "
        f"| {masked_after_ms:.1f} ms | {masked_after_ms / clear_after_ms:.2f}x | |",
        "",
        "| | `--no-auth` | grants + masking | added | target |",
        "|---|---|---|---|---|",
        f"| `GET /api/v1/runs/{{id}}` p50 of {args.requests} | {open_ms:.2f} ms | {guarded_ms:.2f} ms "
        f"| {guarded_ms - open_ms:+.2f} ms | under 1 ms ({'met' if guarded_ms - open_ms < 1 else 'not met'}) |",
        "",
        f"| search of {args.experiments:,} experiments, 100 per page, p50 of {args.searches} | `--no-auth` (all) "
        f"| {args.grants:,} grants (those) | ratio | target |",
        "|---|---|---|---|---|",
        f"| `GET /api/v1/experiments` | {searched[1]:.1f} ms | {searched[0]:.1f} ms | {rest_ratio:.2f}x "
        f"| at most 1.2x ({'met' if rest_ratio <= 1.2 else 'not met'}) |",
        f"| MLflow `experiments/search` | {searched[3]:.1f} ms | {searched[2]:.1f} ms | {mlflow_ratio:.2f}x "
        f"| at most 1.2x ({'met' if mlflow_ratio <= 1.2 else 'not met'}) |",
    ]
    publish(
        "Access control and masking (bench_access.py)",
        "bench/bench_access.py",
        sections,
        no_record=args.no_record,
    )


if __name__ == "__main__":
    main()
