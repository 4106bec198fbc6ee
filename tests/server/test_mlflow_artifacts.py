"""The MLflow artifact proxy and logged models, driven by the real MLflow client against a real `metalake serve`:
files land under the lake's artifacts/ folder, each recorded in the `artifacts` table, and a logged
scikit-learn model loads back and predicts the same."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support.api_server import Server, start_server_process

import metalake

pytest.importorskip("mlflow")
pytest.importorskip("sklearn")

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"

CLIENT_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    work = Path(sys.argv[1])
    (work / "folder" / "sub").mkdir(parents=True)
    (work / "folder" / "a.txt").write_text("alpha")
    (work / "folder" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 4)
    (work / "single.csv").write_text("x,y\\n1,2\\n")

    mlflow.set_experiment("artifacts-e2e")
    features = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
    labels = np.array([0, 1, 0, 1])
    model = LogisticRegression().fit(features, labels)
    with mlflow.start_run() as run:
        mlflow.log_param("C", 1.0)
        mlflow.log_artifact(str(work / "single.csv"))
        mlflow.log_artifacts(str(work / "folder"), artifact_path="data")
        mlflow.log_text("hello lake", "notes/hello.txt")
        mlflow.log_dict({"k": [1, 2]}, "config.json")
        info = mlflow.sklearn.log_model(model, name="model")
    run_id = run.info.run_id
    client = MlflowClient()
    top = sorted((f.path, f.is_dir) for f in client.list_artifacts(run_id))
    data = sorted((f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run_id, "data"))
    downloaded = client.download_artifacts(run_id, "data", str(work / "down"))
    from_run = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    from_id = mlflow.pyfunc.load_model(f"models:/{info.model_id}")
    print(json.dumps({
        "run_id": run_id,
        "experiment_id": run.info.experiment_id,
        "model_id": info.model_id,
        "top": top,
        "data": data,
        "downloaded_b": (Path(downloaded) / "sub" / "b.bin").read_bytes().hex(),
        "downloaded_a": (Path(downloaded) / "a.txt").read_text(),
        "expected": model.predict(features).tolist(),
        "from_run": from_run.predict(features).tolist(),
        "from_id": from_id.predict(features).tolist(),
        "model_status": client.get_logged_model(info.model_id).status.to_proto(),
    }))
    """
)


def run_client(server: Server, work: Path) -> dict[str, Any]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    env.pop("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", None)
    done = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT, str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, Any]]]:
    """One server and one client session per module (the tests after the first two change what it logged)."""
    folder = tmp_path_factory.mktemp("artifacts")
    server = start_server_process(folder / "lake", folder / "spool")
    try:
        (folder / "client").mkdir()
        yield server, run_client(server, folder / "client")
    finally:
        server.stop()


def test_the_mlflow_client_logs_lists_downloads_and_loads_a_model_through_the_lake(
    logged: tuple[Server, dict[str, Any]],
) -> None:
    _, result = logged
    assert ("data", True) in [tuple(item) for item in result["top"]]
    assert {("single.csv", False), ("config.json", False), ("notes", True)} <= {
        tuple(i) for i in result["top"]
    }
    assert [tuple(item) for item in result["data"]] == [
        ("data/a.txt", False, 5),
        ("data/sub", True, None),
    ]
    assert result["downloaded_a"] == "alpha"
    assert bytes.fromhex(result["downloaded_b"]) == bytes(range(256)) * 4
    assert result["from_run"] == result["expected"]
    assert result["from_id"] == result["expected"]
    assert result["model_id"].startswith("m-") and len(result["model_id"]) == 34


def test_every_stored_file_is_a_row_of_the_artifacts_table_with_its_size_and_sha256(
    logged: tuple[Server, dict[str, Any]],
) -> None:
    server, result = logged
    run_id, experiment_id, model_id = result["run_id"], result["experiment_id"], result["model_id"]
    lake = metalake.connect(server.lake_path)
    rows = {row["name"]: row for row in lake.read("artifacts", where=f"run_id = '{run_id}'").to_dicts()}
    run_root = server.lake_path / "artifacts" / experiment_id / run_id / "artifacts"
    for name in ("single.csv", "data/a.txt", "data/sub/b.bin", "notes/hello.txt", "config.json"):
        stored = run_root / name
        content = stored.read_bytes()
        assert rows[name]["size_bytes"] == len(content), name
        assert rows[name]["sha256"] == hashlib.sha256(content).hexdigest(), name
        assert rows[name]["uri"] == stored.as_uri()
        assert rows[name]["kind"] == "file"
    model_root = server.lake_path / "artifacts" / experiment_id / "models" / model_id / "artifacts"
    assert (model_root / "MLmodel").is_file()
    model_rows = {name: row for name, row in rows.items() if name.startswith(f"models/{model_id}/")}
    assert f"models/{model_id}/MLmodel" in model_rows
    for name, row in model_rows.items():
        content = (model_root / name.removeprefix(f"models/{model_id}/")).read_bytes()
        assert (row["size_bytes"], row["sha256"], row["kind"]) == (
            len(content),
            hashlib.sha256(content).hexdigest(),
            "model",
        )
    model = lake.logged_models.get(model_id)
    assert model.artifact_location == f"mlflow-artifacts:/{experiment_id}/models/{model_id}/artifacts"
    assert (model.source_run_id, model.name, model.status) == (run_id, "model", "ready")
    assert result["model_status"] == 2  # LOGGED_MODEL_READY


@pytest.mark.parametrize(
    "path",
    [
        "{e}/{r}/artifacts/../../escape.txt",
        "{e}/{r}/artifacts/%2E%2E/%2E%2E/escape.txt",
        "{e}/elsewhere.txt",
        "{e}/{r}/notes.txt",
        "%2Fetc%2Fpasswd",
    ],
)
def test_paths_outside_a_run_or_model_folder_are_refused(
    logged: tuple[Server, dict[str, Any]], path: str
) -> None:
    server, result = logged
    url = f"{server.url}{ARTIFACTS}/" + path.format(e=result["experiment_id"], r=result["run_id"])
    answer = requests.put(url, data=b"x", timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "<experiment_id>/<run_id>/artifacts/" in answer.json()["message"]
    assert not (server.lake_path / "escape.txt").exists()
    assert not list(server.lake_path.parent.glob("**/escape.txt"))


def test_a_dot_dot_path_sent_raw_is_a_clear_400(logged: tuple[Server, dict[str, Any]]) -> None:
    server, result = logged
    session = requests.Session()
    request = requests.Request("PUT", f"{server.url}{ARTIFACTS}/x", data=b"x").prepare()
    request.url = (
        f"{server.url}{ARTIFACTS}/{result['experiment_id']}/{result['run_id']}/artifacts/../../../x.txt"
    )
    answer = session.send(request, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "'..'" in answer.json()["message"]


def test_the_proxy_answers_listing_download_delete_and_says_it_has_no_multipart(
    logged: tuple[Server, dict[str, Any]],
) -> None:
    server, result = logged
    root = f"{result['experiment_id']}/{result['run_id']}/artifacts"
    listing = requests.get(f"{server.url}{ARTIFACTS}", params={"path": f"{root}/data"}, timeout=30).json()
    assert listing == {
        "files": [{"path": "a.txt", "is_dir": False, "file_size": 5}, {"path": "sub", "is_dir": True}]
    }
    old = requests.get(
        f"{server.url}/api/2.0/mlflow/artifacts/list",
        params={"run_id": result["run_id"], "path": "data"},
        timeout=30,
    ).json()
    assert old["root_uri"] == f"mlflow-artifacts:/{root}"
    assert [f["path"] for f in old["files"]] == ["data/a.txt", "data/sub"]
    assert requests.get(f"{server.url}{ARTIFACTS}/{root}/data/a.txt", timeout=30).content == b"alpha"
    missing = requests.get(f"{server.url}{ARTIFACTS}/{root}/nothing.txt", timeout=30)
    assert (missing.status_code, missing.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert requests.delete(f"{server.url}{ARTIFACTS}/{root}/data/a.txt", timeout=30).status_code == 200
    assert requests.get(f"{server.url}{ARTIFACTS}/{root}/data/a.txt", timeout=30).status_code == 404
    info = requests.get(f"{server.url}/api/3.0/mlflow/server-info", timeout=30).json()
    assert info["multipart_uploads_enabled"] is False and info["multipart_downloads_enabled"] is False
    mpu = requests.post(
        f"{server.url}/api/2.0/mlflow-artifacts/mpu/create/{root}",
        json={"path": "big.bin", "num_parts": 2},
        timeout=30,
    )
    assert mpu.status_code == 501
    assert mpu.json()["message"].startswith("Multipart upload is not supported")


def test_a_large_upload_sent_in_chunks_is_stored_whole(logged: tuple[Server, dict[str, Any]]) -> None:
    server, result = logged
    block, count = os.urandom(1 << 20), 24
    url = f"{server.url}{ARTIFACTS}/{result['experiment_id']}/{result['run_id']}/artifacts/big/blob.bin"
    answer = requests.put(url, data=(block for _ in range(count)), timeout=120)  # chunked transfer encoding
    assert answer.status_code == 200, answer.text
    lake = metalake.connect(server.lake_path)
    row = lake.read("artifacts", where="name = 'big/blob.bin'").to_dicts()[-1]
    expected = hashlib.sha256(block * count).hexdigest()
    assert (row["size_bytes"], row["sha256"]) == (len(block) * count, expected)
    downloaded = requests.get(url, stream=True, timeout=120)
    digest = hashlib.sha256()
    for chunk in downloaded.iter_content(1 << 20):
        digest.update(chunk)
    assert digest.hexdigest() == expected


def test_an_upload_to_a_run_that_does_not_exist_is_refused(logged: tuple[Server, dict[str, Any]]) -> None:
    server, result = logged
    url = f"{server.url}{ARTIFACTS}/{result['experiment_id']}/{'0' * 32}/artifacts/x.txt"
    answer = requests.put(url, data=b"x", timeout=30)
    assert (answer.status_code, answer.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_logged_model_tags_params_search_and_delete(logged: tuple[Server, dict[str, Any]]) -> None:
    server, result = logged
    base = f"{server.url}/api/2.0/mlflow/logged-models"
    model_id = result["model_id"]
    assert requests.patch(
        f"{base}/{model_id}/tags", json={"tags": [{"key": "stage", "value": "a b"}]}, timeout=30
    ).ok
    assert requests.post(
        f"{base}/{model_id}/params", json={"params": [{"key": "depth", "value": "3"}]}, timeout=30
    ).ok
    found = requests.post(
        f"{base}/search",
        json={"experiment_ids": [result["experiment_id"]], "filter": "name = 'model' AND tags.stage = 'a b'"},
        timeout=30,
    ).json()
    assert [m["info"]["model_id"] for m in found["models"]] == [model_id]
    assert {"key": "depth", "value": "3"} in found["models"][0]["data"]["params"]
    assert requests.delete(f"{base}/{model_id}/tags/stage", timeout=30).ok
    bad = requests.post(f"{base}/search", json={"filter": "metrics.acc > 1"}, timeout=30)
    assert (bad.status_code, bad.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert requests.delete(f"{base}/{model_id}", timeout=30).ok
    gone = requests.get(f"{base}/{model_id}", timeout=30)
    assert (gone.status_code, gone.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_on_an_object_store_files_go_under_the_lake_prefix(s3_lake_uri: str, s3_server: Any) -> None:
    import io

    lake = metalake.connect(s3_lake_uri, storage_options=s3_server.storage_options)
    run_id = lake.runs.create("s3-artifacts", "r")
    body = io.BytesIO(b"on s3" * 1000)
    stored = lake.artifacts.write(f"7/{run_id}/artifacts/a/b.txt", lambda: body.read(1000))
    assert stored.uri == f"{s3_lake_uri}/artifacts/7/{run_id}/artifacts/a/b.txt"
    assert b"".join(lake.artifacts.read(f"7/{run_id}/artifacts/a/b.txt")) == b"on s3" * 1000
    assert [entry.name for entry in lake.artifacts.list(f"7/{run_id}/artifacts")] == ["a"]
    row = lake.read("artifacts").to_dicts()[0]
    assert (row["size_bytes"], row["sha256"]) == (5000, hashlib.sha256(b"on s3" * 1000).hexdigest())
