"""`python -m metalake.cli`: the same as the `metalake` command."""

from metalake.cli.app import main

main()
