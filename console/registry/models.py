"""The registry's tables as typed SQLAlchemy 2 models (the migrations create them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

DRAFT, PUBLISHED, ARCHIVED = "draft", "published", "archived"
STATES = (DRAFT, PUBLISHED, ARCHIVED)


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC (SQLite has no time zones), read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


# BIGINT on PostgreSQL, INTEGER (the rowid alias, so it autoincrements) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class RegistryState(Base):
    """One row: locked by every publish, archive and import so they happen one at a time."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    publish_serial: Mapped[int] = mapped_column(Integer, default=0)
    # The published set's digest (set_digest of its versions, kept up to date by every change to
    # it) and the digest last known valid as a whole, with the validator it was valid for: a run
    # whose set and validator match skips validating the set again (jobs/pinning.py).
    published_digest: Mapped[str] = mapped_column(String(64), default="0" * 64)
    valid_digest: Mapped[str | None] = mapped_column(String(64))
    valid_fingerprint: Mapped[str | None] = mapped_column(String(64))


class DefinitionRow(Base):
    __tablename__ = "definitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    definition_id: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))                 # feed | segment
    head: Mapped[int] = mapped_column(Integer, default=0)          # the latest version number
    draft_number: Mapped[int | None] = mapped_column(Integer)
    published_number: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(200))

    versions: Mapped[list[VersionRow]] = relationship(back_populates="definition", order_by="VersionRow.number")


class VersionRow(Base):
    """An immutable version: only ``state`` ever changes (draft → published → archived)."""

    __tablename__ = "definition_versions"
    __table_args__ = (
        UniqueConstraint("definition_pk", "number", name="uq_version_number"),
        Index("uq_one_draft", "definition_pk", unique=True,
              sqlite_where=text("state = 'draft'"), postgresql_where=text("state = 'draft'")),
        Index("uq_one_published", "definition_pk", unique=True,
              sqlite_where=text("state = 'published'"), postgresql_where=text("state = 'published'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    definition_pk: Mapped[int] = mapped_column(ForeignKey("definitions.id", ondelete="RESTRICT"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    body_sha256: Mapped[str] = mapped_column(String(64))
    expansions: Mapped[list[str]] = mapped_column(JSON)            # the ids for_each expands to
    references: Mapped[list[str]] = mapped_column(JSON)            # the segments in_segment names
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    message: Mapped[str] = mapped_column(Text, default="")
    base_number: Mapped[int | None] = mapped_column(Integer)
    # The bytes `feedgen definitions export` writes for this version (None: archived before
    # migration 0002; written from the body when needed).
    export_text: Mapped[str | None] = mapped_column(Text)

    definition: Mapped[DefinitionRow] = relationship(back_populates="versions")


EXPANDS, REFERS = "expands", "refers"


class VersionNameRow(Base):
    """The ids a version expands to and the segments its ``in_segment`` clauses name, one row each
    (``expansions`` and ``references`` of the version, indexed): a save or publish looks up only
    the definitions it can affect."""

    __tablename__ = "definition_names"
    __table_args__ = (
        Index("ix_definition_names_name", "name", "role"),
        Index("ix_definition_names_version", "version_pk"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    version_pk: Mapped[int] = mapped_column(ForeignKey("definition_versions.id", ondelete="RESTRICT"))
    role: Mapped[str] = mapped_column(String(8))                   # expands | refers
    name: Mapped[str] = mapped_column(String(200))


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))


class TokenRow(Base):
    """An API token: only the SHA-256 of the token is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[UserRow] = relationship()


class LoginFailureRow(Base):
    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_user", "user_name", "at"),
        Index("ix_login_failures_address", "address", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    user_name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(100))


class AuditRow(Base):
    """Append-only: the database refuses UPDATE and DELETE on it (a trigger)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_object", "object_type", "object_id", "id"),
        Index("ix_audit_actor", "actor", "id"),
        Index("ix_audit_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(200))
    version: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
