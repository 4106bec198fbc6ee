"""The metalake error hierarchy: one root, typed fields, messages that say how to fix it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


class MetalakeError(Exception):
    """Root of every error metalake raises on purpose; the CLI prints these without a traceback."""

    code = "metalake_error"


class TransientError(MetalakeError):
    """Marker base of the failures that may pass when retried (storage, lost commit races); callers that
    retry decide by `isinstance(error, TransientError)`, never by the concrete class."""

    code = "transient_error"


class CommitFailed(TransientError):
    """A Delta commit, table creation or log read did not go through (lost races, a refused commit)."""

    code = "commit_failed"


@dataclass(frozen=True)
class ContractFailure:
    """One failing check of a contract: which column, which check, how many rows, a few of them."""

    column: str | None
    check: str
    failing_rows: int
    sample: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        where = f"column {self.column!r}" if self.column else "batch"
        rows = "row" if self.failing_rows == 1 else "rows"
        text = f"{where}: {self.check} ({self.failing_rows} {rows})"
        if self.sample:
            shown = "; ".join(_format_sample_row(row) for row in self.sample)
            text += f"\n      e.g. {shown}"
        return text


def _format_sample_row(row: dict[str, Any]) -> str:
    return ", ".join(f"{key}={_format_value(value)}" for key, value in row.items())


def _format_value(value: Any) -> str:
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ContractError(MetalakeError, ValueError):
    """A batch broke its table's contract; nothing was written."""

    code = "contract_violation"

    def __init__(
        self, table: str, failures: Sequence[ContractFailure], *, refused: str = "batch", outcome: str = ""
    ):
        self.table = table
        self.failures = list(failures)
        lines = [f"Refused {refused} for table {table!r}: {len(self.failures)} contract check(s) failed."]
        lines += [f"  - {failure.describe()}" for failure in self.failures]
        lines.append(
            f"{outcome or 'Nothing was written.'} Fix the {'rows' if refused == 'batch' else 'values'} above, "
            f"or see the contract with `metalake describe {table}`."
        )
        super().__init__("\n".join(lines))


class TableNotFound(MetalakeError, KeyError):
    """A table name that the lake's catalog does not know."""

    code = "table_not_found"

    def __init__(self, name: str, known: Iterable[str]):
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"Unknown table {name!r}. Known tables: {', '.join(self.known)}. "
            "Add your own with a spec folder: metalake.connect(..., extra_specs='my_tables/')."
        )

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])


class SpecError(MetalakeError, ValueError):
    """A table spec (YAML) that cannot be understood."""

    code = "invalid_spec"


class SchemaEvolutionError(MetalakeError):
    """A spec change that existing data cannot follow (type change, dropped column, nullable to required)."""

    code = "breaking_schema_change"

    def __init__(self, table: str, changes: Sequence[str]):
        self.table = table
        self.changes = list(changes)
        bullet_list = "\n".join(f"  - {change}" for change in self.changes)
        super().__init__(
            f"The new spec for table {table!r} is a breaking change:\n{bullet_list}\n"
            "Existing rows and readers depend on the old schema. Keep the old column and add a new nullable "
            "one instead, or create a new table (e.g. with a `_v2` suffix) and migrate the data into it."
        )


class ReadOnlyLakeError(MetalakeError):
    """A write attempted on a lake opened at a past moment (`lake.as_of(...)`)."""

    code = "read_only"


class SnapshotNotFound(MetalakeError, KeyError):
    """A snapshot name that was never pinned."""

    code = "snapshot_not_found"

    def __init__(self, name: str, known: Iterable[str]):
        self.name = name
        self.known = sorted(known)
        listing = (
            ", ".join(self.known) if self.known else "none yet (create one with `metalake snapshot NAME`)"
        )
        super().__init__(f"Unknown snapshot {name!r}. Known snapshots: {listing}.")

    def __str__(self) -> str:
        return str(self.args[0])


class SnapshotExists(MetalakeError):
    """A snapshot name is already taken; snapshots are immutable."""

    code = "snapshot_exists"


class StorageError(TransientError):
    """The lake's storage could not be reached or used (bad URI, missing bucket, unreachable endpoint)."""

    code = "storage_error"


class LakeNotFound(StorageError):
    """No lake at the URI, and the caller asked not to create one (`connect(uri, create=False)`)."""

    code = "lake_not_found"

    def __init__(self, uri: str):
        self.uri = uri
        super().__init__(
            f"No lake at {uri}; nothing was created there. Check the path (--lake or $METALAKE_URI), or create "
            "the lake first: `metalake init` or `metalake.connect(uri)`."
        )


class QueryError(MetalakeError):
    """A SQL query or a filter expression that DuckDB or polars refused."""

    code = "query_error"


class ViewError(MetalakeError):
    """A view definition in `sql/` that cannot be created."""

    code = "view_error"


class IngestError(MetalakeError):
    """A file given to `metalake ingest` that cannot be read."""

    code = "ingest_error"


class RunError(MetalakeError):
    """A run used in a way its state does not allow (logging after end, unknown run id, ...)."""

    code = "run_error"


class FlushError(MetalakeError):
    """Queued run flushes could not be committed; they are retried at the next flush or wait, under their keys."""

    code = "flush_error"


class RegistryError(MetalakeError, ValueError):
    """A registry operation that cannot be done as asked (unknown run, bad stage, alias, ...)."""

    code = "registry_error"


class ModelNotFound(MetalakeError, KeyError):
    """No such model, version or alias in the registry."""

    code = "model_not_found"

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PolicyError(MetalakeError, ValueError):
    """A governance policy file that cannot be used (unknown stage or rule, bad value)."""

    code = "invalid_policy"


@dataclass(frozen=True)
class RuleFailure:
    """One governance rule that a stage transition breaks, and why."""

    rule: str
    reason: str


class PolicyViolation(MetalakeError):
    """A stage transition breaks governance rules; nothing was written."""

    code = "policy_violation"

    def __init__(self, model: str, version: int, stage: str, failures: Sequence[RuleFailure], hint: str = ""):
        self.model, self.version, self.stage = model, version, stage
        self.failures = list(failures)
        lines = [
            f"Refused: moving {model} version {version} to {stage!r} breaks {len(self.failures)} policy rule(s):"
        ]
        lines += [f"  - {failure.rule}: {failure.reason}" for failure in self.failures]
        lines.append(hint or "Nothing was written. Fix what the rules ask for, then try again.")
        super().__init__("\n".join(lines))

    @property
    def rules(self) -> list[str]:
        return [failure.rule for failure in self.failures]


class DatasetNotFound(MetalakeError, KeyError):
    """A dataset name, or a version of it, that the lake does not hold."""

    code = "dataset_not_found"

    def __init__(self, name: str, known: Iterable[str], version: int | None = None):
        self.name = name
        self.version = version
        self.known = sorted(known)
        if version is not None:
            listing = ", ".join(str(v) for v in self.known) or "none"
            message = (
                f"Dataset {name!r} has no version {version}. Its versions: {listing}. "
                f"See them with `metalake datasets history {name}`."
            )
        else:
            listing = ", ".join(self.known) if self.known else "none yet"
            message = (
                f"Unknown dataset {name!r}. Known datasets: {listing}. "
                "Register one with `metalake datasets register NAME PATH`."
            )
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


class DatasetError(MetalakeError, ValueError):
    """Data that cannot be registered or read: a missing path, unreadable or mixed-schema files, no rows."""

    code = "dataset_error"


class SuiteError(MetalakeError, ValueError):
    """An expectation suite or pandera schema that cannot be used; nothing was validated or recorded."""

    code = "invalid_suite"


class MissingExtraError(MetalakeError, ImportError):
    """An optional package that a feature needs is not installed."""

    code = "missing_extra"


class DeploymentError(MetalakeError):
    """A deployment recorded or ended in a way the deployment history does not allow."""

    code = "deployment_error"


class DeploymentNotFound(DeploymentError, KeyError):
    """A deployment id that was never recorded."""

    code = "deployment_not_found"

    def __str__(self) -> str:
        return str(self.args[0])


class KpiError(MetalakeError, ValueError):
    """A KPI definition or observation that cannot be recorded as given."""

    code = "kpi_error"


class KpiNotFound(KpiError, KeyError):
    """A KPI name that was never defined; the message lists the defined ones."""

    code = "kpi_not_found"

    def __init__(self, names: Iterable[str], known: Iterable[str]):
        self.names = sorted(names)
        self.known = sorted(known)
        listing = ", ".join(self.known) if self.known else "none yet"
        unknown = ", ".join(repr(name) for name in self.names)
        super().__init__(
            f"Unknown KPI(s) {unknown}. Defined KPIs: {listing}. "
            "Define it first: lake.kpis.define(name, unit=..., direction=...) or `metalake kpis define`."
        )

    def __str__(self) -> str:
        return str(self.args[0])


class LineageError(MetalakeError, ValueError):
    """A lineage request that cannot be answered or done as asked (bad node id, unreadable event file, ...)."""

    code = "lineage_error"


class InvalidEvent(LineageError):
    """An OpenLineage event that breaks the spec; the whole batch it came in was refused, nothing was written."""

    code = "invalid_event"

    def __init__(self, position: int, reason: str, *, source: str = "batch"):
        self.position = position
        self.reason = reason
        self.source = source
        where = (
            f"on line {position + 1} of the {source}"
            if source.startswith("file")
            else f"#{position + 1} of the {source}"
        )
        super().__init__(
            f"Refused OpenLineage event {where}: {reason}. Nothing was written. "
            "Fix or drop that event (spec: https://openlineage.io/spec/2-0-2/OpenLineage.json) and send "
            "the batch again; events already stored are not written twice."
        )


class VersionClaimConflict(LineageError, TransientError):
    """Concurrent writers kept taking the dataset version numbers this ingest claimed: sending again may pass."""

    code = "version_claim_conflict"


class PayloadTooLarge(InvalidEvent):
    """A request body larger than the server takes (HTTP 413)."""

    code = "payload_too_large"

    def __init__(self, max_bytes: int, *, source: str = "request"):
        super().__init__(
            0,
            f"the body is larger than {max_bytes // (1024 * 1024)} MiB (uncompressed): "
            "send the events in several requests",
            source=source,
        )


class NotADemoLake(MetalakeError):
    """`metalake demo` was pointed at a folder or lake it must not write to (nothing was written)."""

    code = "not_a_demo_lake"

    def __init__(self, uri: str, reason: str):
        self.uri, self.reason = uri, reason
        super().__init__(
            f"metalake demo will not write to {uri}: {reason}. The demo writes sample datasets, a lake-wide "
            "policy, deployments and KPIs, so it only writes to a new or empty lake or to one an earlier "
            "`metalake demo` built. Nothing was written; run it on a fresh path, e.g. "
            "metalake demo --lake ./demo-lake."
        )


class ExportError(MetalakeError):
    """An export (views for another engine, a DuckDB file) that cannot be written as asked; nothing was written."""

    code = "export_error"


class ViewExportError(ExportError):
    """A view uses a construct that cannot be carried to another SQL dialect without changing its answer."""

    code = "view_not_portable"

    def __init__(self, view: str, dialect: str, construct: str, reason: str):
        self.view, self.dialect, self.construct = view, dialect, construct
        super().__init__(
            f"View {view!r} cannot be exported to {dialect}: {construct}: {reason}. Nothing was written. "
            f"Rewrite sql/{view}.sql with a construct that both DuckDB and {dialect} support, or teach "
            "metalake.exports.dialects the translation."
        )
