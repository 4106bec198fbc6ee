"""A closed standard output (`metalake ... | head`): a reader stops quietly, a writer finishes its work."""

from __future__ import annotations

import functools
import io
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def discard_stdout() -> None:
    """Point stdout at /dev/null, so that later writes and the flush at exit stay quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # not a real file (CliRunner): nothing to flush
        pass


def results_console(*, finish_when_pipe_closes: bool = False) -> Console:
    """A Rich console on stdout, without highlighting, that handles a closed pipe as metalake does.

    Rich's own answer is SystemExit(1) in the middle of the work. Here a reader raises BrokenPipeError, which
    `reports_errors` turns into the quiet exit of a Unix filter (141); with `finish_when_pipe_closes` (the demo,
    which writes a whole round), output is discarded and the work goes on to the end.
    """
    console: Console = _console_class()(highlight=False, finish_when_pipe_closes=finish_when_pipe_closes)
    return console


@functools.cache
def _console_class() -> Any:
    from rich.console import Console

    class ResultsConsole(Console):
        def __init__(self, *, finish_when_pipe_closes: bool, **options: Any) -> None:
            super().__init__(**options)
            self.finish_when_pipe_closes = finish_when_pipe_closes

        def on_broken_pipe(self) -> None:
            self.quiet = True
            discard_stdout()
            if not self.finish_when_pipe_closes:
                raise BrokenPipeError("standard output was closed")

    return ResultsConsole
