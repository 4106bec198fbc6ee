"""The command line: a Typer app, one module per command group, one output module.

`main` imports the app only when called; `python -m metalake.cli` is the same as the `metalake` command.
"""


def main() -> None:
    """Entry point of the `metalake` script."""
    from metalake.cli.app import main as run

    run()


__all__ = ["main"]
