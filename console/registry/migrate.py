"""Bring a registry database to the latest schema (Alembic ``upgrade head``), safely from many processes."""

from __future__ import annotations

import logging
from pathlib import Path

# Alembic logs every plugin it loads (at import) and every context at INFO: noise on each
# command that opens the registry. Set before the import so the import's own lines go too.
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import Engine, text  # noqa: E402

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x6665656467656E  # "feedgen": serialises migrations of one PostgreSQL database


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(engine: Engine) -> None:
    """Apply every pending migration in one transaction; a no-op when the schema is current."""
    if current_revision(engine) == head_revision():
        return
    with engine.execution_options(registry_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
