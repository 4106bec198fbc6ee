"""Requests generated from the server's /openapi.json by schemathesis, each operation checked by the caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def generated_request_failures(
    url: str, check_case: Callable[[Any], None], *, max_examples: int, message_chars: int = 2000
) -> tuple[int, list[str]]:
    """Run `check_case(case)` on up to `max_examples` generated requests of every operation of the spec at `url`
    (derandomized, so a run is repeatable); returns the number of operations and each failing operation's
    error, so that a test reports all of them at once rather than the first."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(url)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=max_examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            check_case(case)

        try:
            check()
        except Exception as error:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {error}"[:message_chars])
    return operations, failures
