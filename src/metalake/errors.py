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


def closest_names(name: str, known: Iterable[Any], *, limit: int = 3) -> list[str]:
    """The known names nearest to a mistyped one (difflib, case ignored), best first: for "did you mean"."""
    import difflib

    by_folded: dict[str, str] = {}
    for candidate in known:
        by_folded.setdefault(str(candidate).casefold(), str(candidate))
    matches = difflib.get_close_matches(str(name).casefold(), list(by_folded), n=limit, cutoff=0.6)
    return [by_folded[match] for match in matches]


def unknown_name_message(
    kind: str, name: str, known: Sequence[Any], *, hint: str = "", shown: int = 20
) -> str:
    """`Unknown experiment 'chrun'. Did you mean 'churn'? Known experiments: churn, fraud.` and the hint."""
    suggestions = closest_names(name, known)
    text = f"Unknown {kind} {name!r}."
    if suggestions:
        text += f" Did you mean {' or '.join(repr(s) for s in suggestions)}?"
    listing = ", ".join(str(k) for k in known[:shown]) + (
        f" (and {len(known) - shown} more)" if len(known) > shown else ""
    )
    text += f" Known {kind}s: {listing or 'none yet'}."
    return f"{text} {hint}" if hint else text


class NameNotFound(MetalakeError, KeyError):
    """A name the lake does not know (table, experiment, model, environment, lineage node, ...).

    `.name` is what was asked for, `.known` the names the lake holds, `.suggestions` the closest of them, so that
    a typo is answered with "did you mean ...?" instead of an empty result.
    """

    code = "name_not_found"

    def __init__(self, message: str, *, name: str, known: Iterable[Any] = ()):
        self.name = name
        self.known = sorted(set(known))
        self.suggestions = closest_names(name, self.known)
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0]) if self.args else ""


class TableNotFound(NameNotFound):
    """A table name that the lake's catalog does not know."""

    code = "table_not_found"

    def __init__(self, name: str, known: Iterable[str]):
        listing = sorted(known)
        super().__init__(
            unknown_name_message(
                "table",
                name,
                listing,
                shown=len(listing),
                hint="Add your own with a spec folder: metalake.connect(..., extra_specs='my_tables/').",
            ),
            name=name,
            known=listing,
        )


class SpecError(MetalakeError, ValueError):
    """A table spec (YAML) that cannot be understood."""

    code = "invalid_spec"


class MaskKeyError(MetalakeError, ValueError):
    """The masking key (`$METALAKE_MASK_KEY` or its key file) is missing, malformed or unreadable."""

    code = "invalid_mask_key"


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


class TimeTravelError(MetalakeError, ValueError):
    """A moment the lake cannot be read at: in the future, before the lake was created, or whose files a vacuum
    deleted; the message says which moments and snapshots can be read."""

    code = "time_travel_error"


class SnapshotNotFound(TimeTravelError, NameNotFound):
    """Text given as a moment that is neither a valid time nor a snapshot that was pinned."""

    code = "snapshot_not_found"

    def __init__(self, name: str, known: Iterable[str], message: str | None = None):
        listing = sorted(set(known))
        hint = "" if listing else "Create one with `metalake snapshot NAME`."
        super().__init__(
            message or unknown_name_message("snapshot", name, listing, hint=hint), name=name, known=listing
        )


class InvalidSnapshotName(TimeTravelError):
    """A snapshot name that breaks the naming rule, or reads as a time; nothing was pinned."""

    code = "invalid_snapshot_name"


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
            "the lake first: `metalake init` with the same --lake, or `metalake.connect(uri)` in Python."
        )


class QueryError(MetalakeError):
    """A SQL query or a filter expression that DuckDB or polars refused."""

    code = "query_error"


class UnsafeQuery(MetalakeError, ValueError):
    """User SQL (the REST API's `POST /api/v1/sql`) that reaches outside the lake or changes something; not run."""

    code = "unsafe_query"

    def __init__(self, refused: str, why: str):
        self.refused, self.why = refused, why
        super().__init__(
            f"Query refused: {refused}: {why}. Only one SELECT (or WITH ... SELECT, UNION of SELECTs) over the "
            "lake's tables and views, lake_commits and lake_clock is allowed, with no table functions and no "
            "functions that read files, settings or the environment."
        )


class QueryTimeout(QueryError):
    """User SQL that ran longer than its statement timeout and was interrupted."""

    code = "query_timeout"

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        super().__init__(
            f"Query interrupted after {timeout_s:g} s, its time limit. Make it cheaper (filter earlier, select "
            "fewer columns, aggregate) or ask for a longer timeout."
        )


class ViewError(MetalakeError):
    """A view definition in `sql/` that cannot be created."""

    code = "view_error"


class IngestError(MetalakeError):
    """A file given to `metalake ingest` that cannot be read."""

    code = "ingest_error"


class RunError(MetalakeError):
    """A run used in a way its state does not allow (logging after end, unknown run id, ...)."""

    code = "run_error"


class RunNotFound(RunError, NameNotFound):
    """A run id, or an id prefix, that no run of the lake has."""

    code = "run_not_found"

    def __init__(self, run_id: str):
        super().__init__(
            f"No run {run_id!r} in this lake; list runs with `metalake runs list` (a unique prefix of an id "
            "is enough).",
            name=run_id,
        )


class AmbiguousRunId(RunError, KeyError):
    """A run id prefix that several runs share; `.candidates` are their whole ids."""

    code = "ambiguous_run_id"

    def __init__(self, prefix: str, candidates: Sequence[str], *, shown: int = 10):
        self.prefix = prefix
        self.candidates = sorted(candidates)
        listing = ", ".join(self.candidates[:shown]) + (" ..." if len(self.candidates) > shown else "")
        super().__init__(
            f"Run id prefix {prefix!r} is ambiguous: {len(self.candidates)} runs start with it ({listing}). "
            "Give more characters of the id."
        )

    def __str__(self) -> str:
        return str(self.args[0])


class ExperimentNotFound(NameNotFound):
    """An experiment name that no run of the lake was logged under."""

    code = "experiment_not_found"

    def __init__(self, name: str, known: Iterable[str]):
        listing = sorted(set(known))
        super().__init__(
            unknown_name_message(
                "experiment",
                name,
                listing,
                hint="Every name: lake.runs.experiments()." if len(listing) > 20 else "",
            ),
            name=name,
            known=listing,
        )


class AlreadyExists(MetalakeError):
    """Something to create has a name that is taken (an experiment, a registered model)."""

    code = "already_exists"


class ExperimentExists(AlreadyExists):
    """An experiment is created under a name that an experiment has (maybe a deleted one)."""

    code = "experiment_exists"

    def __init__(self, name: str, *, deleted: bool = False):
        self.name = name
        state = " (deleted: restore it, or pick another name)" if deleted else ""
        super().__init__(f"An experiment named {name!r} already exists{state}.")


class ParamValueChanged(RunError):
    """A param logged again with another value: params are fixed once logged, as MLflow has them."""

    code = "param_value_changed"

    def __init__(self, run_id: str, key: str, old: str, new: str):
        self.run_id, self.key, self.old, self.new = run_id, key, old, new
        super().__init__(
            f"Changing param values is not allowed. Param with key='{key}' was already logged with "
            f"value='{old}' for run ID='{run_id}'. Attempted logging new value '{new}'."
        )


class FlushError(MetalakeError):
    """Queued run flushes could not be committed; they are retried at the next flush or wait, under their keys."""

    code = "flush_error"


class JournalFull(MetalakeError):
    """The local journal of run flushes reached its size limit, or the disk holding it is full."""

    code = "journal_full"


class OfflineLakeError(MetalakeError):
    """A lake opened with `offline=True` only logs runs into the local journal; reads and other writes need it
    online."""

    code = "offline"


class StorageUnreachableWarning(UserWarning):
    """Run flushes could not be committed and wait in the local journal; said once per lake and process."""


class RegistryError(MetalakeError, ValueError):
    """A registry operation that cannot be done as asked (unknown run, bad stage, alias, ...)."""

    code = "registry_error"


class ModelNotFound(NameNotFound):
    """No such model, version or alias in the registry; `.known` are the models (or the model's versions)."""

    code = "model_not_found"

    def __init__(self, message: str, *, name: str = "", known: Iterable[Any] = ()):
        super().__init__(message, name=name, known=known)

    @classmethod
    def unknown_model(cls, model: str, known: Iterable[str]) -> ModelNotFound:
        """No model of that name: the message names the closest registered models."""
        listing = sorted(set(known))
        return cls(
            unknown_name_message(
                "model",
                model,
                listing,
                hint="List them with `metalake models list`; register one with lake.registry.register.",
            ),
            name=model,
            known=listing,
        )


class LoggedModelNotFound(NameNotFound):
    """A logged model id (MLflow 3's `m-...`) that the lake has no model for, or one that was deleted."""

    code = "logged_model_not_found"

    def __init__(self, model_id: str):
        super().__init__(
            f"No logged model with id {model_id!r}: list them with lake.logged_models.search().",
            name=model_id,
        )


class ArtifactError(MetalakeError):
    """An artifact path the lake refuses (outside a run's or a model's folder, `..`, absolute), or a bad upload."""

    code = "artifact_error"


class ArtifactNotFound(NameNotFound):
    """An artifact path under which the lake stores no file."""

    code = "artifact_not_found"

    def __init__(self, path: str):
        super().__init__(
            f"No artifact at {path!r}: list a folder's artifacts to see what is stored.", name=path
        )


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


class DatasetNotFound(NameNotFound):
    """A dataset name, or a version of it, that the lake does not hold."""

    code = "dataset_not_found"

    def __init__(self, name: str, known: Iterable[Any], version: int | None = None):
        self.version = version
        listing = sorted(set(known))
        if version is not None:
            versions = ", ".join(str(v) for v in listing) or "none"
            message = (
                f"Dataset {name!r} has no version {version}. Its versions: {versions}. "
                f"See them with `metalake datasets history {name}`."
            )
        else:
            message = unknown_name_message(
                "dataset", name, listing, hint="Register one with `metalake datasets register NAME PATH`."
            )
        super().__init__(message, name=name, known=listing)
        if version is not None:
            self.suggestions = []


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


class EnvironmentNotFound(DeploymentError, NameNotFound):
    """An environment that no deployment was ever recorded in."""

    code = "environment_not_found"

    def __init__(self, name: str, known: Iterable[str]):
        listing = sorted(set(known))
        hint = (
            ""
            if listing
            else "Record a deployment with `metalake deploy record --model M --version N --env E`."
        )
        super().__init__(
            unknown_name_message("environment", name, listing, hint=hint), name=name, known=listing
        )


class KpiError(MetalakeError, ValueError):
    """A KPI definition or observation that cannot be recorded as given."""

    code = "kpi_error"


class KpiNotFound(KpiError, NameNotFound):
    """A KPI name that was never defined; the message lists the defined ones and the closest to each."""

    code = "kpi_not_found"

    def __init__(self, names: Iterable[str], known: Iterable[str]):
        self.names = sorted(names)
        listing = sorted(set(known))
        unknown = ", ".join(repr(name) for name in self.names)
        guesses = [
            f"{guess!r} for {name!r}" for name in self.names for guess in closest_names(name, listing)[:1]
        ]
        did_you_mean = f" Did you mean {', '.join(guesses)}?" if guesses else ""
        super().__init__(
            f"Unknown KPI(s) {unknown}.{did_you_mean} Defined KPIs: {', '.join(listing) or 'none yet'}. "
            "Define it first: lake.kpis.define(name, unit=..., direction=...) or `metalake kpis define`.",
            name=self.names[0] if self.names else "",
            known=listing,
        )


class LineageError(MetalakeError, ValueError):
    """A lineage request that cannot be answered or done as asked (bad node id, unreadable event file, ...)."""

    code = "lineage_error"


class LineageNodeNotFound(LineageError, NameNotFound):
    """A well-formed lineage node id that the lake has never seen (no edge, run, model, dataset or deployment)."""

    code = "lineage_node_not_found"

    def __init__(self, node: str, known: Iterable[str]):
        listing = sorted(set(known))
        kind = node.partition(":")[0]
        same_kind = [n for n in listing if n.startswith(kind + ":")]
        suggestions = closest_names(node, same_kind or listing)
        text = f"Unknown lineage node {node!r}: nothing in this lake's lineage has that id."
        if suggestions:
            text += f" Did you mean {' or '.join(repr(s) for s in suggestions)}?"
        example = ", ".join(same_kind[:5])
        if example:
            text += f" Known {kind} nodes: {example}{' ...' if len(same_kind) > 5 else ''}."
        text += " List them with lake.lineage.nodes()."
        super().__init__(text, name=node, known=listing)
        self.suggestions = suggestions


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


class InvalidRequest(MetalakeError, ValueError):
    """An HTTP request the API cannot take as sent (a bad parameter, page token or body); nothing was done."""

    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None):
        self.field = field
        super().__init__(message)


class IdempotencyKeyReused(MetalakeError):
    """An `Idempotency-Key` sent again with a different request; the first answer stands, nothing was written."""

    code = "idempotency_key_reused"


class NotAuthenticated(MetalakeError):
    """A request to the server without the credentials it asks for (HTTP 401)."""

    code = "unauthenticated"


class NotAuthorized(MetalakeError):
    """A principal asking the server for what it may not do (HTTP 403)."""

    code = "forbidden"


class NotReadable(MetalakeError):
    """A named object the principal may not read (HTTP 404): answered as if it did not exist, so names do not
    leak."""

    code = "not_found"

    def __init__(self, kind: str, name: str):
        self.kind, self.name = kind, name
        super().__init__(
            f"No {kind} {name!r} was found, or you may not read it. If it exists, ask an admin, or whoever "
            "manages it, for read access."
        )


class AccessError(MetalakeError, ValueError):
    """A refused change to principals, tokens or grants (an unknown privilege, a malformed securable, ...)."""

    code = "access_error"


class InvalidSecurable(AccessError):
    """A securable that is not `lake` or KIND:NAME with a known kind."""

    code = "invalid_securable"


class InvalidPrivilege(AccessError):
    """A privilege or action that is not one of read, write, manage, unmask, admin."""

    code = "invalid_privilege"


class AccessAlreadyInitialized(AccessError):
    """`access init` on a lake that has principals already: the first admin is made once."""

    code = "access_already_initialized"


class PrincipalExists(AlreadyExists):
    """A principal (user, service account or group) is created under a name that one has."""

    code = "principal_exists"

    def __init__(self, name: str):
        self.name = name
        super().__init__(
            f"A principal named {name!r} already exists. Pick another name, or give it a token with "
            f"`metalake access token create {name}`."
        )


class PrincipalNotFound(NameNotFound):
    """A user, service account or group the lake's access tables do not hold."""

    code = "principal_not_found"

    def __init__(self, name: str, known: Iterable[str] = ()):
        listing = sorted(set(known))
        super().__init__(
            unknown_name_message(
                "principal", name, listing, hint=f"Create it with `metalake access principal create {name}`."
            ),
            name=name,
            known=listing,
        )


class GrantNotFound(NameNotFound):
    """A revoke of a grant that is not in force."""

    code = "grant_not_found"


class TokenNotFound(NameNotFound):
    """A token id the lake does not hold (or one already revoked)."""

    code = "token_not_found"


class MlflowError(MetalakeError):
    """A refusal that only MLflow's protocol has (a missing field, an endpoint's own rule), with MLflow's code
    (`INVALID_PARAMETER_VALUE`, `RESOURCE_DOES_NOT_EXIST`, ...), answered to MLflow clients as MLflow would."""

    code = "mlflow_error"

    def __init__(self, message: str, error_code: str = "INVALID_PARAMETER_VALUE"):
        self.error_code = error_code
        super().__init__(message)
