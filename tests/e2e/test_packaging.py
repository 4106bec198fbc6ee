"""`pip install .` (not only editable) works: the wheel carries tables/ and sql/, and a lake opens from it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("metalake-*.whl")
    return built


def test_wheel_ships_table_specs_and_views(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped_specs = {Path(n).name for n in names if n.startswith("metalake/_bundled/tables/")}
    shipped_views = {Path(n).name for n in names if n.startswith("metalake/_bundled/sql/")}
    assert {p.name for p in (ROOT / "tables").glob("*.yaml")} == shipped_specs
    assert {p.name for p in (ROOT / "sql").glob("*.sql")} == shipped_views


def test_installed_wheel_opens_a_lake_and_queries_a_view(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    script = (
        "import metalake, metalake.core.catalog as c\n"
        "assert metalake.__file__.startswith({!r}), metalake.__file__\n"
        "assert '_bundled' in str(c.bundled_dir('tables'))\n"
        "lake = metalake.connect({!r})\n"
        "print(lake.sql('select count(*) from runs_current').fetchall())\n"
    ).format(str(target), str(tmp_path / "lake"))
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[(0,)]"
