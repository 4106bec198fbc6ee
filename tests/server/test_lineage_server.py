"""`metalake serve` as a real uvicorn process on 127.0.0.1, fed by the real openlineage-python HttpTransport."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import requests
from openlineage.client import OpenLineageClient
from openlineage.client.serde import Serde
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpCompression, HttpConfig, HttpTransport
from support.api_server import Server, free_port
from support.openlineage_samples import airflow_dag, spark_events

import metalake

TOKEN = "s3cret-token"


def client_for(server: Server, **options: Any) -> OpenLineageClient:
    return OpenLineageClient(transport=HttpTransport(HttpConfig(url=server.url, **options)))


def test_http_transport_with_gzip_and_bearer_token(start_server: Callable[..., Server]) -> None:
    server = start_server("--token", TOKEN)
    client = client_for(server, compression=HttpCompression.GZIP, auth=ApiKeyTokenProvider({"apiKey": TOKEN}))
    events = airflow_dag() + spark_events()
    for event in events:
        client.emit(event)  # raises on any answer but 2xx
    server.wait_committed(len(events))
    lake = metalake.connect(server.lake_path)
    assert lake.read("lineage_events").height == len(events)
    states = lake.sql(
        "select state, count(*) from pipeline_runs_current group by all order by all"
    ).fetchall()
    assert states == [("COMPLETE", 4)]
    assert set(lake.read("lineage_events")["recorded_by"]) == {"server"}
    server.stop()


def test_answers_201_400_and_401(start_server: Callable[..., Server]) -> None:
    server = start_server("--token", TOKEN)
    url = f"{server.url}/api/v1/lineage"
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    event = Serde.to_dict(airflow_dag()[0])

    accepted = requests.post(url, data=json.dumps(event), headers=auth, timeout=10)
    assert accepted.status_code == 201 and accepted.json()["accepted"] == 1

    batch = [Serde.to_dict(e) for e in airflow_dag()]
    zipped = gzip.compress(json.dumps(batch).encode())
    listed = requests.post(url, data=zipped, headers={**auth, "Content-Encoding": "gzip"}, timeout=10)
    assert listed.status_code == 201 and listed.json()["accepted"] == 4

    invalid = requests.post(url, data=json.dumps({**event, "eventType": "DONE"}), headers=auth, timeout=10)
    assert invalid.status_code == 400
    assert (
        invalid.json()["error"]["code"] == "invalid_event" and "'DONE'" in invalid.json()["error"]["message"]
    )
    owners = {"ownership": {"owners": [{"name": 7}]}}
    poison = {**event, "job": {**event["job"], "facets": {**event["job"].get("facets", {}), **owners}}}
    refused = requests.post(url, data=json.dumps(poison), headers=auth, timeout=10)
    assert (
        refused.status_code == 400 and "owners[0].name must be a string" in refused.json()["error"]["message"]
    )
    garbage = requests.post(url, data=b"{oops", headers=auth, timeout=10)
    assert garbage.status_code == 400 and "not valid JSON" in garbage.json()["error"]["message"]

    unauthorized = requests.post(url, data=json.dumps(event), timeout=10)
    assert unauthorized.status_code == 401
    server.stop()
    assert metalake.connect(server.lake_path).read("lineage_events").height == 5


def test_ack_committed_answers_after_the_commit(start_server: Callable[..., Server]) -> None:
    server = start_server("--ack", "committed")
    client = client_for(server)
    for event in spark_events():
        client.emit(event)
    lake = metalake.connect(server.lake_path)  # no waiting: every answered event is committed
    assert lake.read("lineage_events").height == len(spark_events())
    server.stop()


def test_spooled_events_survive_a_killed_server(start_server: Callable[..., Server], tmp_path: Path) -> None:
    server = start_server("--commit-interval", "600")  # nothing is committed while it runs
    client = client_for(server)
    events = airflow_dag()
    for event in events:
        client.emit(event)
    assert server.health()["queued"] == len(events)
    server.process.kill()  # SIGKILL: no shutdown, no commit
    server.process.wait(timeout=10)
    lake = metalake.connect(server.lake_path)
    assert lake.read("lineage_events").height == 0
    (segment,) = (tmp_path / "spool").glob("*.jsonl")
    with segment.open("a") as handle:
        handle.write('{"eventType": "START", "eventTime": "2026-')  # a write cut short by the kill

    restarted = start_server(lake_path=server.lake_path)  # replays the spool before serving
    assert lake.read("lineage_events").height == len(events)
    assert list((tmp_path / "spool").glob("*.jsonl")) == []
    runs = lake.read("pipeline_runs").select(pl.col("run_id").n_unique()).item()
    assert runs == 2
    restarted.stop()


def test_concurrent_clients_share_group_commits(start_server: Callable[..., Server]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = start_server("--ack", "committed", "--commit-interval", "0.2")
    events = [Serde.to_dict(event) for _ in range(10) for event in airflow_dag()]
    url = f"{server.url}/api/v1/lineage"

    def send(event: dict[str, Any]) -> int:
        return requests.post(url, json=event, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert set(pool.map(send, events)) == {201}
    health = server.health()
    assert health["committed"] == len(events) and health["commits"] < len(events) / 2
    server.stop()


def test_a_poison_event_is_dead_lettered_and_later_events_commit(
    lake: metalake.Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metalake.core.tables import Tables
    from metalake.lineage.openlineage.events import parse_event
    from metalake.server.spool import GroupCommitter

    good = [parse_event(Serde.to_dict(event)) for event in airflow_dag()]
    poison = parse_event(Serde.to_dict(spark_events()[0]))
    prepare = Tables.prepare

    def fails_on_poison(self: Tables, table: str, data: Any, **kwargs: Any) -> Any:
        if table == "lineage_events" and poison.event_id in list(data["event_id"]):
            raise TypeError("unhashable type: 'list'")  # a row that cannot be built
        return prepare(self, table, data, **kwargs)

    monkeypatch.setattr(Tables, "prepare", fails_on_poison)
    spool = tmp_path / "spool"
    spool.mkdir()
    # a spool left by a stopped server, poison inside: the server still starts
    (spool / "1.jsonl").write_text(good[0].canonical + "\n" + poison.canonical + "\n")
    committer = GroupCommitter(lake, spool, commit_interval=0.05)
    committer.start()
    assert lake.read("lineage_events").height == 1
    committer.submit([good[1], poison])
    waiter = committer.submit(good[2:], wait=True)
    assert waiter is not None
    with pytest.raises(metalake.MetalakeError, match="dead-letter"):
        waiter.result(timeout=30)  # its segment held the poison event
    committer.stop()
    stored = set(lake.read("lineage_events")["event_id"])
    assert stored == {event.event_id for event in good}
    dead = (spool / "dead-letter" / "events.jsonl").read_text().splitlines()
    assert dead == [poison.canonical, poison.canonical]
    reasons = (spool / "dead-letter" / "reasons.jsonl").read_text()
    assert "TypeError" in reasons and committer.dead_letters == 2
    assert list(spool.glob("*.jsonl")) == []


def test_a_transient_failure_keeps_the_events_for_a_retry(
    lake: metalake.Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metalake.core.tables import Tables
    from metalake.errors import StorageError
    from metalake.lineage.openlineage.events import parse_event
    from metalake.server.spool import GroupCommitter

    events = [parse_event(Serde.to_dict(event)) for event in airflow_dag()]
    commit = Tables.commit
    failures = [StorageError("the store is away")]

    def fails_once(self: Tables, table: str, *args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return commit(self, table, *args, **kwargs)

    monkeypatch.setattr(Tables, "commit", fails_once)
    committer = GroupCommitter(lake, tmp_path / "spool", commit_interval=0.05)
    committer.start()
    committer.submit(events)
    committer.stop()
    assert lake.read("lineage_events").height == len(events)
    assert committer.dead_letters == 0 and not (tmp_path / "spool" / "dead-letter").exists()


def test_oversized_bodies_gzip_bombs_and_deep_nesting_are_refused(
    start_server: Callable[..., Server],
) -> None:
    from metalake.server.payload import MAX_PAYLOAD_BYTES

    server = start_server()
    url = f"{server.url}/api/v1/lineage"
    json_headers = {"Content-Type": "application/json"}
    too_big = requests.post(url, data=b" " * (MAX_PAYLOAD_BYTES + 1), headers=json_headers, timeout=30)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"

    bomb = gzip.compress(b" " * (MAX_PAYLOAD_BYTES + 1024))  # a few KB that inflate past the cap
    assert len(bomb) < 100_000
    inflated = requests.post(url, data=bomb, headers={**json_headers, "Content-Encoding": "gzip"}, timeout=30)
    assert inflated.status_code == 413

    event = Serde.to_dict(airflow_dag()[0])
    for depth in (100_000, 900):
        deep = {**event, "run": {**event["run"], "facets": {"x": {"y": "[" * depth + "]" * depth}}}}
        nested = json.dumps(deep).replace('"[', "[").replace(']"', "]")
        refused = requests.post(url, data=nested, headers=json_headers, timeout=30)
        assert refused.status_code in (201, 400), (depth, refused.text)
        if depth == 100_000:
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_event"
    assert requests.post(url, json=event, timeout=10).status_code == 201
    server.stop()


def test_bearer_token_any_case_and_health_shows_the_lake_only_with_it(
    start_server: Callable[..., Server],
) -> None:
    server = start_server("--token", TOKEN)
    url = f"{server.url}/api/v1/lineage"
    event = Serde.to_dict(airflow_dag()[0])
    for scheme in ("bearer", "BEARER", "Bearer"):
        answer = requests.post(url, json=event, headers={"Authorization": f"{scheme} {TOKEN}"}, timeout=10)
        assert answer.status_code == 201, scheme
    for wrong in (f"Basic {TOKEN}", "Bearer nope", TOKEN, f"Bearer {TOKEN}x"):
        assert requests.post(url, json=event, headers={"Authorization": wrong}, timeout=10).status_code == 401
    assert server.health()["lake"] is None
    with_token = requests.get(
        f"{server.url}/api/v1/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ).json()
    assert with_token["lake"] == str(metalake.connect(server.lake_path).uri)
    server.stop()


def test_a_second_server_on_the_same_spool_refuses_to_start(
    lake: metalake.Lake, tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    from metalake.server.spool import GroupCommitter

    first = GroupCommitter(lake, tmp_path / "shared")
    first.start()
    second = GroupCommitter(lake, tmp_path / "shared")
    with pytest.raises(metalake.MetalakeError, match="Another metalake server uses the spool folder"):
        second.start()
    first.stop()
    second.start()  # free again once the first stopped
    second.stop()

    running = start_server()  # spool: tmp_path / "spool"
    command = [sys.executable, "-m", "metalake.cli", "--lake", str(running.lake_path), "serve"]
    command += ["--port", str(free_port()), "--spool", str(tmp_path / "spool"), "--no-auth"]
    refused = subprocess.run(command, capture_output=True, timeout=60, text=True)
    assert refused.returncode != 0
    assert "Another metalake server uses the spool folder" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    running.stop()


def test_event_times_that_cannot_be_stored_get_400_not_a_dead_letter(
    start_server: Callable[..., Server],
) -> None:
    server = start_server("--token", TOKEN, "--ack", "committed")
    url = f"{server.url}/api/v1/lineage"
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    events = [Serde.to_dict(e) for e in airflow_dag()]
    assert requests.post(url, data=json.dumps(events), headers=auth, timeout=30).status_code == 201
    for moment in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"):
        refused = requests.post(
            url, data=json.dumps({**events[0], "eventTime": moment}), headers=auth, timeout=10
        )
        assert refused.status_code == 400, refused.text
        assert (
            refused.json()["error"]["code"] == "invalid_event"
            and "accepted: from 1900" in refused.json()["error"]["message"]
        )
    server.stop()
    assert metalake.connect(server.lake_path).read("lineage_events").height == len(events)
    assert not (server.lake_path.parent / "spool" / "dead-letter" / "events.jsonl").exists()


def test_a_server_killed_during_a_burst_loses_no_acknowledged_event(
    start_server: Callable[..., Server],
) -> None:
    """Four clients post distinct events as fast as they can; the server is SIGKILLed in the middle. Every event
    that got a 201 is in the lake after the restart (the spool replays), once."""
    import threading
    import uuid

    server = start_server()
    url = f"{server.url}/api/v1/lineage"
    template = Serde.to_dict(airflow_dag()[0])
    acknowledged: list[str] = []
    stop = threading.Event()

    def send_until_refused() -> None:
        session = requests.Session()
        while not stop.is_set():
            event = json.loads(json.dumps(template))
            event["run"]["runId"] = str(uuid.uuid4())
            try:
                answer = session.post(url, json=event, timeout=10)
            except requests.RequestException:
                return  # the server is gone
            if answer.status_code == 201:
                acknowledged.append(event["run"]["runId"])

    clients = [threading.Thread(target=send_until_refused) for _ in range(4)]
    for client in clients:
        client.start()
    time.sleep(1.5)
    server.process.kill()  # SIGKILL in the middle of the burst
    server.process.wait(timeout=10)
    stop.set()
    for client in clients:
        client.join(timeout=30)
    assert len(acknowledged) > 20, "the burst was under way when the server was killed"

    restarted = start_server(lake_path=server.lake_path)  # replays the spool before serving
    lake = metalake.connect(server.lake_path)
    stored = lake.sql("select run_id, count(*) from lineage_events group by run_id").fetchall()
    counts = dict(stored)
    missing = [run_id for run_id in acknowledged if run_id not in counts]
    assert missing == [], f"{len(missing)} acknowledged event(s) lost"
    assert max(counts.values()) == 1, "an event was stored twice"
    restarted.stop()
