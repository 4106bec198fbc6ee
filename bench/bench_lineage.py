"""Lineage targets: JSONL ingest (>= 20,000 events/s), HTTP one by one (>= 500 events/s), depth-10 walk (< 200 ms).

1. 100,000 Airflow-shaped events (task runs: START and COMPLETE, parent DAG run, two inputs, one output, schema
   facets) from a JSONL file through `lake.lineage.ingest_file`; side by side, the time to only check and hash
   them (the floor set by JSON parsing in Python).
2. One client sending events one by one to `metalake serve` (a uvicorn process on 127.0.0.1): the real
   openlineage-python HttpTransport, and a bare `requests` session; then the time until all are committed.
3. An upstream walk of depth 10 in a layered graph of 100,000 lineage edges: the first walk (which computes the
   materialized lineage_graph view) and the median of later ones.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import record

import metalake
from metalake.lineage.openlineage.events import parse_event

COMMAND = "python bench/bench_lineage.py"


def airflow_events(
    count: int, *, jobs: int = 500, datasets: int = 2000, seed: int = 1
) -> list[dict[str, Any]]:
    """`count` events: task runs of `jobs` jobs over `datasets` tables, each run a START and a COMPLETE."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = []
    for i in range(count // 2):
        job = rng.randrange(jobs)
        run_id, dag_run = str(uuid.UUID(int=rng.getrandbits(128))), str(uuid.UUID(int=rng.getrandbits(128)))
        began = start + timedelta(seconds=30 * i)
        inputs = [
            {
                "namespace": "postgres://warehouse:5432",
                "name": f"public.table_{rng.randrange(datasets)}",
                "facets": {
                    "schema": {"fields": [{"name": "id", "type": "INTEGER"}, {"name": "v", "type": "TEXT"}]}
                },
            }
            for _ in range(2)
        ]
        outputs = [{"namespace": "s3://lake", "name": f"derived/table_{job}", "facets": {}}]
        for state, moment in (
            ("START", began),
            ("COMPLETE", began + timedelta(seconds=rng.randrange(5, 600))),
        ):
            events.append(
                {
                    "eventType": state,
                    "eventTime": moment.isoformat(),
                    "producer": "https://github.com/apache/airflow/tree/providers-openlineage/2.1.0",
                    "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
                    "run": {
                        "runId": run_id,
                        "facets": {
                            "parent": {
                                "run": {"runId": dag_run},
                                "job": {"namespace": "airflow-prod", "name": f"dag_{job % 50}"},
                            }
                        },
                    },
                    "job": {
                        "namespace": "airflow-prod",
                        "name": f"dag_{job % 50}.task_{job}",
                        "facets": {
                            "jobType": {
                                "processingType": "BATCH",
                                "integration": "AIRFLOW",
                                "jobType": "TASK",
                            }
                        },
                    },
                    "inputs": inputs,
                    "outputs": outputs,
                }
            )
    return events


def as_client_event(event: dict[str, Any]) -> Any:
    """The same event as an openlineage-python RunEvent, what an integration hands to its client."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import job_type_job, parent_run, schema_dataset

    parent = event["run"]["facets"]["parent"]
    job_type = event["job"]["facets"]["jobType"]
    return RunEvent(
        eventType=RunState(event["eventType"]),
        eventTime=event["eventTime"],
        run=Run(
            runId=event["run"]["runId"],
            facets={
                "parent": parent_run.ParentRunFacet(
                    run=parent_run.Run(runId=parent["run"]["runId"]),
                    job=parent_run.Job(namespace=parent["job"]["namespace"], name=parent["job"]["name"]),
                )
            },
        ),
        job=Job(
            namespace=event["job"]["namespace"],
            name=event["job"]["name"],
            facets={"jobType": job_type_job.JobTypeJobFacet(**job_type)},
        ),
        producer=event["producer"],
        inputs=[
            InputDataset(
                d["namespace"],
                d["name"],
                facets={
                    "schema": schema_dataset.SchemaDatasetFacet(
                        fields=[
                            schema_dataset.SchemaDatasetFacetFields(**f)
                            for f in d["facets"]["schema"]["fields"]
                        ]
                    )
                },
            )
            for d in event["inputs"]
        ],
        outputs=[OutputDataset(d["namespace"], d["name"]) for d in event["outputs"]],
    )


def bench_file_ingest(workdir: Path, count: int) -> list[str]:
    events_file = workdir / "events.jsonl"
    with events_file.open("w") as handle:
        for event in airflow_events(count):
            handle.write(json.dumps(event) + "\n")
    started = time.perf_counter()
    with events_file.open("rb") as handle:
        for number, line in enumerate(handle):
            parse_event(line, number)
    check_seconds = time.perf_counter() - started
    lake = metalake.connect(workdir / "file-lake", actor="bench")
    started = time.perf_counter()
    result = lake.lineage.ingest_file(events_file)
    ingest_seconds = time.perf_counter() - started
    assert result.new == count, result
    started = time.perf_counter()
    again = lake.lineage.ingest_file(events_file)
    again_seconds = time.perf_counter() - started
    assert again.new == 0
    rate = count / ingest_seconds
    return [
        f"- JSONL ingest, {count:,} events ({events_file.stat().st_size / 1e6:.0f} MB, {result.edges:,} edges, "
        f"{result.dataset_versions} dataset versions): **{ingest_seconds:.2f} s = {rate:,.0f} events/s** "
        f"(target >= 20,000: {rate / 20_000:.2f}x)",
        f"- of which the floor, checking and hashing each event in Python: {check_seconds:.2f} s "
        f"({check_seconds / ingest_seconds:.0%} of the ingest)",
        f"- the same file again (all {count:,} already stored, nothing written): {again_seconds:.2f} s",
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _health(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/api/v1/health", timeout=5) as response:
        loaded: dict[str, Any] = json.load(response)
        return loaded


def bench_http(workdir: Path, count: int) -> list[str]:
    import requests
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "metalake.cli", "--lake", str(workdir / "http-lake"), "serve"]
    command += ["--port", str(port), "--spool", str(workdir / "spool"), "--no-auth"]
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ)
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _health(url)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("metalake serve did not start") from None
                time.sleep(0.1)
        events = airflow_events(2 * count, seed=2)
        client = OpenLineageClient(transport=HttpTransport(HttpConfig(url=url)))
        client_events = [as_client_event(event) for event in events[:count]]
        started = time.perf_counter()
        for client_event in client_events:
            client.emit(client_event)
        client_seconds = time.perf_counter() - started
        session = requests.Session()
        started = time.perf_counter()
        for event in events[count:]:
            answer = session.post(f"{url}/api/v1/lineage", data=json.dumps(event), timeout=10)
            assert answer.status_code == 201, answer.text
        bare_seconds = time.perf_counter() - started
        sent = time.perf_counter()
        while _health(url)["committed"] < 2 * count:
            time.sleep(0.01)
        drain_seconds = time.perf_counter() - sent
        health = _health(url)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    client_rate, bare_rate = count / client_seconds, count / bare_seconds
    commits = health.get("commits", 0)
    return [
        f"- HTTP, one client, one event per request, {count:,} events each: openlineage-python HttpTransport "
        f"**{client_rate:,.0f} events/s** (target >= 500: {client_rate / 500:.2f}x); bare requests.Session "
        f"{bare_rate:,.0f} events/s",
        f"- server: 201 once spooled; {2 * count:,} events committed in {commits} group commits "
        f"({2 * count / max(commits, 1):.0f} events per commit); last commit {drain_seconds * 1000:.0f} ms after "
        "the last answer",
    ]


def bench_walk(workdir: Path, edges: int, layers: int, repeat: int) -> list[str]:
    import polars as pl

    lake = metalake.connect(workdir / "graph-lake", actor="bench")
    width = edges // (2 * layers)
    rng = random.Random(3)
    now = datetime.now(UTC)
    sources, targets = [], []
    for layer in range(1, layers + 1):
        for node in range(width):
            for _ in range(2):
                sources.append(f"dataset:ns/l{layer - 1}_{rng.randrange(width)}")
                targets.append(f"dataset:ns/l{layer}_{node}")
    frame = pl.DataFrame(
        {
            "edge_id": [f"e{i}" for i in range(len(sources))],
            "source_node": sources,
            "target_node": targets,
            "edge_type": ["input"] * len(sources),
            "event_time": [now] * len(sources),
        },
        schema_overrides={"event_time": pl.Datetime("us", "UTC")},
    )
    lake.append("lineage_edges", frame)
    node = f"dataset:ns/l{layers}_0"
    started = time.perf_counter()
    first = lake.lineage.upstream(node, depth=10)
    first_ms = (time.perf_counter() - started) * 1000
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        walked = lake.lineage.upstream(node, depth=10)
        times.append((time.perf_counter() - started) * 1000)
    warm = statistics.median(times)
    assert walked.height == first.height and walked["depth"].max() == 10
    return [
        f"- upstream walk, depth 10, graph of {len(sources):,} edges ({layers} layers of {width:,} nodes, fan-in 2; "
        f"{walked.height:,} edges reached): **median {warm:.0f} ms** over {repeat} walks (target < 200 ms: "
        f"{warm / 200:.2f} of it); first walk {first_ms:.0f} ms (computes the materialized lineage_graph view)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--http-events", type=int, default=2_000)
    parser.add_argument("--edges", type=int, default=100_000)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="metalake-bench-lineage-"))
    try:
        lines = bench_file_ingest(workdir, args.events)
        lines += bench_http(workdir, args.http_events)
        lines += bench_walk(workdir, args.edges, args.layers, args.repeat)
        load = os.getloadavg()[0]
        lines.append(f"- load average at the end: {load:.1f} (the machine is shared: figures vary with it)")
        record("Lineage: ingest, HTTP, graph walk", COMMAND, lines)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
