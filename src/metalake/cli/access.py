"""`metalake access ...`: principals, groups, tokens and grants of the lake, and who may do what (`check`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from metalake.cli.common import FormatOption, open_lake, reports_errors
from metalake.core.vocabulary import PrincipalKind

if TYPE_CHECKING:
    from metalake.access import IssuedToken
    from metalake.lake import Lake

access_app = typer.Typer(
    name="access",
    help=(
        "Who may do what through `metalake serve`: principals (users, service accounts, groups), their tokens, "
        "and grants of read, write, manage, unmask or admin on the lake, a table, an experiment, a model, a "
        "dataset, a KPI or a lineage namespace. All of it is lake data: `access list --as-of` shows the past."
    ),
    no_args_is_help=True,
)
principal_app = typer.Typer(
    name="principal",
    help="Create, list, disable and enable users, service accounts and groups.",
    no_args_is_help=True,
)
group_app = typer.Typer(
    name="group", help="Add principals to groups and take them out.", no_args_is_help=True
)
token_app = typer.Typer(name="token", help="Create, list and revoke API tokens.", no_args_is_help=True)
access_app.add_typer(principal_app, name="principal")
access_app.add_typer(group_app, name="group")
access_app.add_typer(token_app, name="token")

PRIVILEGE_HELP = "read, write (implies read), manage (grant on it; implies write), unmask, admin (lake only)."
SECURABLE_HELP = (
    "lake, or KIND:NAME: experiment:churn (its runs too), model:NAME (its versions), dataset:NAME, table:NAME, "
    "view:NAME, kpi:NAME, namespace:NAME (lineage)."
)
ExpiresOption = Annotated[
    str | None,
    typer.Option(
        "--expires",
        metavar="WHEN",
        help="When the token stops working: a duration (90m, 12h, 30d, 2w) or an ISO time. Default: never.",
    ),
]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why, recorded with the change.")]
AsOfOption = Annotated[
    str | None,
    typer.Option("--as-of", metavar="WHEN", help="As it was then: an ISO time or a snapshot name."),
]


def _at(lake: Lake, as_of: str | None) -> Lake:
    return lake.as_of(as_of) if as_of else lake


def _print_token(issued: IssuedToken, what: str) -> None:
    """The token alone on stdout (so `TOKEN=$(metalake access token create ci)` works), the rest on stderr."""
    from rich.markup import escape

    from metalake.cli.output import stderr_console, stdout_console

    expiry = f", expires {issued.expires_at:%Y-%m-%d %H:%M} UTC" if issued.expires_at else ", does not expire"
    stderr_console().print(
        f"{escape(what)} (token id {issued.token_id}{expiry}). It is shown this once; the lake keeps only its "
        "hash. Clients send it as `Authorization: Bearer TOKEN` (MLflow: MLFLOW_TRACKING_TOKEN).",
        soft_wrap=True,
    )
    stdout_console().print(issued.token, soft_wrap=True, markup=False)


@access_app.command("init")
@reports_errors
def init_access(
    ctx: typer.Context,
    admin: Annotated[str, typer.Argument(help="Name of the first admin.")] = "admin",
    expires: ExpiresOption = None,
) -> None:
    """Make the lake's first admin (admin on the lake) and print its token, once per lake.

    `metalake serve` refuses to start on a lake without principals (unless --no-auth); this is the first step.

    Example: metalake access init alice
    """
    lake = open_lake(ctx)
    issued = lake.access.init(admin, expires=expires)
    _print_token(issued, f"{admin} is the lake's admin")


# -- principals and groups ------------------------------------------------------------------------------------


@principal_app.command("create")
@reports_errors
def create_principal(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name, e.g. alice, ci-bot, data-science.", show_default=False)],
    kind: Annotated[
        PrincipalKind, typer.Option("--kind", help="user, service (a job or tool) or group.")
    ] = "user",
    description: Annotated[str | None, typer.Option("--description", help="Who or what it is.")] = None,
) -> None:
    """Create a principal. It holds nothing until granted (`metalake access grant`).

    Example: metalake access principal create ci-bot --kind service
    """
    from metalake.cli.output import stdout_console

    lake = open_lake(ctx)
    lake.access.create_principal(name, kind=kind, description=description)
    follow = (
        f"add members with `metalake access group add {name} MEMBER`"
        if kind == "group"
        else f"give it a token with `metalake access token create {name}`"
    )
    stdout_console().print(f"Created {kind} {name}; {follow}.", soft_wrap=True, markup=False)


@principal_app.command("list")
@reports_errors
def list_principals(
    ctx: typer.Context, as_of: AsOfOption = None, output_format: FormatOption = "table"
) -> None:
    """List the principals: kind, enabled, groups, who made them and when.

    Example: metalake access principal list --format csv
    """
    from metalake.cli.output import write_rows

    lake = open_lake(ctx)
    write_rows(
        _at(lake, as_of).access.principals(),
        output_format=output_format,
        title="Principals",
        empty="No principals yet: `metalake access init` makes the first admin.",
    )


@principal_app.command("disable")
@reports_errors
def disable_principal(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The principal.", show_default=False)],
    reason: ReasonOption = None,
) -> None:
    """Stop a principal at once: its tokens and grants stop working (kept for `enable`)."""
    from metalake.cli.output import stdout_console

    open_lake(ctx).access.disable_principal(name, reason=reason)
    stdout_console().print(f"Disabled {name}.", soft_wrap=True, markup=False)


@principal_app.command("enable")
@reports_errors
def enable_principal(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The principal.", show_default=False)],
    reason: ReasonOption = None,
) -> None:
    """Let a disabled principal work again, with the tokens and grants it had."""
    from metalake.cli.output import stdout_console

    open_lake(ctx).access.enable_principal(name, reason=reason)
    stdout_console().print(f"Enabled {name}.", soft_wrap=True, markup=False)


@group_app.command("add")
@reports_errors
def add_member(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="The group.", show_default=False)],
    member: Annotated[str, typer.Argument(help="A user, service account or group.", show_default=False)],
) -> None:
    """Put a principal in a group: it holds the group's grants.

    Example: metalake access group add data-science alice
    """
    from metalake.cli.output import stdout_console

    open_lake(ctx).access.add_member(group, member)
    stdout_console().print(f"{member} is a member of {group}.", soft_wrap=True, markup=False)


@group_app.command("remove")
@reports_errors
def remove_member(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="The group.", show_default=False)],
    member: Annotated[str, typer.Argument(help="The member to take out.", show_default=False)],
) -> None:
    """Take a principal out of a group."""
    from metalake.cli.output import stdout_console

    open_lake(ctx).access.remove_member(group, member)
    stdout_console().print(f"{member} is no longer a member of {group}.", soft_wrap=True, markup=False)


# -- tokens ---------------------------------------------------------------------------------------------------


@token_app.command("create")
@reports_errors
def create_token(
    ctx: typer.Context,
    principal: Annotated[
        str, typer.Argument(help="Whose token (a user or service account).", show_default=False)
    ],
    expires: ExpiresOption = None,
    name: Annotated[str | None, typer.Option("--name", help="What it is for, e.g. laptop or ci.")] = None,
) -> None:
    """Make an API token and print it, once. Only the token goes to stdout:

    TOKEN=$(metalake access token create ci-bot --expires 30d)
    """
    issued = open_lake(ctx).access.create_token(principal, expires=expires, name=name)
    _print_token(issued, f"A token for {principal}")


@token_app.command("revoke")
@reports_errors
def revoke_token(
    ctx: typer.Context,
    token_id: Annotated[
        str, typer.Argument(help="The token's id (`token list`), or the token.", show_default=False)
    ],
    reason: ReasonOption = None,
) -> None:
    """Stop a token at once (a server sees it within a second)."""
    from metalake.access.tokens import token_id_of
    from metalake.cli.output import stdout_console

    open_lake(ctx).access.revoke_token(token_id, reason=reason)
    stdout_console().print(f"Revoked token {token_id_of(token_id)}.", soft_wrap=True, markup=False)


@token_app.command("list")
@reports_errors
def list_tokens(
    ctx: typer.Context,
    principal: Annotated[str | None, typer.Argument(help="Only this principal's tokens.")] = None,
    output_format: FormatOption = "table",
) -> None:
    """List the tokens (never their text): id, principal, name, state (active, expired, revoked), dates."""
    from metalake.cli.output import write_rows

    write_rows(
        open_lake(ctx).access.tokens(principal),
        output_format=output_format,
        title="Tokens",
        empty="No tokens.",
    )


# -- grants ---------------------------------------------------------------------------------------------------


@access_app.command("grant")
@reports_errors
def grant(
    ctx: typer.Context,
    principal: Annotated[
        str, typer.Argument(help="Who (a user, service account or group).", show_default=False)
    ],
    privilege: Annotated[str, typer.Argument(help=PRIVILEGE_HELP, show_default=False)],
    securable: Annotated[str, typer.Argument(help=SECURABLE_HELP, show_default=False)],
    reason: ReasonOption = None,
) -> None:
    """Give a principal a privilege on a securable (a grant on a container covers what it holds).

    Example: metalake access grant alice read experiment:churn
    """
    from metalake.cli.output import stdout_console

    given = open_lake(ctx).access.grant(principal, privilege, securable, reason=reason)
    stdout_console().print(
        f"{given.principal} holds {given.privilege} on {given.securable} (grant {given.grant_id}).",
        soft_wrap=True,
        markup=False,
    )


@access_app.command("revoke")
@reports_errors
def revoke(
    ctx: typer.Context,
    principal: Annotated[str, typer.Argument(help="Who holds the grant.", show_default=False)],
    privilege: Annotated[str, typer.Argument(help=PRIVILEGE_HELP, show_default=False)],
    securable: Annotated[str, typer.Argument(help=SECURABLE_HELP, show_default=False)],
    reason: ReasonOption = None,
) -> None:
    """End a grant. The grant stays in the history (`access list --as-of`).

    Example: metalake access revoke alice read experiment:churn --reason "left the team"
    """
    from metalake.cli.output import stdout_console

    ended = open_lake(ctx).access.revoke(principal, privilege, securable, reason=reason)
    ids = ", ".join(grant.grant_id for grant in ended)
    stdout_console().print(
        f"{principal} no longer holds {privilege} on {securable} (revoked {ids}).",
        soft_wrap=True,
        markup=False,
    )


@access_app.command("list")
@reports_errors
def list_grants(
    ctx: typer.Context,
    subject: Annotated[
        str | None,
        typer.Argument(
            metavar="[PRINCIPAL|SECURABLE]",
            help="A principal (its grants, its groups' too) or a securable (the grants that decide on it).",
        ),
    ] = None,
    as_of: AsOfOption = None,
    output_format: FormatOption = "table",
) -> None:
    """List the grants in force, now or at a past moment.

    Example: metalake access list model:churn --as-of 2026-03-01
    """
    from metalake.cli.output import write_rows

    access = _at(open_lake(ctx), as_of).access
    is_securable = subject is not None and (subject == "lake" or ":" in subject)
    rows = access.list(securable=subject) if is_securable else access.list(principal=subject)
    when = f" at {as_of}" if as_of else ""
    write_rows(
        rows,
        output_format=output_format,
        title=f"Grants{' of ' + subject if subject else ''}{when}",
        empty="No grants in force.",
    )


@access_app.command("check")
@reports_errors
def check(
    ctx: typer.Context,
    principal: Annotated[str, typer.Argument(help="Who.", show_default=False)],
    action: Annotated[str, typer.Argument(help=PRIVILEGE_HELP, show_default=False)],
    securable: Annotated[
        str, typer.Argument(help=SECURABLE_HELP + " KIND:* is the kind as a whole.", show_default=False)
    ],
    as_of: AsOfOption = None,
    output_format: FormatOption = "table",
) -> None:
    """May PRINCIPAL do ACTION on SECURABLE, and which grant decides? Exit code 0 when allowed, 1 when denied.

    Example: metalake access check alice read experiment:churn --as-of 2026-03-01
    """
    import polars as pl

    from metalake.cli.output import stdout_console, write_rows

    decision = _at(open_lake(ctx), as_of).access.check(principal, action, securable)
    row = {
        "principal": decision.principal,
        "action": decision.action,
        "securable": decision.securable,
        "decision": "allowed" if decision.allowed else "denied",
        "grant_id": decision.grant.grant_id if decision.grant else None,
        "reason": decision.reason,
    }
    if output_format == "table":
        verdict = "[green]allowed[/]" if decision.allowed else "[red]denied[/]"
        from rich.markup import escape

        text = f"{verdict}: {escape(decision.principal)} {decision.action} {escape(decision.securable)}"
        stdout_console().print(f"{text}, {escape(decision.reason)}.", soft_wrap=True)
    else:
        write_rows(pl.DataFrame([row], schema=dict.fromkeys(row, pl.String)), output_format=output_format)
    if not decision.allowed:
        raise typer.Exit(1)
