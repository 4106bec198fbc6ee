"""The production environments of KPI impact: where observations without an environment count.

A lake setting kept as a row of `policies` (the table of documents every client follows), so changing it is an
audited commit and `lake.as_of(...)` reads the list in force then. `sql/model_kpi_impact.sql` reads the same row
and falls back to the same default list; `lake.kpis` offers the setting (`production_environments`,
`set_production_environments`), this module checks and reads it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from metalake.core.tables import POLICIES_TABLE
from metalake.errors import EnvironmentNotFound, KpiError, ModelNotFound

if TYPE_CHECKING:
    from metalake.core.tables import Tables

# The `policies.policy` of the setting; sql/model_kpi_impact.sql names it too.
PRODUCTION_ENVIRONMENTS_POLICY = "kpi_production_environments"
MAX_ENVIRONMENT_LENGTH = 250
SET_COMMAND = "metalake kpis production-envs --set production,prod"


def environment_names(
    value: object, *, what: str = "production environments", allow_empty: bool = False
) -> tuple[str, ...]:
    """The environment names of a list as given, or KpiError saying what is wrong and how to write it."""
    example = "['production', 'prod']"
    if isinstance(value, str | Mapping) or not isinstance(value, Iterable):
        hint = f"[{value!r}]" if isinstance(value, str) else example
        raise KpiError(f"{what} takes a list of environment names, e.g. {hint}, not {value!r}.")
    names = list(value)
    if not names and not allow_empty:
        raise KpiError(
            f"{what} needs at least one environment, e.g. {example}: observations without an environment "
            "must count for some deployments. To keep them away from a deployment, label them with their "
            "environment."
        )
    bad = [
        name
        for name in names
        if not isinstance(name, str)
        or not name.strip()
        or name != name.strip()
        or len(name) > MAX_ENVIRONMENT_LENGTH
    ]
    if bad:
        raise KpiError(
            f"{what}: environment names are text of 1 to {MAX_ENVIRONMENT_LENGTH} characters without "
            f"surrounding spaces, as deployments name them (e.g. {example}); not {', '.join(map(repr, bad))}."
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise KpiError(
            f"{what} lists {', '.join(map(repr, repeated))} more than once: name each environment once."
        )
    return tuple(names)


def stored_production_environments(tables: Tables) -> tuple[str, ...] | None:
    """The list the lake stores (its latest row, at the lake's moment), or None when it stores none."""
    import polars as pl

    stored = tables.read(POLICIES_TABLE, where=pl.col("policy") == PRODUCTION_ENVIRONMENTS_POLICY)
    if stored.is_empty():
        return None
    latest = stored.sort("recorded_at").row(-1, named=True)
    try:
        document = json.loads(latest["document"])
        if not isinstance(document, list):
            raise ValueError(f"it holds {latest['document']}, not a JSON list of environment names.")
        return environment_names(document, what="its list")
    except (ValueError, KpiError) as error:
        raise KpiError(
            f"The lake's production environments (policies row {PRODUCTION_ENVIRONMENTS_POLICY!r}, recorded "
            f"{latest['recorded_at']:%Y-%m-%d %H:%M:%S} by {latest['recorded_by']}) cannot be read: {error} Set "
            f"them again with lake.kpis.set_production_environments([...]) or `{SET_COMMAND}`."
        ) from None


def store_production_environments(tables: Tables, names: tuple[str, ...], *, reason: str | None) -> None:
    tables.append(
        POLICIES_TABLE,
        [{"policy": PRODUCTION_ENVIRONMENTS_POLICY, "document": json.dumps(list(names)), "source": None}],
        operation="set_production_environments",
        reason=reason or f"production environments: {', '.join(names)}",
    )


def sql_list(names: Iterable[str]) -> str:
    """A DuckDB list literal of text, as the view writes its default: ['production', 'prod']."""
    return "[" + ", ".join("'" + name.replace("'", "''") + "'" for name in names) + "]"


def check_deployed_names(tables: Tables, *, model: str | None, environment: str | None) -> None:
    """ModelNotFound or EnvironmentNotFound (with "did you mean") for a model or an environment that no
    deployment or registration of the lake has named, by its moment or later; known names pass."""
    for name, query, unknown in (
        (model, MODELS_QUERY, ModelNotFound.unknown_model),
        (environment, "select distinct environment from deployments", EnvironmentNotFound),
    ):
        if name is None:
            continue
        known = _names(tables, query)
        if tables.is_unknown_name(name, known, functools.partial(_names, query=query)):
            raise unknown(name, known)


def _names(tables: Tables, query: str) -> list[str]:
    return sorted(row[0] for row in tables.sql(query).fetchall())


MODELS_QUERY = "select model from deployments union select model from model_versions"
