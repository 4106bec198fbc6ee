"""Strip outputs from the notebooks, so git holds their source only (`make strip-notebooks`).

    python notebooks/strip.py              # every notebooks/*.ipynb
    python notebooks/strip.py A.ipynb ...  # these
    python notebooks/strip.py --check      # exit 1, naming them, when a notebook carries outputs

Stripping empties every code cell's outputs and execution count, drops the timing metadata that an execution
adds to cells, and keeps only the kernel and language name in the notebook's metadata.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent
CELL_METADATA_DROPPED = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip(notebook: Any) -> bool:
    """Strip one notebook node in place; True when something was removed."""
    changed = False
    for cell in notebook.cells:
        for key in CELL_METADATA_DROPPED:
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
        if cell.cell_type == "code":
            if cell.outputs or cell.execution_count is not None:
                changed = True
            cell.outputs = []
            cell.execution_count = None
    language = notebook.metadata.get("language_info", {}).get("name", "python")
    metadata = {"kernelspec": notebook.metadata.get("kernelspec", {}), "language_info": {"name": language}}
    if not metadata["kernelspec"]:
        del metadata["kernelspec"]
    if dict(notebook.metadata) != metadata:
        notebook.metadata = nbformat.from_dict(metadata)
        changed = True
    return changed


def main(arguments: list[str]) -> int:
    check = "--check" in arguments
    paths = [Path(a) for a in arguments if a != "--check"] or sorted(NOTEBOOKS.glob("*.ipynb"))
    dirty = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        if strip(notebook):
            dirty.append(path)
            if not check:
                nbformat.write(notebook, path)
    verb = "carry outputs" if check else "stripped"
    for path in dirty:
        print(f"{path}: {verb}")
    return 1 if check and dirty else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
