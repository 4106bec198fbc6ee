"""Business and online KPIs: `lake.kpis.define(...)`, `observe`, bulk `observe_many`/`ingest`, and `impact`, the
KPI before and after each deployment (the view `model_kpi_impact`, with a window of your choice); the lake's
production environments, where observations without an environment count (`production_environments`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from metalake.core.file_formats import EXTENSION_FORMATS, INPUT_FORMATS, InputFormat
from metalake.core.moments import (
    parse_duration,
    recordable_moment,
)
from metalake.core.vocabulary import DEFAULT_PRODUCTION_ENVIRONMENTS, KPI_DIRECTIONS, KpiDirection
from metalake.errors import IngestError, KpiError, KpiNotFound, ViewError
from metalake.kpis.environments import (
    check_deployed_names,
    environment_names,
    store_production_environments,
    stored_production_environments,
)
from metalake.kpis.observations import (
    as_frame,
    file_digest,
    read_observations,
    refuse_times_out_of_range,
    time_column,
    value_column,
)

if TYPE_CHECKING:
    import os

    import polars as pl

    from metalake.core.tables import Commit, Tables


KPIS_TABLE = "kpis"
OBSERVATIONS_TABLE = "kpi_observations"
IMPACT_VIEW = "model_kpi_impact"
OBSERVATION_COLUMNS = ("kpi", "value", "observed_at", "segment", "environment", "source")
MAX_NAME_LENGTH = 250
MAX_UNIT_LENGTH = 32
DEFAULT_IMPACT_WINDOW = timedelta(days=7)
# The one line of sql/model_kpi_impact.sql that fixes its settings; `impact()` binds other values in its place:
# the window, and the environments where observations without one count (null: the lake's production
# environments, read by the view's `lake_setting`). The window is exact microseconds: an INTERVAL in days would
# follow the session time zone's calendar (DST).
SETTINGS_LINE = (
    f"SELECT to_microseconds({DEFAULT_IMPACT_WINDOW // timedelta(microseconds=1)}) AS impact_window, "
    "production_environments FROM lake_setting"
)
BOUND_SETTINGS_LINE = (
    "SELECT to_microseconds(CAST($window_us AS BIGINT)) AS impact_window, "
    "coalesce(CAST($unlabeled_environments AS VARCHAR[]), production_environments) AS production_environments "
    "FROM lake_setting"
)
DEFINITIONS_SQL = "select kpi, unit, direction, description, owner, models, tags from kpi_definitions"


class LakeSetting(Enum):
    """The default of an option that follows a setting stored in the lake."""

    LAKE_SETTING = "the lake's setting"

    def __repr__(self) -> str:
        return "LAKE_SETTING"


LAKE_SETTING = LakeSetting.LAKE_SETTING
UnlabeledEnvironments = str | Iterable[str] | None | Literal[LakeSetting.LAKE_SETTING]


@dataclass(frozen=True)
class Kpi:
    """A KPI's current definition. `models` empty: its impact is shown for deployments of every model."""

    name: str
    unit: str | None
    direction: KpiDirection | None
    description: str | None = None
    owner: str | None = None
    models: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


class Kpis:
    """`lake.kpis`: define KPIs, record their observed values, and see how deployments moved them."""

    def __init__(self, tables: Tables):
        self._tables = tables

    # -- definitions ----------------------------------------------------------------------------------------

    def define(
        self,
        name: str,
        *,
        unit: str,
        direction: KpiDirection,
        description: str | None = None,
        owner: str | None = None,
        models: Iterable[str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Kpi:
        """Define a KPI, or update its definition (the latest one is current).

        On an update, `description`, `owner`, `models` and `tags` left as None keep their current values; pass
        `models=[]` to make the KPI follow every model again. Defining a KPI exactly as it is writes nothing.
        """
        _check_name(name)
        if direction not in KPI_DIRECTIONS:
            raise KpiError(
                f"KPI direction {direction!r} is not one of {', '.join(KPI_DIRECTIONS)}: say which way is better."
            )
        if (
            not isinstance(unit, str)
            or not unit.strip()
            or unit != unit.strip()
            or len(unit) > MAX_UNIT_LENGTH
        ):
            raise KpiError(
                f"KPI unit {unit!r} must be short text (1 to {MAX_UNIT_LENGTH} characters, no surrounding "
                "spaces), e.g. '%', 'EUR', 'ms' or 'count'."
            )
        current = self._definitions().get(name)
        wanted = Kpi(
            name=name,
            unit=unit,
            direction=direction,
            description=description if description is not None or current is None else current.description,
            owner=owner if owner is not None or current is None else current.owner,
            models=_model_names(models) if models is not None else (current.models if current else ()),
            tags=_tags(tags) if tags is not None else (current.tags if current else {}),
        )
        if wanted == current:
            return wanted
        self._tables.append(
            KPIS_TABLE,
            [
                {
                    "kpi": wanted.name,
                    "unit": wanted.unit,
                    "direction": wanted.direction,
                    "description": wanted.description,
                    "owner": wanted.owner,
                    "models": list(wanted.models),
                    "tags": dict(wanted.tags) or None,
                }
            ],
            operation="kpi_define",
            reason=f"{'redefine' if current else 'define'} KPI {name}",
        )
        return wanted

    def get(self, name: str) -> Kpi:
        """A KPI's current definition; KpiNotFound lists the defined KPIs."""
        definitions = self._definitions()
        if name not in definitions:
            raise KpiNotFound([name], definitions)
        return definitions[name]

    def list(self) -> pl.DataFrame:
        """Every KPI with its current definition and observation figures (the view `kpis_current`)."""
        frame: pl.DataFrame = self._tables.sql("select * from kpis_current order by kpi").pl()
        return _utc(frame)

    def _definitions(self) -> dict[str, Kpi]:
        rows = self._tables.sql(DEFINITIONS_SQL).fetchall()
        return {
            kpi: Kpi(
                name=kpi,
                unit=unit,
                direction=cast("KpiDirection | None", direction),
                description=description,
                owner=owner,
                models=tuple(json.loads(models)) if models else (),
                tags=json.loads(tags) if tags else {},
            )
            for kpi, unit, direction, description, owner, models, tags in rows
        }

    # -- observations ---------------------------------------------------------------------------------------

    def observe(
        self,
        name: str,
        value: float,
        *,
        at: datetime | date | str | None = None,
        segment: str | None = None,
        environment: str | None = None,
        source: str | None = None,
        idempotency_key: str | None = None,
    ) -> Commit:
        """Record one observed value of a defined KPI at `at` (default now), for a segment and environment."""
        return self.observe_many(
            [
                {
                    "kpi": name,
                    "value": value,
                    "observed_at": datetime.now(UTC)
                    if at is None
                    else recordable_moment(at, what="Observation time (at)", error=KpiError),
                    "segment": segment,
                    "environment": environment,
                    "source": source,
                }
            ],
            reason=f"observe KPI {name}",
            idempotency_key=idempotency_key,
        )

    def observe_many(
        self,
        data: Any,
        *,
        source: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Commit:
        """Record many observations in one commit: all of them, or none when one is refused.

        `data` is a polars, pandas or pyarrow frame, or a list of dicts, with columns kpi, value and observed_at
        (default now), and optionally segment, environment and source (default `source`). Every row is checked
        first: KPIs must be defined, values finite numbers, times readable; the error lists what failed.
        """
        import polars as pl

        frame = as_frame(data)
        if frame.is_empty():
            raise KpiError("No observations given: nothing to record.")
        unknown_columns = [c for c in frame.columns if c not in OBSERVATION_COLUMNS]
        missing = [c for c in ("kpi", "value") if c not in frame.columns]
        if unknown_columns or missing:
            raise KpiError(
                f"Observations need columns kpi and value (missing: {', '.join(missing) or 'none'}); "
                f"unknown: {', '.join(unknown_columns) or 'none'}. Allowed: {', '.join(OBSERVATION_COLUMNS)}."
            )
        if "observed_at" not in frame.columns:
            frame = frame.with_columns(pl.lit(datetime.now(UTC)).alias("observed_at"))
        if "source" not in frame.columns:
            frame = frame.with_columns(pl.lit(source, dtype=pl.String).alias("source"))
        elif source is not None:
            frame = frame.with_columns(pl.col("source").fill_null(source))
        frame = frame.with_columns(
            value_column(frame.get_column("value")), time_column(frame.get_column("observed_at"))
        )
        refuse_times_out_of_range(frame.get_column("observed_at"))
        known = self._definitions()
        names = frame.get_column("kpi").drop_nulls().unique().to_list()
        undefined = [name for name in names if name not in known]
        if undefined:
            raise KpiNotFound(undefined, known)
        commit: Commit = self._tables.append(
            OBSERVATIONS_TABLE,
            frame,
            operation="kpi_observe",
            reason=reason or f"observe {frame.height:,} KPI value(s)",
            idempotency_key=idempotency_key,
        )
        return commit

    def ingest(
        self,
        path: str | os.PathLike[str],
        *,
        file_format: InputFormat | None = None,
        source: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Commit:
        """Record every observation in a CSV, Parquet or JSON-lines file in one commit (all or nothing).

        Columns as for `observe_many`. `source` defaults to the file name. The idempotency key defaults to the
        file's SHA-256, so ingesting the same file again writes nothing (`Commit.deduplicated`).
        """
        file = Path(path)
        chosen = file_format or EXTENSION_FORMATS.get(file.suffix.lower())
        if chosen is None or chosen not in INPUT_FORMATS:
            raise IngestError(
                f"Cannot tell the format of {file.name}: name it .csv, .parquet, .jsonl or .json, or pass "
                f"file_format= one of {', '.join(INPUT_FORMATS)}."
            )
        if not file.is_file():
            raise IngestError(
                f"{file} is not a file: give a CSV, Parquet or JSON-lines file of observations."
            )
        frame = read_observations(file, chosen)
        key = idempotency_key or f"kpi-ingest:{file_digest(file)}"
        return self.observe_many(
            frame, source=source or file.name, reason=reason or f"ingest {file.name}", idempotency_key=key
        )

    # -- production environments ----------------------------------------------------------------------------

    def production_environments(self) -> tuple[str, ...]:
        """Where observations without an environment count: the environments whose deployments they judge.

        The lake's setting at the lake's moment (`lake.as_of(...)` reads the list in force then); while none is
        stored, production, prod, prd and live.
        """
        return stored_production_environments(self._tables) or DEFAULT_PRODUCTION_ENVIRONMENTS

    def set_production_environments(
        self, environments: Iterable[str], *, reason: str | None = None
    ) -> tuple[str, ...]:
        """Store the production environments in the lake, for every client and for `model_kpi_impact`.

        A recorded commit of `policies` (`lake.history("policies")`, the view `audit_log`); the previous list
        stays readable with `lake.as_of(...)`. Setting the list the lake already stores writes nothing.
        """
        names = environment_names(environments)
        if stored_production_environments(self._tables) != names:
            store_production_environments(self._tables, names, reason=reason)
        return names

    # -- impact ---------------------------------------------------------------------------------------------

    def impact(
        self,
        model: str | None = None,
        kpi: str | None = None,
        *,
        window: timedelta | str = DEFAULT_IMPACT_WINDOW,
        environment: str | None = None,
        deployment_id: str | None = None,
        unlabeled_environment: UnlabeledEnvironments = LAKE_SETTING,
    ) -> pl.DataFrame:
        """Did the deployments help? The view `model_kpi_impact`, computed with `window` ("12h", "7d", "2w").

        For each deployment and each KPI that follows its model: the KPI mean in the window before the
        deployment and in the window after it (cut at its end), the change, whether it went the KPI's way, the
        version's offline metrics and its training data quality, and a `note` saying why a side has no
        observations. Observations without an environment count for deployments to the lake's production
        environments (`production_environments()`); `unlabeled_environment` names others for this query only:
        one environment, a list, or None for none. See the view's header for the exact rules.
        """
        duration = parse_duration(window, what="Impact window", error=KpiError)
        unlabeled: tuple[str, ...] | None
        if unlabeled_environment is LAKE_SETTING:
            unlabeled = None
        elif unlabeled_environment is None:
            unlabeled = ()
        elif isinstance(unlabeled_environment, str):
            unlabeled = environment_names([unlabeled_environment], what="unlabeled_environment")
        else:  # [] as None: count them nowhere
            unlabeled = environment_names(
                unlabeled_environment, what="unlabeled_environment", allow_empty=True
            )
        filters = {"model": model, "kpi": kpi, "environment": environment, "deployment_id": deployment_id}
        from_view = duration == DEFAULT_IMPACT_WINDOW and unlabeled is None
        found = self.impact_rows(duration, unlabeled, filters, from_view=from_view)
        if found.is_empty():  # a mistyped name says so, with the closest; known names give an empty answer
            if kpi is not None:
                self.get(kpi)
            check_deployed_names(self._tables, model=model, environment=environment)
        return found

    def impact_rows(
        self,
        duration: timedelta,
        unlabeled_environments: Sequence[str] | None,
        filters: Mapping[str, str | None],
        *,
        from_view: bool,
    ) -> pl.DataFrame:
        """Impact rows from the materialized view (its settings are the defaults), or from the view's query with
        the settings bound (`from_view=False`; `unlabeled_environments` None: the lake's production
        environments); the tests hold the two to the same result."""
        from metalake.core.sql import bundled_views

        params: dict[str, Any] = {}
        if from_view:
            source = IMPACT_VIEW
        else:
            definition = bundled_views()[IMPACT_VIEW]
            if definition.select.count(SETTINGS_LINE) != 1:
                raise ViewError(
                    f"{definition.path} must set its window and production environments in exactly one line "
                    f"{SETTINGS_LINE!r}, so that lake.kpis.impact(window=...) can bind others."
                )
            source = f"({definition.select.replace(SETTINGS_LINE, BOUND_SETTINGS_LINE)}\n) as impact"
            params["window_us"] = duration // timedelta(microseconds=1)
            params["unlabeled_environments"] = (
                None if unlabeled_environments is None else list(unlabeled_environments)
            )
        clauses = []
        for column, value in filters.items():
            if value is not None:
                clauses.append(f"{column} = ${column}")
                params[column] = value
        where = f"where {' and '.join(clauses)}" if clauses else ""
        frame: pl.DataFrame = self._tables.sql(
            f"select * from {source} {where} order by deployed_at, deployment_id, kpi, segment nulls first",
            params or None,
        ).pl()
        return _utc(frame)


# -- helpers ------------------------------------------------------------------------------------------------


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip() or name != name.strip() or len(name) > MAX_NAME_LENGTH:
        raise KpiError(
            f"A KPI name is text of 1 to {MAX_NAME_LENGTH} characters without surrounding spaces, not {name!r}."
        )


def _model_names(models: Iterable[str]) -> tuple[str, ...]:
    if isinstance(models, str):
        raise KpiError(f"models takes a list of model names, e.g. models=[{models!r}], not one string.")
    names = tuple(dict.fromkeys(models))
    bad = [m for m in names if not isinstance(m, str) or not m.strip()]
    if bad:
        raise KpiError(f"Model names must be non-empty text; got {bad!r}.")
    return names


def _tags(tags: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(tags, Mapping):
        raise KpiError(f"tags takes a mapping of text to text, not {type(tags).__name__}.")
    return {str(key): str(value) for key, value in tags.items()}


def _utc(frame: pl.DataFrame) -> pl.DataFrame:
    """Timestamps as DuckDB returns them carry its zone name (Etc/UTC); metalake shows them as UTC."""
    import polars as pl

    return frame.with_columns(
        pl.col(name).dt.convert_time_zone("UTC")
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None
    )
