"""The architecture holds: no private names across modules, one home per vocabulary, every error in errors.py,
explicit public surfaces. (`make lint` checks the import layers with import-linter.)"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import metalake
from metalake.core.catalog import bundled_dir, load_spec_file
from metalake.core.vocabulary import TABLE_VOCABULARIES
from metalake.errors import MetalakeError

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "metalake"


def all_modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages([str(PACKAGE)], prefix="metalake.")
        if "__main__" not in info.name
    )


def python_files() -> list[Path]:
    return sorted(
        path for folder in ("src", "tests", "bench", "notebooks") for path in (ROOT / folder).rglob("*.py")
    )


def test_no_module_imports_a_private_name_of_another_module() -> None:
    offenders = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                not isinstance(node, ast.ImportFrom)
                or not node.module
                or not node.module.startswith("metalake")
            ):
                continue
            private_parts = [p for p in node.module.split(".") if p.startswith("_") and p != "_version"]
            private_names = [
                a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")
            ]
            if private_parts or private_names:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module} {private_names}")
    assert offenders == []


@pytest.mark.parametrize(("table", "column"), sorted(TABLE_VOCABULARIES))
def test_each_vocabulary_matches_the_isin_check_of_its_table_spec(table: str, column: str) -> None:
    spec = load_spec_file(bundled_dir("tables") / f"{table}.yaml")
    assert list(spec.column(column).checks["isin"]) == list(TABLE_VOCABULARIES[table, column])


def test_every_isin_check_of_the_specs_has_its_vocabulary() -> None:
    """A new closed set of values in a spec gets its Literal in core/vocabulary.py, the one home of them."""
    closed = {
        (spec.name, column.name)
        for spec in (load_spec_file(path) for path in sorted(bundled_dir("tables").glob("*.yaml")))
        for column in spec.columns
        if "isin" in column.checks
    }
    assert closed == set(TABLE_VOCABULARIES)


def test_every_error_class_lives_in_errors_and_is_exported() -> None:
    for name in all_modules():
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, MetalakeError):
                assert value.__module__ == "metalake.errors", (
                    f"{value.__qualname__} is defined in {value.__module__}"
                )
                assert value.__name__ in metalake.__all__, f"metalake does not export {value.__name__}"


def test_every_package_declares_its_public_names() -> None:
    packages = [
        name for name in ["metalake", *all_modules()] if hasattr(importlib.import_module(name), "__path__")
    ]
    for name in packages:
        package = importlib.import_module(name)
        assert isinstance(getattr(package, "__all__", None), list), f"{name} has no explicit __all__"
        for public in package.__all__:
            assert getattr(package, public, None) is not None, f"{name}.__all__ names a missing {public}"


def test_the_value_types_users_annotate_with_come_from_metalake() -> None:
    for name in (
        "Lake",
        "Commit",
        "Run",
        "RunDetails",
        "ModelVersion",
        "DatasetVersion",
        "Deployment",
        "Validation",
    ):
        assert name in metalake.__all__ and inspect.isclass(getattr(metalake, name))
    assert "Stage" in metalake.__all__ and "RunStatus" in metalake.__all__
    assert "ContractFailure" in metalake.__all__ and "RuleFailure" in metalake.__all__  # in errors' fields


def test_the_documented_old_import_paths_keep_working() -> None:
    from metalake.duckdb_export import export_duckdb
    from metalake.integrations.mlflow import import_mlflow

    assert callable(import_mlflow) and callable(export_duckdb)


def test_nothing_below_the_facade_imports_lake() -> None:
    below = [
        name
        for name in all_modules()
        if not name.startswith(
            ("metalake.cli", "metalake.server", "metalake.demo", "metalake.integrations", "metalake.exports")
        )
    ]
    offenders = []
    for name in below:
        if name in ("metalake.lake", "metalake.duckdb_export"):
            continue
        source = Path(importlib.import_module(name).__file__ or "").read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module == "metalake.lake":
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []
