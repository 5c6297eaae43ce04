"""Every CLI command: each ``jobs/cmd_*.py`` module lists its click commands in ``COMMANDS``.

Command modules import heavy libraries (pyspark, flask, confluent_kafka) inside the
command functions, so ``feedgen --help`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil

import feedgen.jobs as _jobs


def all_commands() -> list:
    commands = []
    for info in sorted(pkgutil.iter_modules(_jobs.__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            module = importlib.import_module(f"feedgen.jobs.{info.name}")
            commands.extend(getattr(module, "COMMANDS", []))
    return commands
