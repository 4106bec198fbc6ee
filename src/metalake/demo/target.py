"""Which lakes `metalake demo` writes to: a new or empty lake, or one an earlier demo built; never anyone else's.

The demo writes sample datasets, a lake-wide registry policy, deployments and KPIs. In a lake that holds other
data they would mix with it (a second `wine` dataset, a policy replaced for every client), so such a lake, or a
folder of other files, is refused before anything is written. A lake counts as the demo's when it has a
`demo-round-N` snapshot or the demo's experiments, which every round describes before writing anything else
(so a round cut short can be run again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from metalake.core.catalog_store import CATALOG_TABLE
from metalake.core.storage import resolve
from metalake.core.tables import POLICIES_TABLE
from metalake.demo.training import EXPERIMENTS
from metalake.errors import NotADemoLake

if TYPE_CHECKING:
    from metalake.lake import Lake

SNAPSHOT_PREFIX = "demo-round-"  # the snapshot each finished round pins
DEMO_TAG = "demo"  # the demo's experiments carry tags {"demo": "true"}: the lake's mark as the demo's
SHOWN_NAMES = 4


def check_folder(uri: str) -> None:
    """Before connecting (which creates the lake's tables): a local folder must be missing, empty or a lake.

    An object store is not listed here; `check_lake` still refuses a lake there that holds other data.
    """
    location = resolve(uri)
    if not location.is_local:
        return
    folder = Path(location.uri)
    if not folder.is_dir() or (folder / CATALOG_TABLE).is_dir():
        return
    names = sorted(entry.name for entry in folder.iterdir())
    if names:
        shown = ", ".join(names[:SHOWN_NAMES]) + (", ..." if len(names) > SHOWN_NAMES else "")
        raise NotADemoLake(location.uri, f"the folder holds other files ({shown}) and is not a metalake lake")


def check_lake(lake: Lake, demo_policy: str) -> None:
    """Refuse a lake that holds data the demo did not write, or whose stored policy is not `demo_policy`'s."""
    if not is_demo_lake(lake):
        filled = [spec.name for spec in lake.tables() if lake.scan(spec.name).head(1).collect().height]
        if filled:
            shown = ", ".join(filled[:SHOWN_NAMES]) + (", ..." if len(filled) > SHOWN_NAMES else "")
            raise NotADemoLake(lake.uri, f"it already holds data that no demo wrote (tables {shown})")
    stored = stored_policy_document(lake)
    if stored is not None and json.loads(stored) != json.loads(demo_policy):
        raise NotADemoLake(
            lake.uri,
            "it keeps a registry policy of its own (`metalake models policy show`), and the demo would replace "
            "it for every client of the lake",
        )


def is_demo_lake(lake: Lake) -> bool:
    """Whether an earlier demo wrote here: a `demo-round-N` snapshot, or the demo's marked experiments."""
    if any(name.startswith(SNAPSHOT_PREFIX) for name in lake.snapshots().get_column("snapshot").to_list()):
        return True
    experiments = lake.read("experiments", columns=["experiment", "tags"])
    return any(
        row["experiment"] in EXPERIMENTS and json.loads(row["tags"] or "{}").get(DEMO_TAG) == "true"
        for row in experiments.iter_rows(named=True)
    )


def stored_policy_document(lake: Lake) -> str | None:
    """The registry policy stored last in the lake (JSON), None when the lake stores none."""
    import polars as pl

    from metalake.registry.registry import POLICY_NAME

    stored = lake.read(POLICIES_TABLE, where=pl.col("policy") == POLICY_NAME)
    if stored.is_empty():
        return None
    return str(stored.sort("recorded_at").row(-1, named=True)["document"])
