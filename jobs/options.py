"""Click options shared by several commands."""

from __future__ import annotations

import click

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="YAML config file (default: embedded defaults; FEEDGEN__SECTION__KEY env vars override).",
)
root_option = click.option(
    "--root", default=None, help="Data root directory (default: config 'root', else ./var).",
)
definitions_option = click.option(
    "--definitions", default=None, metavar="DIR|registry",
    help="Definitions directory, or 'registry' for the published versions in the registry "
         "(default: config 'definitions', else examples/definitions).",
)
as_of_option = click.option(
    "--as-of", default=None, help="Instant relative time windows are measured from (ISO-8601; default now).",
)
