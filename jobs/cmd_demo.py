"""Command: demo (sample data → three runs → URLs to fetch)."""

from __future__ import annotations

import click

from feedgen.jobs.cmd_pipeline import print_run_summary
from feedgen.jobs.options import root_option
from feedgen.jobs.progress import console, stage

DEMO_TOKEN = "demo-token"
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

    from feedgen.generator.definitions import load_definitions
    from feedgen.jobs.paths import EXAMPLES_DIR

    definitions = load_definitions(EXAMPLES_DIR / "definitions")
    digest = hashlib.sha256(DEMO_TOKEN.encode()).hexdigest()
    config = {
        "root": str(Path(root).resolve()),
        "definitions": str(EXAMPLES_DIR / "definitions"),
        "server": {"tokens": {d.id: digest for d in definitions.definitions},
                   "admin_token_sha256": hashlib.sha256(b"demo-admin").hexdigest()},
    }
    path = Path(root) / "demo.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return str(path)


@click.command("demo")
@root_option
@click.option("--offers", default=20_000, show_default=True, type=click.IntRange(min=100))
@click.option("--customers", default=5_000, show_default=True, type=click.IntRange(min=100))
@click.option("--master", default=None, help="Spark master URL (default: local[*]).")
def demo(root: str | None, offers: int, customers: int, master: str | None) -> None:
    """Sample data → three runs (adds, deltas, a held run) → feed URLs to fetch."""
    from feedgen.jobs.cmd_data import print_aggregate_summary, write_sample
    from feedgen.jobs.config import load_config
    from feedgen.jobs.pipeline import run_pipeline
    from feedgen.jobs.runs import new_run_id, parse_as_of, root_lock

    root = root or "./var/demo"
    config_path = write_demo_config(root)
    config = load_config(config_path)
    records = []
    for variant, as_of, title in DEMO_STEPS:
        console.rule(f"[bold]{title}[/bold]")
        with stage(f"sample data (variant {variant})") as step:
            write_sample(f"{config.root}/sample", offers, customers, 7, variant, step)
        run_id = new_run_id()
        with root_lock(config.root, run_id):
            record = run_pipeline(config, run_id=run_id, as_of=parse_as_of(as_of),
                                  definitions_dir=str(config.get("definitions")), master=master)
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


COMMANDS = [demo]
