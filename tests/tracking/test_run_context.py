"""Run context: the packages hash follows the environment's distributions, cheaply and reproducibly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from metalake.tracking.run_context import packages_hash


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path that holds one installed distribution."""
    (tmp_path / "numpy-2.1.0.dist-info").mkdir()
    monkeypatch.setattr(sys, "path", [str(tmp_path), str(tmp_path / "missing"), *sys.path])
    return tmp_path


def test_the_packages_hash_is_stable_while_the_environment_is(site: Path) -> None:
    first = packages_hash()
    assert len(first) == 16 and int(first, 16) >= 0
    (site / "numpy").mkdir()  # a package's own folder is not a distribution
    assert packages_hash() == first


def test_the_packages_hash_changes_when_a_distribution_is_added_or_upgraded(site: Path) -> None:
    before = packages_hash()
    (site / "Typing_Extensions-4.12.2.dist-info").mkdir()
    added = packages_hash()
    assert added != before
    (site / "numpy-2.1.0.dist-info").rename(site / "numpy-2.2.0.dist-info")
    assert packages_hash() not in (before, added)


def test_the_packages_hash_normalises_names(site: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    (site / "typing_extensions-4.12.2.dist-info").mkdir()
    other = tmp_path_factory.mktemp("other")
    (other / "numpy-2.1.0.dist-info").mkdir()
    (other / "Typing.Extensions-4.12.2.dist-info").mkdir()
    spelled_one_way = packages_hash()
    sys.path[0] = str(other)
    assert packages_hash() == spelled_one_way
