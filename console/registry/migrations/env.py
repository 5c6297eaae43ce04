"""Alembic environment: runs on the connection ``migrate.upgrade`` hands over (no ini file)."""

from __future__ import annotations

from alembic import context

from feedgen.console.registry.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
