"""`metalake models ...`: the model registry and its governance policy from the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from metalake.cli.common import MAX_VERSION, FormatOption, ShowFormatOption, open_lake, reports_errors

if TYPE_CHECKING:
    import polars as pl

    from metalake.cli.output import Section
    from metalake.core.vocabulary import Stage
    from metalake.registry.registry import ModelVersion

models_app = typer.Typer(
    name="models",
    help="Register model versions, set aliases, move them through stages.",
    no_args_is_help=True,
)
policy_app = typer.Typer(name="policy", help="The governance policy kept in the lake.", no_args_is_help=True)
models_app.add_typer(policy_app, name="policy")

LIST_COLUMNS = ["model", "version", "stage", "aliases", "run_id", "flavor", "registered_at", "registered_by"]


@models_app.command("list")
@reports_errors
def list_models(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(help="Only this model's versions.")] = None,
    stage: Annotated[
        str | None,
        typer.Option(
            "--stage", "-s", help="Only versions in this stage: none, staging, production or archived."
        ),
    ] = None,
    output_format: FormatOption = "table",
) -> None:
    """List registered model versions with their stage and aliases.

    csv, json and jsonl give every column of lake.registry.versions (the registry_current view).

    Example: metalake models list churn --stage production
    """
    import polars as pl

    from metalake.cli.output import write_rows

    versions = open_lake(ctx).registry.versions(model)
    if stage:
        versions = versions.filter(pl.col("stage") == _as_stage(stage))
    write_rows(
        versions,
        output_format=output_format,
        table=versions.select([c for c in LIST_COLUMNS if c in versions.columns]),
        title=f"{versions.height} model version(s)",
        empty="No model versions. Register one with: metalake models register MODEL --run-id ID --artifact-uri URI",
    )


@models_app.command("show")
@reports_errors
def show_model(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version number, alias, stage name or 'latest'.")] = "latest",
    output_format: ShowFormatOption = "table",
) -> None:
    """Show one model version: stage, aliases, run, card, and its lineage (inputs and their data quality).

    json: what lake.registry.get returns (model, version, run_id, artifact_uri, flavor, signature, card,
    description, stage, aliases, registered_at, registered_by) and trained_on, the datasets from the
    model_lineage view. csv and jsonl: the version as one row (signature and card as JSON text).

    Example: metalake models show churn champion
    """
    from metalake.cli.output import frame_section, write_rows

    lake = open_lake(ctx)
    found = lake.registry.get(model, version)
    lineage = lake.sql(
        "select dataset, dataset_version, context, dq_success, dq_validated_at, suite_name from model_lineage "
        "where model = ? and version = ? and dataset is not null",
        [model, found.version],
    ).pl()
    sections = [version_section(found)]
    if not lineage.is_empty():
        sections.append(frame_section(lineage, title="Trained on"))
    document = {**_version_record(found), "trained_on": lineage}
    write_rows(version_frame(found), output_format=output_format, table=sections, document=document)


@models_app.command("register")
@reports_errors
def register_model(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    artifact_uri: Annotated[str, typer.Option("--artifact-uri", "-a", help="Where the model's files are.")],
    run_id: Annotated[str | None, typer.Option("--run-id", "-r", help="Run that trained it.")] = None,
    flavor: Annotated[str | None, typer.Option("--flavor", help="Framework, e.g. sklearn.")] = None,
    card: Annotated[
        Path | None,
        typer.Option("--card", help="Model card: a YAML or JSON file (owner, intended_use, ...)."),
    ] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
) -> None:
    """Register a new version of a model (numbered per model), linked to the run that trained it.

    Example: metalake models register churn --run-id 0193a7c2... --artifact-uri s3://models/churn/7 --card card.yaml
    """
    from metalake.cli.output import stdout_console

    registry = open_lake(ctx).registry
    # register returns the existing version for the same run and artifact: say so, not "Registered".
    earlier = registry.versions(model).get_column("version").to_list() if model in registry.models() else []
    registered = registry.register(
        model,
        run_id=run_id,
        artifact_uri=artifact_uri,
        flavor=flavor,
        card=_read_card(card) if card else None,
        description=description,
    )
    if registered.version in earlier:
        stdout_console().print(
            f"{registered.model} version {registered.version} was already registered with this run and "
            "artifact; nothing new was written.",
            soft_wrap=True,
            markup=False,
        )
        return
    stdout_console().print(f"Registered {registered.model} version {registered.version}.")


@models_app.command("alias")
@reports_errors
def alias_model(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. champion.")],
    version: Annotated[
        int | None,
        typer.Argument(help="Version the alias names (omit with --delete).", min=1, max=MAX_VERSION),
    ] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
) -> None:
    """Point an alias at a version, or remove it.

    Example: metalake models alias churn champion 3
    """
    from metalake.cli.output import stdout_console
    from metalake.errors import MetalakeError

    registry = open_lake(ctx).registry
    if delete:
        registry.delete_alias(model, alias, reason=reason)
        stdout_console().print(f"Removed alias {alias!r} of {model}.")
        return
    if version is None:
        raise MetalakeError(
            "Give the version the alias should name, e.g. metalake models alias churn champion 3."
        )
    registry.set_alias(model, alias, version, reason=reason)
    stdout_console().print(f"{model}@{alias} -> version {version}.")


@models_app.command("transition")
@reports_errors
def transition_model(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version number.", min=1, max=MAX_VERSION)],
    stage: Annotated[str, typer.Argument(help="none, staging, production or archived.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why; required for an override.")] = None,
    override: Annotated[
        bool, typer.Option("--override", help="Force past failing rules, where the policy allows it.")
    ] = False,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Policy YAML to enforce (default: the lake's).")
    ] = None,
    archive_others: Annotated[
        bool, typer.Option("--archive-others", help="Archive the versions now in that stage.")
    ] = False,
) -> None:
    """Move a version to a stage, if the governance policy allows it; a refusal lists every failing rule.

    Example: metalake --actor reviewer models transition churn 3 production --reason "approved in review"
    """
    from metalake.cli.output import stdout_console

    registry = open_lake(ctx).registry
    if policy is not None:
        registry.use_policy(policy)
    moved = registry.transition(
        model, version, _as_stage(stage), reason=reason, override=override, archive_others=archive_others
    )
    stdout_console().print(f"{moved.model} version {moved.version} is now in {moved.stage!r}.")


@models_app.command("at")
@reports_errors
def model_at(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    when: Annotated[str, typer.Argument(help="A date or time, ISO-8601 (e.g. 2026-03-01).")],
    stage: Annotated[str, typer.Option("--stage", "-s", help="Stage to ask about.")] = "production",
    output_format: FormatOption = "table",
) -> None:
    """Which version was in a stage at a past moment (answered from the append-only events).

    The table is one sentence. csv, json and jsonl give the version as `models show` does, as a list of
    one row, or of none when no version was in the stage then.

    Example: metalake models at churn 2026-03-01
    """
    from metalake.cli.output import Section, write_rows

    found = open_lake(ctx).registry.at(model, when, stage=_as_stage(stage))
    if found is None:
        answer = f"No version of {model} was in {stage!r} at {when}."
    else:
        answer = f"At {when}, {model} version {found.version} was in {stage!r}."
    write_rows(version_frame(found), output_format=output_format, table=[Section(lines=[answer])])


@policy_app.command("set")
@reports_errors
def set_policy(ctx: typer.Context, path: Annotated[Path, typer.Argument(help="Policy YAML file.")]) -> None:
    """Store a governance policy in the lake, so every client enforces it (an empty file lifts all gates).

    Example: metalake models policy set policy.yaml
    """
    from metalake.cli.output import stdout_console
    from metalake.registry.governance import load_policy

    stored = open_lake(ctx, before_creating=lambda: load_policy(path)).registry.use_policy(path, persist=True)
    stages = ", ".join(sorted(stored.gates)) or "no stage"
    stdout_console().print(f"Policy stored: gates on {stages}.")


@policy_app.command("show")
@reports_errors
def show_policy(ctx: typer.Context) -> None:
    """Show the policy stored in the lake."""
    from metalake.cli.output import stdout_console

    policy = open_lake(ctx).registry.policy
    console = stdout_console()
    if not policy.gates:
        console.print("No policy: every transition is allowed. Set one with: metalake models policy set FILE")
        return
    console.print_json(policy.to_json())


def version_section(found: ModelVersion) -> Section:
    """The version's fields, then its card's as card.KEY."""
    from metalake.cli.output import fields_section

    fields = {
        "stage": found.stage,
        "aliases": ", ".join(found.aliases) or None,
        "run_id": found.run_id,
        "artifact_uri": found.artifact_uri,
        "flavor": found.flavor,
        "description": found.description,
        "registered_at": found.registered_at,
        "registered_by": found.registered_by,
    }
    fields.update({f"card.{key}": value for key, value in found.card.items()})
    return fields_section(fields, title=f"{found.model} version {found.version}")


def _version_record(found: ModelVersion) -> dict[str, Any]:
    from metalake.cli.output import json_ready

    record: dict[str, Any] = json_ready(found)
    return record


def version_frame(found: ModelVersion | None) -> pl.DataFrame:
    """A version as one row with the fields of ModelVersion (none for None); signature and card stay nested."""
    import dataclasses

    import polars as pl

    from metalake.registry.registry import ModelVersion

    names = [f.name for f in dataclasses.fields(ModelVersion)]
    if found is None:
        return pl.DataFrame(schema=dict.fromkeys(names, pl.String))
    plain = _version_record(found)
    record = {name: getattr(found, name) for name in names}
    record["aliases"] = list(found.aliases)
    for nested in ("signature", "card"):  # free-form: JSON text, so that one frame holds any shape
        record[nested] = None if plain[nested] is None else json.dumps(plain[nested])
    return pl.DataFrame([record])


def _as_stage(text: str) -> Stage:
    from metalake.core.vocabulary import STAGES

    if text not in STAGES:
        raise typer.BadParameter(
            f"{text!r} is not a stage; stages are {', '.join(STAGES)}.", param_hint="STAGE"
        )
    return text


def _read_card(path: Path) -> dict[str, Any]:
    from metalake.errors import RegistryError

    if not path.is_file():
        raise RegistryError(f"Model card file {str(path)!r} does not exist.")
    import yaml

    text = path.read_text()
    try:
        loaded = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise RegistryError(f"Model card {path} is not valid YAML or JSON: {error}") from error
    if not isinstance(loaded, dict):
        raise RegistryError(f"Model card {path} must be a mapping of fields (owner, intended_use, ...).")
    return loaded
