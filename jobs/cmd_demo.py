"""Command: demo (sample data → three runs → URLs to fetch)."""

from __future__ import annotations

import click

from feedgen.jobs.cmd_pipeline import print_run_summary
from feedgen.jobs.options import root_option
from feedgen.jobs.progress import console, stage

DEMO_TOKEN = "demo-token"
# One registry user per role, for the demo only: user demo-<role>, password and API token
# demo-token-<role>. Anyone who reads this file knows them: never create them elsewhere.
DEMO_ROLES = ("viewer", "editor", "publisher", "approver", "admin")
DEMO_STEPS = (
    # (sample-data variant, as_of, what the step shows)
    (0, "2026-11-02T06:00:00Z", "first run: every item is an add"),
    (1, "2026-11-03T06:00:00Z", "a day later: price cuts, sold-out and delisted offers become deltas"),
    (2, "2026-11-04T06:00:00Z", "a broken export: half the offers lost their image, so the gates hold the run"),
)


def write_demo_config(root: str) -> str:
    """A config for the demo root: one access token for every feed and export."""
    import hashlib
    from pathlib import Path

    import yaml

    from feedgen.core.paths import EXAMPLES_DIR
    from feedgen.generator.definitions import load_definitions

    definitions = load_definitions(EXAMPLES_DIR / "definitions")
    digest = hashlib.sha256(DEMO_TOKEN.encode()).hexdigest()
    config = {
        "root": str(Path(root).resolve()),
        "definitions": "registry",  # the published versions (setup_demo_registry imports the examples)
        "server": {"tokens": {d.id: digest for d in definitions.definitions},
                   "admin_token_sha256": hashlib.sha256(b"demo-admin").hexdigest()},
    }
    path = Path(root) / "demo.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return str(path)


def demo_users() -> list[tuple[str, str, str]]:
    """(name, role, password and API token) of each demo user."""
    return [(f"demo-{role}", role, f"demo-token-{role}") for role in DEMO_ROLES]


def setup_demo_registry(config) -> tuple[object, list[tuple[str, str, str]]]:
    """The registry of the demo root: the example definitions published, one user per role with
    its well-known password and token. Again on the same root: nothing changes twice."""
    from feedgen.console.registry import Actor, NotFound, registry_for
    from feedgen.core.paths import EXAMPLES_DIR

    actor = Actor("os:feedgen-demo", "admin")
    registry = registry_for(config)
    try:
        report = registry.import_directory(actor, EXAMPLES_DIR / "definitions")
        accounts = registry.accounts
        users = demo_users()
        for name, role, secret in users:
            try:
                accounts.user(name)
            except NotFound:
                accounts.add_user(actor, name, role, secret)
                accounts.issue_token(actor, name, token=secret)  # a fixed token: the demo's only
    finally:
        registry.close()
    return report, users


def print_demo_users(config, users: list[tuple[str, str, str]]) -> None:
    from feedgen.console.registry import registry_url
    from feedgen.jobs.pinning import redact

    console.print(f"Demo users in the registry {redact(registry_url(config))} "
                  "[bold red](for the demo only: their passwords and tokens are public)[/bold red]:")
    for name, role, secret in users:
        console.print(f"  {name:<15} role {role:<9}  password and API token: {secret}")


@click.command("demo")
@root_option
@click.option("--offers", default=20_000, show_default=True, type=click.IntRange(min=100))
@click.option("--customers", default=5_000, show_default=True, type=click.IntRange(min=100))
@click.option("--master", default=None, help="Spark master URL (default: local[*]).")
def demo(root: str | None, offers: int, customers: int, master: str | None) -> None:
    """Sample data → three runs (adds, deltas, a held run) → feed URLs to fetch."""
    from feedgen.core.config import load_config
    from feedgen.core.runs import new_run_id, parse_as_of, root_lock
    from feedgen.jobs.cmd_data import print_aggregate_summary, write_sample
    from feedgen.jobs.pipeline import run_pipeline

    root = root or "./var/demo"
    config_path = write_demo_config(root)
    config = load_config(config_path)
    with stage("registry: example definitions and demo users"):
        report, users = setup_demo_registry(config)
    console.print(f"registry: {len(report.published)} definitions published, {len(report.unchanged)} unchanged; "
                  "the runs use the published versions (definitions: registry)")
    console.print(f"registry: demo users {', '.join(name for name, _, _ in users)} (for the demo only; "
                  "their passwords and tokens are listed at the end)")
    records = []
    for variant, as_of, title in DEMO_STEPS:
        console.rule(f"[bold]{title}[/bold]")
        with stage(f"sample data (variant {variant})") as step:
            write_sample(f"{config.root}/sample", offers, customers, 7, variant, step)
        run_id = new_run_id()
        with root_lock(config.root, run_id):
            record = run_pipeline(config, run_id=run_id, as_of=parse_as_of(as_of),
                                  definitions_dir=str(config.get("definitions")), master=master,
                                  started_by="demo")
        if variant == 0:
            print_aggregate_summary(record)
        print_run_summary(record)
        records.append(record)
    held = records[-1]
    console.rule("[bold]what to do next[/bold]")
    console.print(f"The last run {held['run_id']} is [yellow]{held['status']}[/yellow]; the feeds of run "
                  f"{records[1]['run_id']} stay current. Inspect and decide:")
    console.print(f"  feedgen runs show {held['run_id']} --config {config_path}")
    console.print(f"  feedgen runs reject {held['run_id']} --config {config_path}")
    console.print("Serve the published feeds and fetch one:")
    console.print(f"  feedgen serve --config {config_path}")
    host, port = config.get("server.host"), config.get("server.port")
    feeds = [d for d, s in sorted(records[1]["definitions"].items()) if s.get("kind") == "feed"][:3]
    segments = [d for d, s in sorted(records[1]["definitions"].items()) if s.get("kind") == "segment"][:2]
    for feed in feeds:
        console.print(f"  curl -s 'http://{host}:{port}/feeds/{feed}?token={DEMO_TOKEN}' | head")
    for seg in segments:
        console.print(f"  curl -s 'http://{host}:{port}/segments/{seg}/export?token={DEMO_TOKEN}' | head")
    console.rule("[bold]the definitions registry[/bold]")
    print_demo_users(config, users)
    console.print("Each run pinned the versions it used (runs/<run_id>/definitions.yaml, versions in run.json):")
    console.print(f"  feedgen users list --config {config_path}")
    console.print(f"  feedgen definitions export exported-definitions --config {config_path}")


COMMANDS = [demo]
