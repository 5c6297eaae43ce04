"""Commands on the definitions registry: definitions import|export, users add|token|disable|list."""

from __future__ import annotations

import getpass
import sys

import click

from feedgen.jobs.options import config_option, root_option

registry_option = click.option(
    "--registry", "registry", default=None, metavar="URL",
    help="Registry database URL (default: config 'registry.url', else sqlite:///{root}/feedgen.db).",
)


def _open(config_path: str | None, root: str | None, registry: str | None):
    from feedgen.console.registry import registry_for
    from feedgen.core.config import load_config

    config = load_config(config_path, root=root)
    return registry_for(config, registry)


def _os_actor():
    """The CLI acts as the OS user, with every permission (it has the database itself)."""
    from feedgen.console.registry import Actor

    return Actor(f"os:{getpass.getuser()}", "admin")


@click.group("definitions")
def definitions() -> None:
    """Move definitions between YAML folders and the registry (a git workflow both ways)."""


@definitions.command("import")
@click.argument("directory", type=click.Path(file_okay=False))
@config_option
@root_option
@registry_option
def definitions_import(directory: str, config_path: str | None, root: str | None, registry: str | None) -> None:
    """Publish every definition of DIRECTORY that differs from its published version.

    The folder is validated together with the published set first; on any problem nothing
    is written (exit 2). Each new version's message is the file it came from.
    """
    reg = _open(config_path, root, registry)
    try:
        report = reg.import_directory(_os_actor(), directory)
    finally:
        reg.close()
    for definition_id, version, file in report.published:
        click.echo(f"published {definition_id} version {version} ({file})")
    click.echo(f"{directory}: {len(report.published)} published, {len(report.unchanged)} unchanged")


@definitions.command("export")
@click.argument("directory", type=click.Path(file_okay=False))
@config_option
@root_option
@registry_option
def definitions_export(directory: str, config_path: str | None, root: str | None, registry: str | None) -> None:
    """Write the published definitions to DIRECTORY/feeds/ and DIRECTORY/segments/, one YAML
    file each (byte-stable); files there of definitions no longer published are removed."""
    reg = _open(config_path, root, registry)
    try:
        written, removed = reg.export_directory(directory)
    finally:
        reg.close()
    for path in removed:
        click.echo(f"removed {path} (no longer published)")
    click.echo(f"{directory}: {len(written)} definitions exported")


@click.group("users")
def users() -> None:
    """Console users and their API tokens (roles: viewer, editor, publisher, approver, admin)."""


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["viewer", "editor", "publisher", "approver", "admin"]))
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@config_option
@root_option
@registry_option
def users_add(name: str, role: str, password_stdin: bool, config_path: str | None, root: str | None,
              registry: str | None) -> None:
    """Add user NAME with ROLE; the password is asked for (or read with --password-stdin), never an argument."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    reg = _open(config_path, root, registry)
    try:
        user = reg.accounts.add_user(_os_actor(), name, role, password)
    finally:
        reg.close()
    click.echo(f"added {user.name} ({user.role})")


@users.command("token")
@click.argument("name")
@config_option
@root_option
@registry_option
def users_token(name: str, config_path: str | None, root: str | None, registry: str | None) -> None:
    """Print a new API token for NAME. It is shown this once: only its hash is stored."""
    reg = _open(config_path, root, registry)
    try:
        token = reg.accounts.issue_token(_os_actor(), name)
    finally:
        reg.close()
    click.echo(token)


@users.command("disable")
@click.argument("name")
@click.option("--reason", default="", help="Why (kept in the audit log).")
@config_option
@root_option
@registry_option
def users_disable(name: str, reason: str, config_path: str | None, root: str | None, registry: str | None) -> None:
    """Stop NAME from logging in; none of NAME's tokens works any more."""
    reg = _open(config_path, root, registry)
    try:
        reg.accounts.disable_user(_os_actor(), name, reason)
    finally:
        reg.close()
    click.echo(f"disabled {name}")


@users.command("list")
@config_option
@root_option
@registry_option
def users_list(config_path: str | None, root: str | None, registry: str | None) -> None:
    """Every user with their role, state and number of active tokens."""
    reg = _open(config_path, root, registry)
    try:
        found = reg.accounts.list_users()
    finally:
        reg.close()
    if not found:
        click.echo("no users yet: add one with 'feedgen users add NAME --role admin'")
        return
    width = max(len(u.name) for u in found)
    for u in found:
        state = "disabled" if u.disabled else "active"
        click.echo(f"{u.name:<{width}}  {u.role:<9}  {state:<8}  {u.tokens} token{'s' if u.tokens != 1 else ''}")


COMMANDS = [definitions, users]
