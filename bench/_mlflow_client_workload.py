"""The user side of bench_mlflow_server.py: plain MLflow client code, pointed at a server by MLFLOW_TRACKING_URI.

Nothing here imports metalake or knows which server it talks to. The bench starts this script once per server
(`python bench/_mlflow_client_workload.py` with MLFLOW_TRACKING_URI set) and sends it one JSON command per line on
stdin; each answer is one JSON line on stdout. The commands:

- `log`: `runs` runs, each started with `mlflow.start_run` in `experiment`, 5 params (`mlflow.log_params`),
  3 tags (`mlflow.set_tags`), `points` points of one metric, then ended. `mode` "batch": the points go in
  `MlflowClient.log_batch` calls of `batch` points each (one per epoch); "fluent": `mlflow.log_metric` per step.
- `load`: `runs` runs from `threads` threads, each `create_run`, one `log_batch` (5 params, 3 tags, 5 metrics x
  3 steps, values from a seeded generator, so every server gets the same data), `set_terminated`.
- `search`: `repeat` timed `MlflowClient.search_runs` with a metric filter and order, 100 results.
- `concurrent`: `processes` spawned processes, each its own client, logging fluent runs at once for `seconds`.

The only addition to the client is a counter around requests' HTTPAdapter.send: it changes nothing the client
does, and tells how many HTTP requests each command made, which of them failed, and with what.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import sys
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import requests.adapters

PARAMS, TAGS, METRICS, STEPS = 5, 3, 5, 3
SEARCH_FILTER, SEARCH_ORDER = "metrics.m0 > 0.5", "metrics.m0 DESC"


class Requests:
    """HTTP requests the client sent, counted by (method path status); thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: Counter[str] = Counter()
        self.failed: dict[str, str] = {}  # first answer of each failing request kind

    def install(self) -> None:
        original = requests.adapters.HTTPAdapter.send

        tracking_server = urlsplit(os.environ["MLFLOW_TRACKING_URI"]).netloc

        def send(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            url = urlsplit(request.url)
            if url.netloc != tracking_server:
                return original(adapter, request, *args, **kwargs)
            path = url.path
            try:
                response = original(adapter, request, *args, **kwargs)
            except Exception as error:
                self.count(f"{request.method} {path} {type(error).__name__}", str(error))
                raise
            text = response.text[:300] if response.status_code >= 400 else ""
            self.count(f"{request.method} {path} {response.status_code}", text)
            return response

        requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]

    def count(self, kind: str, detail: str) -> None:
        with self.lock:
            self.sent[kind] += 1
            if detail and kind not in self.failed:
                self.failed[kind] = detail

    def take(self) -> dict[str, Any]:
        """The counts since the last take, and the failing kinds with their first answer."""
        with self.lock:
            sent, failed = dict(self.sent), dict(self.failed)
            self.sent.clear()
            self.failed.clear()
        return {"requests": sum(sent.values()), "by_request": sent, "failed": failed}


class Errors:
    """Exceptions the client raised to the user code, counted; the first one kept."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.first: str | None = None

    def add(self, what: str, error: BaseException) -> None:
        with self.lock:
            self.count += 1
            self.first = self.first or f"{what}: {type(error).__name__}: {str(error)[:400]}"


# -- the commands ---------------------------------------------------------------------------------------------


def log_runs(command: dict[str, Any], errors: Errors) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient()
    mode, points, batch = command["mode"], command["points"], command["batch"]
    mlflow.set_experiment(command["experiment"])
    began = time.perf_counter()
    logged = 0
    for index in range(command["runs"]):
        try:
            with mlflow.start_run(run_name=f"{mode}-{command['first'] + index:04d}") as run:
                mlflow.log_params({f"p{k}": f"{random.random():.6f}" for k in range(PARAMS)})
                mlflow.set_tags({f"t{k}": f"tag-{random.randrange(4)}" for k in range(TAGS)})
                run_id = run.info.run_id
                if mode == "fluent":
                    for step in range(points):
                        try:
                            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
                            logged += 1
                        except Exception as error:
                            errors.add("log_metric", error)
                else:
                    for first in range(0, points, batch):
                        now = int(time.time() * 1000)
                        steps = range(first, min(first + batch, points))
                        metrics = [Metric("loss", 1.0 / (step + 1), now, step) for step in steps]
                        try:
                            client.log_batch(run_id, metrics=metrics)
                            logged += len(metrics)
                        except Exception as error:
                            errors.add("log_batch", error)
        except Exception as error:
            errors.add("start_run/end_run", error)
    return {"seconds": time.perf_counter() - began, "points": logged}


def load_runs(command: dict[str, Any], errors: Errors) -> dict[str, Any]:
    """The search corpus: run i has the same params, tags and metric values on every server."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient()
    experiment_id = mlflow.set_experiment(command["experiment"]).experiment_id

    def one_run(index: int) -> None:
        rng = random.Random(f"{command['seed']}-{index}")
        start_ms = 1_764_000_000_000 + index * 60_000
        try:
            run = client.create_run(experiment_id, start_time=start_ms, run_name=f"run-{index:05d}")
            metrics = [
                Metric(f"m{m}", rng.random(), start_ms + step * 1000, step)
                for step in range(STEPS)
                for m in range(METRICS)
            ]
            params = [Param(f"p{k}", f"{rng.random():.6f}") for k in range(PARAMS)]
            tags = [RunTag(f"t{k}", f"tag-{rng.randrange(4)}") for k in range(TAGS)]
            client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
            client.set_terminated(run.info.run_id, end_time=start_ms + STEPS * 1000)
        except Exception as error:
            errors.add(f"load run {index}", error)

    began = time.perf_counter()
    with ThreadPoolExecutor(command["threads"]) as pool:
        list(pool.map(one_run, range(command["runs"])))
    return {"seconds": time.perf_counter() - began, "experiment_id": experiment_id}


def search_runs(command: dict[str, Any], errors: Errors) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment_id = mlflow.get_experiment_by_name(command["experiment"]).experiment_id
    seconds, names = [], []
    for _ in range(command["repeat"]):
        began = time.perf_counter()
        try:
            found = client.search_runs(
                [experiment_id], SEARCH_FILTER, order_by=[SEARCH_ORDER], max_results=100
            )
        except Exception as error:
            errors.add("search_runs", error)
            continue
        seconds.append(time.perf_counter() - began)
        names = [run.info.run_name for run in found]
    return {"seconds": seconds, "names": names}


def concurrent_logging(command: dict[str, Any], errors: Errors) -> dict[str, Any]:
    """`processes` spawned clients log at once, started together after each has connected once."""
    import mlflow

    mlflow.set_experiment(command["experiment"])  # made once here, not raced for by the processes
    context = multiprocessing.get_context("spawn")
    ready, go, answers = context.Barrier(command["processes"] + 1), context.Event(), context.Queue()
    workers = [
        context.Process(target=logging_process, args=(index, command, ready, go, answers))
        for index in range(command["processes"])
    ]
    for worker in workers:
        worker.start()
    ready.wait(timeout=300)
    began = time.perf_counter()
    go.set()
    results = [answers.get(timeout=command["seconds"] + 300) for _ in workers]
    wall = time.perf_counter() - began
    for worker in workers:
        worker.join(timeout=60)
    for result in results:
        errors.count += result["errors"]
        errors.first = errors.first or result["first_error"]
    sent: Counter[str] = Counter()
    failed: dict[str, str] = {}
    for result in results:
        sent.update(result["by_request"])
        failed = {**result["failed"], **failed}
    return {
        "seconds": wall,
        "points": sum(result["points"] for result in results),
        "runs": sum(result["runs"] for result in results),
        "child_requests": {"requests": sum(sent.values()), "by_request": dict(sent), "failed": failed},
    }


def logging_process(index: int, command: dict[str, Any], ready: Any, go: Any, answers: Any) -> None:
    """One user process: fluent runs of `points` steps, one `log_metric` per step, until `seconds` are over."""
    counter = Requests()
    counter.install()
    errors = Errors()
    import mlflow

    mlflow.set_experiment(command["experiment"])
    ready.wait()
    go.wait()
    deadline = time.perf_counter() + command["seconds"]
    points = runs = 0
    while time.perf_counter() < deadline:
        try:
            with mlflow.start_run(run_name=f"proc{index}-{runs:03d}"):
                mlflow.log_params({f"p{k}": str(k) for k in range(PARAMS)})
                mlflow.set_tags({f"t{k}": f"worker-{index}" for k in range(TAGS)})
                for step in range(command["points"]):
                    if time.perf_counter() >= deadline:
                        break
                    try:
                        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
                        points += 1
                    except Exception as error:
                        errors.add("log_metric", error)
            runs += 1
        except Exception as error:
            errors.add("start_run/end_run", error)
    answers.put(
        {
            "points": points,
            "runs": runs,
            "errors": errors.count,
            "first_error": errors.first,
            **counter.take(),
        }
    )


COMMANDS = {"log": log_runs, "load": load_runs, "search": search_runs, "concurrent": concurrent_logging}
NAN = float("nan")
FAILED = {  # the answer of a command that raised before it could measure anything
    "log": {"seconds": NAN, "points": 0},
    "load": {"seconds": NAN, "experiment_id": None},
    "search": {"seconds": [], "names": []},
    "concurrent": {"seconds": NAN, "points": 0, "runs": 0, "child_requests": {"requests": 0, "failed": {}}},
}


def main() -> None:
    """Answer the bench's commands, one JSON line each, until stdin closes."""
    counter = Requests()
    counter.install()
    import mlflow  # imported before the first command, so no command pays for it

    # The answers keep the pipe; file descriptor 1 becomes stderr, for this process and the ones it spawns, so
    # whatever MLflow prints goes to the log, not into the answers.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    print(
        json.dumps({"ready": mlflow.__version__, "tracking_uri": os.environ["MLFLOW_TRACKING_URI"]}),
        file=answers,
        flush=True,
    )
    for line in sys.stdin:
        command = json.loads(line)
        errors = Errors()
        counter.take()
        try:
            answer = COMMANDS[command["do"]](command, errors)
        except Exception as error:  # e.g. the experiment could not be made: the command is one error
            traceback.print_exc()
            errors.add(command["do"], error)
            answer = dict(FAILED[command["do"]])
        answer.update(errors=errors.count, first_error=errors.first, **counter.take())
        print(json.dumps(answer), file=answers, flush=True)


if __name__ == "__main__":
    main()
