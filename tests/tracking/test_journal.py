"""The local journal: frames that survive a kill mid-write, replays that write nothing twice, live owners left
alone, offline runs, the size limit and a full disk."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.workers import SPAWN, log_a_run_then_hang, log_offline, run_in_processes

import metalake
from metalake import OfflineLakeError
from metalake.tracking.group_commit import QueuedFlush
from metalake.tracking.journal import Journal, decode, frame, lake_folder


def segments(journal: Path) -> list[Path]:
    return sorted(journal.glob("*/*.journal"))


def a_flush(number: int) -> QueuedFlush:
    import pyarrow as pa

    points = pa.table({"run_id": ["r"] * 3, "key": ["loss"] * 3, "value": [0.1, 0.2, 0.3], "step": [0, 1, 2]})
    events = [{"run_id": "r", "status": "running", "event_id": f"f{number}:running", "git_dirty": None}]
    return QueuedFlush(f"r:s:{number}", "r", {"metrics": points, "runs": events}, points=3)


def test_a_frame_cut_short_by_a_kill_is_dropped_and_the_frames_before_it_are_kept() -> None:
    frames = [frame(a_flush(n)) for n in range(3)]
    whole = b"".join(frames)

    assert [flush.flush_id for flush in decode(whole)] == ["r:s:0", "r:s:1", "r:s:2"]
    assert [flush.flush_id for flush in decode(whole[:-5])] == ["r:s:0", "r:s:1"]
    damaged = bytearray(whole)
    damaged[len(frames[0]) + 30] ^= 0xFF
    assert [flush.flush_id for flush in decode(bytes(damaged))] == ["r:s:0"]
    back = decode(whole)[1]
    assert back.tables["runs"] == [
        {"run_id": "r", "status": "running", "event_id": "f1:running", "git_dirty": None}
    ]
    assert back.tables["metrics"].column("value").to_pylist() == [0.1, 0.2, 0.3]
    assert back.points == 3


def test_a_frame_keeps_chunked_tables_empty_tables_times_and_the_schema_metadata_free() -> None:
    import pyarrow as pa

    flush = a_flush(1)
    chunked = pa.concat_tables([flush.tables["metrics"], flush.tables["metrics"]])
    when = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    flush.tables = {
        "metrics": chunked,
        "params": pa.table({"run_id": pa.array([], pa.string()), "key": pa.array([], pa.string())}),
        "runs": [{"run_id": "r", "event_time": when}],
    }

    (back,) = decode(frame(flush))

    assert back.tables["metrics"].equals(chunked)
    assert back.tables["params"].num_rows == 0 and back.tables["params"].schema.names == ["run_id", "key"]
    assert back.tables["runs"] == [{"run_id": "r", "event_time": when}]


def test_a_segment_is_emptied_once_every_flush_in_it_is_committed_and_deleted_at_exit(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", "/some/lake", limit=1 << 20)
    first, second = a_flush(1), a_flush(2)
    journal.record(first)
    journal.record(second)
    segment = journal.segment
    assert segment is not None and segment.exists() and first.journal is journal
    journal.settled(first)
    assert segment.exists()
    journal.settled(second)
    assert segment.exists() and decode(segment.read_bytes()) == [], "emptied, kept open for the next flush"
    journal.record(a_flush(3))
    assert journal.segment == segment and [f.flush_id for f in decode(segment.read_bytes())] == ["r:s:3"]
    journal.close()
    assert segment.exists(), "a flush not committed yet stays for a replay"
    again = Journal(tmp_path / "j", "/some/lake", limit=1 << 20)
    flush = a_flush(4)
    again.record(flush)
    again.settled(flush)
    again.close()
    [left] = (tmp_path / "j").glob("*.journal")
    assert again.segment is None and [flush.flush_id for flush in decode(left.read_bytes())] == ["r:s:3"]
    assert left.stat().st_size == len(frame(a_flush(3))), "no space allocated ahead is left behind"
    assert (tmp_path / "j" / "lake-uri").read_text() == "/some/lake\n"


def test_a_replay_writes_nothing_twice_and_a_live_owner_is_left_alone(tmp_path: Path) -> None:
    uri, journal = str(tmp_path / "lake"), tmp_path / "journal"
    metalake.connect(uri, actor="tester").close()
    results = SPAWN.Queue()
    child = SPAWN.Process(target=log_a_run_then_hang, args=(uri, results), daemon=True)
    child.start()
    try:
        run_id = results.get(timeout=120)  # the run's flush is journaled, its commit held back
        lake = metalake.connect(uri, actor="tester")
        report = lake.runs.sync()
        assert (report.segments, report.live) == (0, 1), "a live process's segment is its own to commit"
        assert lake.sql("select count(*) from runs").fetchall() == [(0,)]
        kept = segments(journal)
        assert len(kept) == 1
        saved = kept[0].read_bytes()
    finally:
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(timeout=30)

    lake = metalake.connect(uri, actor="tester")
    assert lake.replayed_at_connect is not None and lake.replayed_at_connect.committed == 1
    assert segments(journal) == []
    versions = {spec.name: lake.sql(f"select count(*) from {spec.name}").fetchall() for spec in lake.tables()}
    kept[0].write_bytes(saved)  # the same segment again, as if a second machine-local replay found it
    again = metalake.connect(uri, actor="tester")
    assert again.replayed_at_connect is not None and again.replayed_at_connect.committed == 1
    assert {
        spec.name: again.sql(f"select count(*) from {spec.name}").fetchall() for spec in again.tables()
    } == versions
    assert again.sql("select status from runs_current where run_id = ?", [run_id]).fetchall() == [
        ("finished",)
    ]


def test_an_offline_run_touches_no_storage_and_sync_commits_it_later(
    tmp_path: Path, s3_server: object
) -> None:
    from conftest import S3Server

    assert isinstance(s3_server, S3Server)
    uri = f"s3://{s3_server.create_bucket()}/lake"
    unreachable = {**s3_server.storage_options, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # nothing listens

    [run_id] = run_in_processes(log_offline, [(uri, unreachable, None)])

    assert len(segments(tmp_path / "journal")) == 1
    offline = metalake.connect(uri, storage_options=unreachable, offline=True)
    with pytest.raises(OfflineLakeError, match="opened offline"):
        offline.sql("select * from runs_current")
    lake = metalake.connect(uri, storage_options=s3_server.storage_options, actor="tester")  # replays it
    assert lake.sql("select status from runs_current where run_id = ?", [run_id]).fetchall() == [
        ("finished",)
    ]
    assert lake.sql("select count(*), count(distinct step) from metrics").fetchall() == [(30, 30)]
    assert segments(tmp_path / "journal") == []


def test_the_journal_refuses_to_grow_beyond_its_limit_with_a_clear_error(tmp_path: Path) -> None:
    [answer] = run_in_processes(log_offline, [(str(tmp_path / "lake"), None, "16K")])

    assert answer.startswith("JournalFull: The local journal for the lake at")
    assert "beyond its limit of 16,384 bytes (METALAKE_JOURNAL_MAX_BYTES)" in answer
    assert "metalake sync" in answer
    assert sum(path.stat().st_size for path in segments(tmp_path / "journal")) <= 16 * 1024


JOB_ON_A_FULL_DISK = """
import sys, metalake
lake = metalake.connect(sys.argv[1], offline=True)
run = lake.runs.start(experiment="full-disk")
try:
    for step in range(100_000):
        run.log_metrics({"loss": 1 / (step + 1), "acc": 0.5}, step=step)
        if step % 100 == 0:
            run.flush()
except metalake.JournalFull as error:
    print(error)
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) to mount a small tmpfs")
def test_a_full_disk_under_the_journal_gives_the_same_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "small"
    folder.mkdir()
    script = f'mount -t tmpfs -o size=64k tmpfs {folder} && exec {sys.executable} -c "$0" {tmp_path / "lake"}'
    found = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, JOB_ON_A_FULL_DISK],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "METALAKE_JOURNAL": str(folder / "journal")},
    )
    if "mount" in found.stderr and found.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {found.stderr.strip()}")
    assert found.returncode == 0, found.stderr
    assert "The disk holding the local journal" in found.stdout
    assert "is full" in found.stdout and "METALAKE_JOURNAL" in found.stdout


def test_with_the_journal_off_nothing_is_written_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METALAKE_JOURNAL", "off")
    lake = metalake.connect(tmp_path / "lake", actor="tester")
    with lake.runs.start(experiment="no-journal") as run:
        run.log_metric("loss", 0.5)
    lake.runs.wait()
    assert not (tmp_path / "journal").exists()
    assert lake.sql("select status from runs_current").fetchall() == [("finished",)]
    with pytest.raises(metalake.RunError, match="METALAKE_JOURNAL=off"):
        lake.runs.start(experiment="x", offline=True)


def test_a_lake_folder_is_named_by_its_uri(tmp_path: Path) -> None:
    assert lake_folder(tmp_path, "s3://a/lake") != lake_folder(tmp_path, "s3://b/lake")
    assert lake_folder(tmp_path, "s3://a/lake") == lake_folder(tmp_path, "s3://a/lake")


def test_a_segment_in_a_format_this_version_cannot_read_is_set_aside_not_deleted(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    lake = metalake.connect(uri, actor="tester")
    folder = lake_folder(tmp_path / "journal", uri)
    folder.mkdir(parents=True)
    (folder / "lake-uri").write_text(uri + "\n")
    (folder / "1-old.journal").write_bytes(b"MLJ1" + bytes(60))

    report = lake.runs.sync()

    assert report.refused == 1 and report.committed == 0
    assert [path.name for path in folder.iterdir() if path.name != "lake-uri"] == ["1-old.refused"]
