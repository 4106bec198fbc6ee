"""The command line: a Typer app, one module per command group, one output module.

`main` imports the app only when called, so that `python -m metalake.cli.app` runs the module once.
"""


def main() -> None:
    """Entry point of the `metalake` script."""
    from metalake.cli.app import main as run

    run()


__all__ = ["main"]
