"""The REST API's writes answer once committed, so a server killed (SIGKILL) in the middle of a burst of
requests loses none that it acknowledged, and writes none twice when the clients retry after a restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests
from support.api_server import Server

import metalake

CLIENTS = 6


def test_a_server_killed_during_a_burst_of_run_writes_loses_no_acknowledged_one(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server()
    run_ids = [
        requests.post(f"{server.url}/api/v1/runs", json={"experiment": "burst"}, timeout=30).json()["run_id"]
        for _ in range(CLIENTS)
    ]
    acknowledged: list[list[int]] = [[] for _ in range(CLIENTS)]
    stop = threading.Event()

    def client(index: int) -> None:
        with requests.Session() as http:
            step = 0
            while not stop.is_set():
                body = {"metrics": [{"key": "loss", "value": 1 / (step + 1), "step": step}]}
                headers = {"Idempotency-Key": f"{index}-{step}"}
                try:
                    answer = http.post(
                        f"{server.url}/api/v1/runs/{run_ids[index]}/log",
                        json=body,
                        headers=headers,
                        timeout=10,
                    )
                except requests.RequestException:
                    return  # the server is gone: this request was never acknowledged
                if answer.status_code == 200:
                    acknowledged[index].append(step)
                step += 1

    threads = [threading.Thread(target=client, args=(index,)) for index in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    server.process.kill()  # SIGKILL mid-burst
    server.process.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(len(steps) for steps in acknowledged) > 20, "the burst was under way"

    lake = metalake.connect(server.lake_path, actor="tester")
    for index, run_id in enumerate(run_ids):
        stored = {
            step for (step,) in lake.sql("select step from metrics where run_id = ?", [run_id]).fetchall()
        }
        assert set(acknowledged[index]) <= stored, f"client {index} lost acknowledged points"

    # Clients retry their last request (maybe committed, maybe not) against a restarted server: written once.
    restarted = start_server(lake_path=server.lake_path)
    for index, run_id in enumerate(run_ids):
        step = (acknowledged[index] or [0])[-1] + 1
        body = {"metrics": [{"key": "loss", "value": 1 / (step + 1), "step": step}]}
        for _ in range(2):
            answer = requests.post(
                f"{restarted.url}/api/v1/runs/{run_id}/log",
                json=body,
                headers={"Idempotency-Key": f"{index}-{step}"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
    restarted.stop()
    duplicates = lake.sql(
        "select run_id, step, count(*) from metrics group by run_id, step having count(*) > 1"
    ).fetchall()
    assert duplicates == []
