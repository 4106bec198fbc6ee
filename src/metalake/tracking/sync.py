"""Replaying the local journal: run flushes that dead or offline processes left on this machine, committed again.

Each flush goes back through the lake's commit queue (contracts, group commit, facts before run events) under
its original idempotency keys, looked up in the tables, so a flush that was committed before its process died
is skipped table by table rather than written twice.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metalake.errors import FlushError
from metalake.tracking.group_commit import QueuedFlush, queue_for
from metalake.tracking.journal import (
    abandoned_segments,
    journal_for,
    journal_root,
    lake_folder,
    pending_lakes,
)

if TYPE_CHECKING:
    from metalake.core.tables import Tables


@dataclass
class SyncReport:
    """What a replay of the lake's journal did."""

    segments: int = 0  # abandoned segments read
    flushes: int = 0  # flushes in them
    committed: int = 0  # flushes now in the lake (written now, or found written under their keys)
    runs: list[str] = field(default_factory=list)  # runs they belong to
    points: int = 0  # metric points in the committed flushes
    failed: int = 0  # flushes that could not be committed now (their segments are kept for a later sync)
    refused: int = 0  # flushes a contract refused (their segments are set aside as *.refused)
    live: int = 0  # segments of processes still running (theirs to commit)
    error: str | None = None  # why flushes failed, if they did
    other_lakes: dict[str, int] = field(default_factory=dict)  # other lakes with segments on this machine

    def plus(self, later: SyncReport) -> SyncReport:
        """Two replays as one (what `connect` replayed, then an explicit sync)."""
        return SyncReport(
            segments=self.segments + later.segments,
            flushes=self.flushes + later.flushes,
            committed=self.committed + later.committed,
            runs=sorted({*self.runs, *later.runs}),
            points=self.points + later.points,
            failed=later.failed,
            refused=self.refused + later.refused,
            live=later.live,
            error=later.error,
            other_lakes=later.other_lakes,
        )

    def summary(self) -> str:
        if not self.segments:
            text = "Nothing to sync: the local journal holds no flush of a finished process for this lake."
        else:
            text = (
                f"Committed {self.committed} flush(es) of {len(self.runs)} run(s) ({self.points} metric points) "
                f"from {self.segments} journal segment(s)."
            )
        if self.failed:
            text += (
                f" {self.failed} flush(es) could not be committed ({self.error}); they stay in the journal."
            )
        if self.refused:
            text += (
                f" {self.refused} flush(es) were refused by a contract; their segments are kept as *.refused."
            )
        if self.live:
            text += f" {self.live} segment(s) belong to processes still running; those commit their own."
        return text


def sync(tables: Tables) -> SyncReport:
    """Commit every abandoned journal segment of this lake; a segment is deleted once all its flushes are in."""
    report = SyncReport()
    root = journal_root()
    if root is None:
        return report
    scan = abandoned_segments(tables.location.uri, own=journal_for(tables.location.uri))
    report.live = scan.live
    queue = queue_for(tables)
    runs: set[str] = set()
    for segment in scan.abandoned:
        if segment.unreadable:  # written in another journal format: kept aside for a version that reads it
            report.refused += 1
            segment.release(committed=False, refused=True)
            continue
        if not segment.flushes:  # emptied by its owner once all was committed
            segment.release(committed=True)
            continue
        report.segments += 1
        report.flushes += len(segment.flushes)
        flushes = [
            QueuedFlush(item.flush_id, item.run_id, item.tables, item.points, attempts=1)  # keys may exist
            for item in segment.flushes
        ]
        for flush in flushes:
            queue.submit(flush)
        try:
            queue.wait(flushes)
        except FlushError as error:
            report.error = str(error)
        committed = [flush for flush in flushes if flush.state == "committed"]
        refused = [flush for flush in flushes if flush.state == "refused"]
        report.committed += len(committed)
        report.refused += len(refused)
        report.failed += len(flushes) - len(committed) - len(refused)
        report.points += sum(flush.points for flush in committed)
        runs.update(flush.run_id for flush in committed)
        segment.release(committed=len(committed) == len(flushes), refused=bool(refused))
    report.runs = sorted(runs)
    here = lake_folder(root, tables.location.uri)
    report.other_lakes = {
        uri: count for uri, count in pending_lakes().items() if lake_folder(root, uri) != here
    }
    return report


def replay_at_connect(tables: Tables) -> SyncReport | None:
    """At `metalake.connect`: replay abandoned segments of this lake, if any (a folder look-up otherwise).

    A replay that cannot commit leaves the segments for later and says so; it never fails the connect.
    """
    root = journal_root()
    if root is None or tables.read_only or not lake_folder(root, tables.location.uri).is_dir():
        return None
    try:
        report = sync(tables)
    except Exception as error:  # the lake opened; its journal is retried at the next connect or sync
        print(f"metalake: could not replay the local journal: {error}", file=sys.stderr)
        return None
    if report.segments and (report.failed or report.refused):
        print(f"metalake: {report.summary()}", file=sys.stderr)
    return report
