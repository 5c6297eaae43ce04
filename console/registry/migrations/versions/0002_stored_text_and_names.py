"""Each version's export text, its names indexed, and the published set's digest.

``definition_versions.export_text``: the bytes ``feedgen definitions export`` writes for the
version, so a run pins the published set by joining texts (no YAML dump per run).
``definition_names``: the ids a version expands to and the segments it names, indexed, so a
save or publish validates only what it can affect. ``registry_state.published_digest`` (and
the digest last known valid, with the validator it was valid for) let a run skip validating a
set already validated as a whole.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from feedgen.console.registry.models import BigId

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    op.add_column("definition_versions", sa.Column("export_text", sa.Text))
    op.create_table(
        "definition_names",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("version_pk", BigId, sa.ForeignKey("definition_versions.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.CheckConstraint("role IN ('expands', 'refers')", name="ck_definition_name_role"),
    )
    op.create_index("ix_definition_names_name", "definition_names", ["name", "role"])
    op.create_index("ix_definition_names_version", "definition_names", ["version_pk"])
    op.add_column("registry_state", sa.Column("published_digest", sa.String(64), nullable=False,
                                              server_default="0" * 64))
    op.add_column("registry_state", sa.Column("valid_digest", sa.String(64)))
    op.add_column("registry_state", sa.Column("valid_fingerprint", sa.String(64)))
    _backfill(op.get_bind())


def _backfill(conn) -> None:
    from feedgen.console.registry.service import item_digest, set_digest
    from feedgen.console.registry.yamlio import dump_definition

    versions = sa.table("definition_versions", sa.column("id"), sa.column("definition_pk"), sa.column("state"),
                        sa.column("body", sa.JSON), sa.column("body_sha256"), sa.column("expansions", sa.JSON),
                        sa.column("references", sa.JSON), sa.column("export_text"))
    definitions = sa.table("definitions", sa.column("id"), sa.column("definition_id"), sa.column("kind"))
    names = sa.table("definition_names", sa.column("version_pk"), sa.column("role"), sa.column("name"))
    rows = conn.execute(sa.select(versions.c.id, versions.c.state, versions.c.body, versions.c.body_sha256,
                                  versions.c.expansions, versions.c.references, definitions.c.definition_id,
                                  definitions.c.kind)
                        .join(definitions, versions.c.definition_pk == definitions.c.id)).all()
    links, texts, published = [], [], []
    for pk, state, body, sha, expansions, references, definition_id, kind in rows:
        links += [{"version_pk": pk, "role": "expands", "name": n} for n in expansions or []]
        links += [{"version_pk": pk, "role": "refers", "name": n} for n in references or []]
        if state != "archived":  # archived versions get their text when it is needed
            texts.append({"pk": pk, "text": dump_definition(kind, body).decode("utf-8")})
        if state == "published":
            published.append(item_digest(kind, definition_id, sha))
    for start in range(0, len(links), _BATCH):
        conn.execute(names.insert(), links[start:start + _BATCH])
    update = versions.update().where(versions.c.id == sa.bindparam("pk")).values(export_text=sa.bindparam("text"))
    for start in range(0, len(texts), _BATCH):
        conn.execute(update, texts[start:start + _BATCH])
    conn.execute(sa.text("UPDATE registry_state SET published_digest = :d"), {"d": set_digest(published)})


def downgrade() -> None:
    op.drop_column("registry_state", "valid_fingerprint")
    op.drop_column("registry_state", "valid_digest")
    op.drop_column("registry_state", "published_digest")
    op.drop_index("ix_definition_names_version", "definition_names")
    op.drop_index("ix_definition_names_name", "definition_names")
    op.drop_table("definition_names")
    op.drop_column("definition_versions", "export_text")
