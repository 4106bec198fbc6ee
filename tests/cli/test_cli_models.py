"""`metalake models ...`: register, alias, transition under a policy, at, list, show, policy set/show."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import metalake
from metalake.cli.app import app


def invoke(lake_path: Path, *args: str, actor: str = "tester") -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--lake", str(lake_path), "--actor", actor, *args])
    return result.exit_code, result.output


def test_the_registry_from_the_command_line(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    with lake.runs.start(experiment="churn") as run:
        run.log_metric("val_auc", 0.7)
    card = tmp_path / "card.yaml"
    card.write_text("owner: growth\nintended_use: retention offers\n")
    code, out = invoke(
        lake_path, "models", "register", "churn", "--run-id", run.run_id, "--artifact-uri", "s3://m/1",
        "--card", str(card), "--flavor", "sklearn",
    )  # fmt: skip
    assert code == 0 and "Registered churn version 1" in out, out
    assert invoke(lake_path, "models", "alias", "churn", "champion", "1")[0] == 0
    code, out = invoke(lake_path, "models", "show", "churn", "champion")
    assert code == 0 and "card.intended_use" in out and "champion" in out, out
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "production:\n  require_metrics: {val_auc: '>= 0.8'}\n  require_distinct_approver: true\n"
    )
    assert invoke(lake_path, "models", "policy", "set", str(policy))[0] == 0
    code, out = invoke(lake_path, "models", "policy", "show")
    assert code == 0 and "require_metrics" in out
    code, out = invoke(lake_path, "models", "transition", "churn", "1", "production", "--reason", "launch")
    assert (
        code == 1
        and "require_metrics" in out
        and "require_distinct_approver" in out
        and "Traceback" not in out
    )
    assert invoke(lake_path, "models", "transition", "churn", "1", "staging")[0] == 0
    code, out = invoke(lake_path, "models", "list", "--stage", "staging")
    assert code == 0 and "churn" in out and "staging" in out, out
    code, out = invoke(lake_path, "models", "at", "churn", "2000-01-01", "--stage", "staging")
    assert code == 0 and "No version of churn" in out
    code, out = invoke(lake_path, "models", "at", "churn", "2100-01-01", "--stage", "staging")
    assert code == 0 and "version 1 was in 'staging'" in out
    code, out = invoke(lake_path, "models", "transition", "churn", "1", "retired")
    assert code == 2 and "not a stage" in out
    code, out = invoke(lake_path, "models", "show", "nope")
    assert code == 1 and "Unknown model 'nope'" in out
