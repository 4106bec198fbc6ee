"""What grants are given on: `lake` (everything it holds), or KIND:NAME (an experiment, a model, a table, ...).

A grant on the lake is inherited by everything in it; a grant on an experiment covers its runs, a model its
versions and deployments, a dataset its versions and validations (the server names the container when a route
touches what it holds). `KIND:*`, the kind as a whole (a creation, a list), is decided by grants on the lake
alone; the server's listings go further and show what a principal may read of the kind (`Access.readable`).
"""

from __future__ import annotations

from typing import get_args

from metalake.core.vocabulary import PRIVILEGES, SECURABLE_KINDS, Privilege
from metalake.errors import InvalidPrivilege, InvalidSecurable

LAKE = "lake"
MAX_NAME_LENGTH = 250
EXAMPLES = "lake, experiment:churn, model:churn-classifier, dataset:orders, table:metrics, kpi:retention"


def parse_securable(text: str, *, whole_kind: bool = False) -> str:
    """The securable `text` names, normalized (`Experiment: churn` -> `experiment:churn`); raises
    InvalidSecurable with the accepted forms. `whole_kind` also accepts `KIND:*`."""
    given = str(text).strip()
    if given.lower() == LAKE:
        return LAKE
    kind, colon, name = given.partition(":")
    kind, name = kind.strip().lower(), name.strip()
    if not colon or kind not in SECURABLE_KINDS:
        raise InvalidSecurable(
            f"{text!r} is not a securable. Write `lake`, or KIND:NAME with KIND one of "
            f"{', '.join(SECURABLE_KINDS)} (e.g. {EXAMPLES})."
        )
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidSecurable(
            f"{text!r} names no {kind}: write {kind}:NAME, the name 1 to 250 characters long."
        )
    if name == "*" and not whole_kind:
        raise InvalidSecurable(
            f"Grants are given on one {kind} ({kind}:NAME) or on the whole lake (`lake`), not on {text!r}."
        )
    return f"{kind}:{name}"


def parse_privilege(text: str) -> Privilege:
    """A privilege by name (case-insensitive); raises InvalidPrivilege listing the privileges."""
    given = str(text).strip().lower()
    for privilege in get_args(Privilege):
        if given == privilege:
            return privilege  # type: ignore[no-any-return]
    raise InvalidPrivilege(
        f"{text!r} is not a privilege. Privileges: {', '.join(PRIVILEGES)} (write implies read, manage implies "
        "write; admin is everything, on the lake only)."
    )


def covering(securable: str) -> tuple[str, ...]:
    """The securables whose grants decide on `securable`: itself and the lake (the lake's only for a whole kind)."""
    if securable == LAKE or securable.endswith(":*"):
        return (LAKE,)
    return (securable, LAKE)
