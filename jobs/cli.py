"""The ``feedgen`` command line."""

from __future__ import annotations

import sys

import click

from feedgen.core.errors import FeedgenError


class _Group(click.Group):
    """Turns feedgen's errors into one clear line and the documented exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FeedgenError as err:
            click.echo(f"feedgen: error: {err}", err=True)
            sys.exit(err.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR.")
@click.option("--json-logs/--text-logs", default=None, help="Default: JSON when stderr is not a terminal.")
def main(log_level: str, json_logs: bool | None) -> None:
    """feedgen: marketing feeds and audience exports from your catalog and customers.

    Aggregate the sources with Spark, generate every feed and segment in one pass,
    diff against the last run, gate anomalies, publish, serve and emit delta events.
    """
    from feedgen.core.logs import setup_logging

    setup_logging(log_level, json_logs)


def _register() -> None:
    from feedgen.jobs import commands

    for command in commands.all_commands():
        main.add_command(command)


_register()

if __name__ == "__main__":
    main()
