"""The definitions registry: versions, lifecycle (draft → publish → archive, restore), diff, import/export.

Every change runs in one transaction with its audit entry. A save names the version it
was based on and is refused with StaleVersion when that is no longer the latest (a row
lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so no edit is ever lost. Publishes,
archives and imports also lock one registry-wide row, so the published set is validated
and changed one step at a time.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from feedgen.console.registry import migrate
from feedgen.console.registry.auth import Actor, require
from feedgen.console.registry.db import Database, make_engine
from feedgen.console.registry.diff import Change, diff
from feedgen.console.registry.errors import (
    DefinitionRejected,
    NotFound,
    StaleVersion,
    StateConflict,
)
from feedgen.console.registry.models import (
    ARCHIVED,
    DRAFT,
    EXPANDS,
    PUBLISHED,
    REFERS,
    AuditRow,
    DefinitionRow,
    RegistryState,
    VersionNameRow,
    VersionRow,
)
from feedgen.console.registry.yamlio import PLURAL, dump_definition, read_folder, write_folder
from feedgen.core.errors import BadInput
from feedgen.generator.parse import Problem
from feedgen.generator.validate_body import (
    Body,
    Checked,
    LocatedProblem,
    check_bodies,
    plain,
    validator_fingerprint,
)

KINDS = ("feed", "segment")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class VersionInfo:
    definition_id: str
    kind: str
    number: int
    state: str
    body: dict[str, Any]
    author: str
    created_at: datetime
    message: str
    base_version: int | None
    expansions: list[str]
    references: list[str]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat()
        return out


@dataclass(frozen=True)
class DefinitionInfo:
    definition_id: str
    kind: str
    status: str                      # draft (never published), published, archived
    latest_version: int
    draft_version: int | None
    published_version: int | None
    description: str | None
    expansions: list[str]            # of the published version, else of the latest
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat()
        out["updated_at"] = self.updated_at.isoformat()
        return out


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    version: int | None
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat()
        return out


@dataclass
class ImportReport:
    published: list[tuple[str, int, str]] = field(default_factory=list)   # (id, version, file)
    unchanged: list[str] = field(default_factory=list)


def body_digest(body: Mapping[str, Any]) -> str:
    """SHA-256 of the body's canonical JSON: equal for equal structures, whatever the key order."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_DIGEST_MOD = 1 << 256


def item_digest(kind: str, definition_id: str, body_sha256: str) -> str:
    """One published version's share of the set digest."""
    return hashlib.sha256(f"{kind}\0{definition_id}\0{body_sha256}".encode()).hexdigest()


def set_digest(items: Iterable[str], start: str = "0" * 64, removed: Iterable[str] = ()) -> str:
    """The digest of a set of versions (``item_digest`` of each, summed modulo 2**256): independent
    of order, so a publish updates it from the versions it adds and removes alone."""
    total = int(start, 16) + sum(int(i, 16) for i in items) - sum(int(i, 16) for i in removed)
    return f"{total % _DIGEST_MOD:064x}"


@dataclass(frozen=True)
class PublishedSet:
    """The published set as a run pins it (``Registry.published_set``)."""

    versions: list[tuple[str, str, int, dict[str, Any]]]   # (definition_id, kind, number, body)
    text: bytes                       # the definitions file a run pins: the versions' export texts
    digest: str                       # set_digest of these versions
    valid_fingerprint: str | None     # the validator this very set was found valid with as a whole


@dataclass(frozen=True)
class _Meta:
    """What set-wide validation needs to know about a version without reading its body."""

    version_pk: int
    definition_id: str
    kind: str
    expansions: tuple[str, ...]
    references: tuple[str, ...]


class Registry:
    """The registry on one database. ``Registry.open(url)`` migrates the schema first."""

    def __init__(self, db: Database, clock: Clock | None = None, templates_dir: str | Path | None = None) -> None:
        self.db = db
        self.clock: Clock = clock or utc_now
        self.templates_dir = templates_dir     # config generate.templates_dir: the user templates

    @classmethod
    def open(cls, url: str, clock: Clock | None = None, templates_dir: str | Path | None = None) -> Registry:
        """The registry at ``url`` (schema migrated first); definitions may name the user
        templates in ``templates_dir``."""
        engine = make_engine(url)
        migrate.upgrade(engine)
        return cls(Database(engine), clock, templates_dir)

    def _check(self, bodies: Sequence[Body]) -> Checked:
        return check_bodies(bodies, self.templates_dir)

    def close(self) -> None:
        self.db.dispose()

    @property
    def accounts(self):
        from feedgen.console.registry.accounts import Accounts

        return Accounts(self)

    # -- reading -------------------------------------------------------------------------

    def list_definitions(self, *, kind: str | None = None, status: str | None = None,
                         search: str | None = None, offset: int = 0, limit: int | None = None,
                         entity: str | None = None, template: str | None = None, destination: str | None = None,
                         author: str | None = None) -> list[DefinitionInfo]:
        """Definitions by id; ``status`` is draft, published or archived; ``search`` matches the id.
        ``entity``, ``template`` and ``destination`` (one of ``delivery.destinations``) match the
        version shown (published, else draft, else latest); ``author`` any version's author."""
        with self.db.read() as s:
            query = self._body_filters(select(DefinitionRow).order_by(DefinitionRow.definition_id),
                                       entity, template, destination, author)
            if kind:
                query = query.where(DefinitionRow.kind == kind)
            if status == PUBLISHED:
                query = query.where(DefinitionRow.published_number.is_not(None))
            elif status == DRAFT:
                query = query.where(DefinitionRow.published_number.is_(None), DefinitionRow.draft_number.is_not(None))
            elif status == ARCHIVED:
                query = query.where(DefinitionRow.published_number.is_(None), DefinitionRow.draft_number.is_(None))
            if search:
                query = query.where(DefinitionRow.definition_id.contains(search, autoescape=True))
            rows = s.scalars(query.offset(offset).limit(limit)).all()
            shown = self._shown_versions(s, [row.id for row in rows])
            return [self._info(s, row, shown.get(row.id)) for row in rows]

    @staticmethod
    def _shown_versions(s: Session, pks: list[int]) -> dict[int, VersionRow]:
        """The version each definition shows (published, else draft, else latest), in one query."""
        if not pks:
            return {}
        shown = func.coalesce(DefinitionRow.published_number, DefinitionRow.draft_number, DefinitionRow.head)
        found = s.scalars(select(VersionRow)
                          .join(DefinitionRow, and_(VersionRow.definition_pk == DefinitionRow.id,
                                                    VersionRow.number == shown))
                          .where(DefinitionRow.id.in_(pks)))
        return {v.definition_pk: v for v in found}

    @staticmethod
    def _body_filters(query, entity: str | None, template: str | None, destination: str | None,
                      author: str | None):
        if author is not None:
            other = aliased(VersionRow)
            query = query.where(exists().where(other.definition_pk == DefinitionRow.id, other.author == author))
        if entity is None and template is None and destination is None:
            return query
        shown = func.coalesce(DefinitionRow.published_number, DefinitionRow.draft_number, DefinitionRow.head)
        query = query.join(VersionRow, and_(VersionRow.definition_pk == DefinitionRow.id, VersionRow.number == shown))
        if entity is not None:
            default = case((DefinitionRow.kind == "feed", "offer"), else_="customer")
            query = query.where(func.coalesce(VersionRow.body["entity"].as_string(), default) == entity)
        if template is not None:
            query = query.where(VersionRow.body["template"].as_string() == template)
        if destination is not None:
            # the list as JSON text: ["google_merchant_api", ...] on both databases
            listed = VersionRow.body[("delivery", "destinations")].as_string()
            query = query.where(listed.contains(json.dumps(destination), autoescape=True))
        return query

    def definition(self, definition_id: str) -> DefinitionInfo:
        with self.db.read() as s:
            return self._info(s, self._row(s, definition_id))

    def versions(self, definition_id: str) -> list[VersionInfo]:
        with self.db.read() as s:
            row = self._row(s, definition_id)
            return [_version_info(row, v) for v in row.versions]

    def version(self, definition_id: str, number: int) -> VersionInfo:
        with self.db.read() as s:
            row = self._row(s, definition_id)
            return _version_info(row, self._version(s, row, number))

    def diff(self, definition_id: str, a: int, b: int) -> list[Change]:
        """What changed from version ``a`` to version ``b``, leaf by leaf."""
        with self.db.read() as s:
            row = self._row(s, definition_id)
            return diff(self._version(s, row, a).body, self._version(s, row, b).body)

    def published(self) -> list[VersionInfo]:
        """The published version of every definition, feeds then segments, by id."""
        with self.db.read() as s:
            rows = s.execute(select(DefinitionRow, VersionRow)
                             .join(VersionRow, VersionRow.definition_pk == DefinitionRow.id)
                             .where(VersionRow.state == PUBLISHED)
                             .order_by(DefinitionRow.kind, DefinitionRow.definition_id)).all()
            return [_version_info(d, v) for d, v in rows]

    def published_document(self) -> dict[str, list[dict[str, Any]]]:
        """The published set as the loader reads a file: ``{feeds: [...], segments: [...]}``."""
        out: dict[str, list[dict[str, Any]]] = {"feeds": [], "segments": []}
        for v in self.published():
            out[f"{v.kind}s"].append(v.body)
        return out

    def published_set(self) -> PublishedSet:
        """The published set in one read: each version's body and the file a run pins (the
        versions' stored export texts joined, feeds then segments, by id: no YAML is written)."""
        with self.db.read() as s:
            valid_digest, valid_fingerprint = s.execute(
                select(RegistryState.valid_digest, RegistryState.valid_fingerprint)
                .where(RegistryState.id == 1)).one()
            rows = s.execute(select(DefinitionRow.definition_id, DefinitionRow.kind, VersionRow.number,
                                    VersionRow.body, VersionRow.body_sha256, VersionRow.export_text)
                             .join(VersionRow, VersionRow.definition_pk == DefinitionRow.id)
                             .where(VersionRow.state == PUBLISHED)
                             .order_by(DefinitionRow.kind, DefinitionRow.definition_id)).all()
        versions, items, parts = [], [], []
        kind_seen = None
        for definition_id, kind, number, body, sha, text in rows:
            header = f"{PLURAL[kind]}:\n"
            actual = body_digest(body)
            if actual != sha or text is None or not text.startswith(header):
                # archived before migration 0002, or the row was edited outside feedgen: the body wins
                text = dump_definition(kind, body).decode("utf-8")
            if kind != kind_seen:
                parts.append(header)
                kind_seen = kind
            parts.append(text[len(header):])
            versions.append((definition_id, kind, number, body))
            items.append(item_digest(kind, definition_id, actual))
        digest = set_digest(items)
        return PublishedSet(versions, "".join(parts).encode("utf-8"), digest,
                            valid_fingerprint if valid_digest == digest else None)

    def mark_valid(self, digest: str, fingerprint: str) -> bool:
        """Record that the published set with ``digest`` was validated as a whole under the validator
        ``fingerprint`` (a run did); nothing happens if the set changed since. True if recorded."""
        with self.db.write() as s:
            done = s.execute(update(RegistryState).where(RegistryState.id == 1,
                                                         RegistryState.published_digest == digest)
                             .values(valid_digest=digest, valid_fingerprint=fingerprint))
            return bool(done.rowcount)

    def audit(self, *, actor: str | None = None, object_type: str | None = None, object_id: str | None = None,
              action: str | None = None, since: datetime | None = None, until: datetime | None = None,
              before_id: int | None = None, limit: int = 100) -> list[AuditEntry]:
        """Audit entries, newest first; ``before_id`` pages back."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        for column, value in ((AuditRow.actor, actor), (AuditRow.object_type, object_type),
                              (AuditRow.object_id, object_id), (AuditRow.action, action)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(AuditRow.at >= since)
        if until is not None:
            query = query.where(AuditRow.at < until)
        if before_id is not None:
            query = query.where(AuditRow.id < before_id)
        with self.db.read() as s:
            return [AuditEntry(r.id, r.at, r.actor, r.action, r.object_type, r.object_id, r.version, dict(r.detail))
                    for r in s.scalars(query)]

    # -- validation (nothing stored) -----------------------------------------------------

    def validate(self, kind: str, body: Mapping[str, Any]) -> list[LocatedProblem]:
        """Every problem of ``body`` as a draft, checked against the other definitions' drafts and
        published versions (its ``in_segment`` targets, ids its expansions would duplicate)."""
        return self._validate_draft(kind, body)[0]

    def _validate_draft(self, kind: str, body: Mapping[str, Any]) -> tuple[list[LocatedProblem], Checked]:
        _check_kind(kind)
        body = plain(body)
        draft_key = str(body.get("id")) if isinstance(body, dict) else ""
        alone = self._check([Body(draft_key, kind, body, "draft")])
        with self.db.read() as s:
            chosen = _affected(_Graph(s, WORKING, (draft_key,)), alone.expansions(draft_key),
                               alone.references(draft_key), ())
            # the draft last: the validator reports a duplicate id on the later of the two
            bodies = [*self._bodies(s, [chosen[i] for i in sorted(chosen)]), Body(draft_key, kind, body, "draft")]
        checked = self._check(bodies)
        mine = set(alone.expansions(draft_key))
        problems = [p if p.key == draft_key else LocatedProblem(draft_key, "/where", p.problem)
                    for p in checked.problems if p.key == draft_key or _cycle_through(p, mine)]
        return problems, alone

    # -- lifecycle -----------------------------------------------------------------------

    def save_draft(self, actor: Actor, kind: str, body: Mapping[str, Any], base_version: int | None,
                   message: str = "") -> VersionInfo:
        """A new draft version of ``body['id']``; ``base_version`` is the version the edit started
        from (None or 0 for a new definition). StaleVersion if another save came first."""
        require(actor, "definitions.edit")
        body = plain(body)
        problems, checked = self._validate_draft(kind, body)
        if problems:
            raise DefinitionRejected("saving the draft", problems)
        return self._write_draft(actor, kind, body, checked, base_version, message, action="save_draft")

    def restore(self, actor: Actor, definition_id: str, number: int, base_version: int | None,
                message: str = "") -> VersionInfo:
        """Version ``number``'s body as a new draft (validated like any save)."""
        require(actor, "definitions.edit")
        old = self.version(definition_id, number)
        problems, checked = self._validate_draft(old.kind, old.body)
        if problems:
            raise DefinitionRejected(f"restoring version {number}", problems)
        return self._write_draft(actor, old.kind, old.body, checked, base_version,
                                 message or f"restore version {number}", action="restore", restored_from=number)

    def publish(self, actor: Actor, definition_id: str, number: int, message: str = "") -> VersionInfo:
        """Publish draft ``number``: refused if it is not the current draft, or if the published
        set with it would be invalid (a broken ``in_segment`` reference, a cycle, a duplicate id)."""
        require(actor, "definitions.publish")
        early = self._precheck_publish(definition_id, number)
        with self.db.write() as s:
            registry_state = self._lock_registry(s)
            row = self._row(s, definition_id, lock=True)
            version = self._version(s, row, number)
            if version.state != DRAFT:
                if row.draft_number is not None and row.draft_number > number:
                    raise StaleVersion(definition_id, number, row.draft_number)
                raise StateConflict(f"definition {definition_id!r}: version {number} is {version.state}, not a draft; "
                                    + ("restore it as a draft first" if version.state == ARCHIVED
                                       else "it is already published"))
            if number != row.head:
                raise StaleVersion(definition_id, number, row.head)
            old_published = self._published_version(s, row)
            self._check_published_set(s, "publishing", replace={definition_id: version},
                                      old_expansions=old_published.expansions if old_published else (),
                                      checked=early)
            self._retally(registry_state, removed=[_item(row, old_published)] if old_published else [],
                          added=[_item(row, version)])
            if old_published is not None:
                old_published.state = ARCHIVED
                s.flush()
            version.state = PUBLISHED
            row.draft_number, row.published_number = None, number
            self._touch(row, actor)
            self.add_audit(s, actor, "publish", "definition", definition_id, number,
                        {"message": message, "previous_version": old_published.number if old_published else None})
            return _version_info(row, version)

    def archive(self, actor: Actor, definition_id: str, reason: str = "") -> DefinitionInfo:
        """Take a definition out of the published set (its versions stay readable); refused while a
        published definition refers to it through ``in_segment``."""
        require(actor, "definitions.archive")
        with self.db.write() as s:
            registry_state = self._lock_registry(s)
            row = self._row(s, definition_id, lock=True)
            live = list(s.scalars(select(VersionRow).where(VersionRow.definition_pk == row.id,
                                                           VersionRow.state != ARCHIVED)))
            if not live:
                raise StateConflict(f"definition {definition_id!r} is already archived; restore a version to edit it again")
            published = self._published_version(s, row)
            if published is not None:
                try:
                    self._check_published_set(s, "archiving", replace={definition_id: None},
                                              old_expansions=published.expansions)
                except DefinitionRejected as err:
                    raise DefinitionRejected(f"archiving {definition_id}", [
                        LocatedProblem(p.key, p.pointer, replace(
                            p.problem, message=f"refers to {definition_id!r}, which would no longer be published",
                            fix=f"remove this in_segment from {p.key!r} (or archive {p.key!r}) first"))
                        for p in err.problems]) from None
                self._retally(registry_state, removed=[_item(row, published)], added=[])
            for v in live:
                v.state = ARCHIVED
            s.flush()
            row.draft_number = row.published_number = None
            self._touch(row, actor)
            self.add_audit(s, actor, "archive", "definition", definition_id, published.number if published else None,
                        {"reason": reason, "archived_versions": [v.number for v in live]})
            return self._info(s, row)

    # -- folders ---------------------------------------------------------------------------

    def import_directory(self, actor: Actor, directory: str | Path) -> ImportReport:
        """Publish each definition of ``directory`` whose body differs from its published version
        (message: the file). The folder is validated with the published set before anything is written."""
        require(actor, "definitions.import")
        entries = read_folder(directory)
        report = ImportReport()
        with self.db.write() as s:
            registry_state = self._lock_registry(s)
            current = self._published_rows(s)
            changed = []
            for entry in entries:
                body = plain(entry.body)
                def_id = body.get("id") if isinstance(body, dict) else None
                old = current.get(def_id) if isinstance(def_id, str) else None
                if old is not None and old[1].kind == entry.kind and old[0].body_sha256 == body_digest(body):
                    report.unchanged.append(def_id)
                else:
                    changed.append((entry, body))
            self._check_import(s, entries, current)
            removed, added = [], []
            for entry, body in changed:
                checked = self._check([Body(body["id"], entry.kind, body, entry.file)])
                version = self._insert_version(s, actor, entry.kind, body, checked, PUBLISHED, entry.file,
                                               action="import", base_version=None)
                report.published.append((body["id"], version.number, entry.file))
                old = current.get(body["id"])
                removed += [_item(old[1], old[0])] if old is not None else []
                added.append(item_digest(entry.kind, body["id"], version.body_sha256))
            # the folder was validated with every other published definition: the whole new set
            self._retally(registry_state, removed=removed, added=added, whole_set_checked=True)
        return report

    def export_directory(self, directory: str | Path) -> tuple[list[Path], list[Path]]:
        """Write the published set as byte-stable YAML; returns (files written, stale files removed)."""
        return write_folder(directory, ((v.kind, v.definition_id, v.body) for v in self.published()))

    # -- internals -------------------------------------------------------------------------

    def _write_draft(self, actor: Actor, kind: str, body: dict[str, Any], checked: Checked,
                     base_version: int | None, message: str, *, action: str,
                     restored_from: int | None = None) -> VersionInfo:
        definition_id = body["id"]
        try:
            with self.db.write() as s:
                version = self._insert_version(s, actor, kind, body, checked, DRAFT, message, action=action,
                                               base_version=base_version or None, restored_from=restored_from)
                return _version_info(version.definition, version)
        except IntegrityError as err:
            # Two first saves of one new id at once (PostgreSQL): the unique id decided the winner.
            current = self._head(definition_id)
            raise StaleVersion(definition_id, base_version or None, current) from err

    def _insert_version(self, s: Session, actor: Actor, kind: str, body: dict[str, Any], checked: Checked,
                        state: str, message: str, *, action: str, base_version: int | None,
                        restored_from: int | None = None) -> VersionRow:
        definition_id = body["id"]
        now = self.clock()
        row = s.scalars(select(DefinitionRow).where(DefinitionRow.definition_id == definition_id)
                        .with_for_update()).one_or_none()
        if row is None:
            if base_version and action != "import":
                raise NotFound(f"no definition {definition_id!r} to base version {base_version} on; "
                               "save it as a new definition (no base version)")
            row = DefinitionRow(definition_id=definition_id, kind=kind, head=0, created_at=now,
                                created_by=actor.name, updated_at=now, updated_by=actor.name)
            s.add(row)
            s.flush()
        elif action != "import" and base_version != (row.head or None):
            raise StaleVersion(definition_id, base_version, row.head)
        if row.kind != kind:
            problem = Problem("draft", 0, f"{kind} {definition_id!r}", "id",
                              f"{definition_id!r} is already the id of a {row.kind}",
                              f"choose another id, or edit the {row.kind}")
            raise DefinitionRejected(f"saving {definition_id!r}", [LocatedProblem(definition_id, "/id", problem)])
        replaced = list(s.scalars(select(VersionRow).where(VersionRow.definition_pk == row.id,
                                                           VersionRow.state == state)))
        for v in replaced:
            v.state = ARCHIVED
        s.flush()
        number = row.head + 1
        expansions, references = checked.expansions(definition_id), checked.references(definition_id)
        version = VersionRow(definition_pk=row.id, number=number, state=state, body=body,
                             body_sha256=body_digest(body), expansions=expansions, references=references,
                             author=actor.name, created_at=now, message=message, base_number=row.head or None,
                             export_text=dump_definition(kind, body).decode("utf-8"))
        s.add(version)
        s.flush()
        s.add_all([VersionNameRow(version_pk=version.id, role=EXPANDS, name=n) for n in expansions]
                  + [VersionNameRow(version_pk=version.id, role=REFERS, name=n) for n in references])
        row.head = number
        if state == DRAFT:
            row.draft_number = number
        else:
            row.published_number = number  # a draft in progress stays, and is now stale
        self._touch(row, actor)
        detail: dict[str, Any] = {"message": message, "base_version": base_version}
        if restored_from is not None:
            detail["restored_from"] = restored_from
        if replaced:
            detail["archived_versions"] = [v.number for v in replaced]
        self.add_audit(s, actor, "create" if number == 1 and action == "save_draft" else action, "definition",
                    definition_id, number, detail)
        s.flush()
        return version

    def _head(self, definition_id: str) -> int | None:
        with self.db.read() as s:
            row = s.scalars(select(DefinitionRow).where(DefinitionRow.definition_id == definition_id)).one_or_none()
            return row.head if row else None

    def _touch(self, row: DefinitionRow, actor: Actor) -> None:
        row.updated_at, row.updated_by = self.clock(), actor.name

    def record(self, actor: Actor, action: str, object_type: str, object_id: str,
               detail: dict[str, Any] | None = None, version: int | None = None) -> None:
        """Append one audit entry in its own transaction (e.g. a run approved; action ``approve``)."""
        with self.db.write() as s:
            self.add_audit(s, actor, action, object_type, object_id, version, detail or {})

    def add_audit(self, s: Session, actor: Actor, action: str, object_type: str, object_id: str,
                  version: int | None, detail: dict[str, Any]) -> None:
        """Append an audit entry (action ``<object_type>.<action>``) in the caller's transaction."""
        s.add(AuditRow(at=self.clock(), actor=actor.name, action=f"{object_type}.{action}", object_type=object_type,
                       object_id=object_id, version=version, detail=detail))

    def _lock_registry(self, s: Session) -> RegistryState:
        state = s.scalars(select(RegistryState).where(RegistryState.id == 1).with_for_update()).one()
        state.publish_serial += 1
        return state

    def _row(self, s: Session, definition_id: str, *, lock: bool = False) -> DefinitionRow:
        query = select(DefinitionRow).where(DefinitionRow.definition_id == definition_id)
        row = s.scalars(query.with_for_update() if lock else query).one_or_none()
        if row is None:
            raise NotFound(f"no definition {definition_id!r}; list them with GET /api/v1/definitions "
                           "or import a folder with 'feedgen definitions import DIR'")
        return row

    def _version(self, s: Session, row: DefinitionRow, number: int) -> VersionRow:
        found = s.scalars(select(VersionRow).where(VersionRow.definition_pk == row.id,
                                                   VersionRow.number == number)).one_or_none()
        if found is None:
            raise NotFound(f"definition {row.definition_id!r} has no version {number}; "
                           f"its versions are 1 to {row.head}")
        return found

    def _published_version(self, s: Session, row: DefinitionRow) -> VersionRow | None:
        return s.scalars(select(VersionRow).where(VersionRow.definition_pk == row.id,
                                                  VersionRow.state == PUBLISHED)).one_or_none()

    def _info(self, s: Session, row: DefinitionRow, version: VersionRow | None = None) -> DefinitionInfo:
        shown = row.published_number or row.draft_number or row.head
        if version is None and shown:
            version = self._version(s, row, shown)
        status = PUBLISHED if row.published_number else DRAFT if row.draft_number else ARCHIVED
        description = version.body.get("description") if version is not None else None
        return DefinitionInfo(row.definition_id, row.kind, status, row.head, row.draft_number, row.published_number,
                              description if isinstance(description, str) else None,
                              list(version.expansions) if version is not None else [],
                              row.created_at, row.created_by, row.updated_at, row.updated_by)

    def _published_rows(self, s: Session) -> dict[str, tuple[VersionRow, DefinitionRow]]:
        rows = s.execute(select(VersionRow, DefinitionRow)
                         .join(DefinitionRow, VersionRow.definition_pk == DefinitionRow.id)
                         .where(VersionRow.state == PUBLISHED)).all()
        return {d.definition_id: (v, d) for v, d in rows}

    def _bodies(self, s: Session, metas: Sequence[_Meta]) -> list[Body]:
        if not metas:
            return []
        bodies = dict(s.execute(select(VersionRow.id, VersionRow.body)
                                .where(VersionRow.id.in_([m.version_pk for m in metas]))).all())
        return [Body(m.definition_id, m.kind, bodies[m.version_pk], f"registry:{m.definition_id}") for m in metas]

    def _check_published_set(self, s: Session, action: str, *, replace: dict[str, VersionRow | None],
                             old_expansions: Iterable[str], checked: _Checked | None = None) -> None:
        """The published set with ``replace`` applied must stay valid; only the definitions the
        change can affect are read and checked (itself, those it names, those naming it or its
        old ids, those owning its ids), each found through the indexed definition_names.
        ``checked``: the same check made before the lock; reused if it read the same versions."""
        done = self._check_affected(s, replace, old_expansions, checked)
        if done.problems:
            raise DefinitionRejected(f"{action} {', '.join(replace)}", done.problems)

    def _check_affected(self, s: Session, replace: dict[str, VersionRow | None], old_expansions: Iterable[str],
                        checked: _Checked | None = None) -> _Checked:
        focus: list[_Meta] = []
        for definition_id, version in replace.items():
            if version is not None:
                focus.append(_Meta(version.id, definition_id, version.definition.kind,
                                   tuple(version.expansions), tuple(version.references)))
        expansions = [e for m in focus for e in m.expansions]
        references = [r for m in focus for r in m.references]
        chosen = _affected(_Graph(s, PUBLISHED, tuple(replace)), expansions, references,
                           (*expansions, *old_expansions))
        metas = [*focus, *(chosen[i] for i in sorted(chosen))]
        read = frozenset(m.version_pk for m in metas)  # versions are immutable: same pks, same bodies
        if checked is not None and checked.versions == read:
            return checked
        return _Checked(read, self._check(self._bodies(s, metas)).problems)

    def _precheck_publish(self, definition_id: str, number: int) -> _Checked | None:
        """The publish's check, made before taking any lock (the slow part: parsing and
        validating); under the lock it is reused when the same versions are still the ones
        it affects, which the indexed look-ups tell in a few queries."""
        with self.db.read() as s:
            row = s.scalars(select(DefinitionRow).where(DefinitionRow.definition_id == definition_id)).one_or_none()
            version = self._version(s, row, number) if row is not None and row.head == number else None
            if version is None or version.state != DRAFT:
                return None  # refused under the lock, with the reason
            old = self._published_version(s, row)
            return self._check_affected(s, {definition_id: version}, old.expansions if old else ())

    def _retally(self, state: RegistryState, *, removed: Iterable[str], added: Iterable[str],
                 whole_set_checked: bool = False) -> None:
        """Update the published set's digest after a change validated against all it affects. A set
        known valid stays known valid (for this validator); so does one validated as a whole."""
        fingerprint = validator_fingerprint(self.templates_dir)
        was_valid = state.valid_digest == state.published_digest and state.valid_fingerprint == fingerprint
        state.published_digest = set_digest(added, state.published_digest, removed)
        if was_valid or whole_set_checked:
            state.valid_digest, state.valid_fingerprint = state.published_digest, fingerprint

    def _check_import(self, s: Session, entries: Sequence, current: Mapping[str, tuple[VersionRow, DefinitionRow]]) -> None:
        in_folder = {e.definition_id for e in entries}
        kept = [Body(did, d.kind, v.body, f"registry:{did}") for did, (v, d) in sorted(current.items())
                if did not in in_folder]
        bodies = [Body(f"{e.file}#{i}", e.kind, e.body, e.file) for i, e in enumerate(entries)]
        problems = self._check([*bodies, *kept]).problems
        if problems:
            raise DefinitionRejected(f"importing {len(entries)} definitions", [_as_file_problem(p) for p in problems])


class _FileProblem(LocatedProblem):
    """An import problem, worded like ``feedgen validate`` (file:line, definition, path)."""

    def __str__(self) -> str:
        return str(self.problem)


def _as_file_problem(p: LocatedProblem) -> LocatedProblem:
    return _FileProblem(p.key, p.pointer, p.problem)


WORKING = "working"   # each definition's draft, else its published version: what a draft is checked with
_IN_CHUNK = 500


class _Graph:
    """Indexed look-ups of the versions in one view, ``WORKING`` or ``PUBLISHED``, leaving out the
    definitions ``exclude`` names (those being changed)."""

    def __init__(self, s: Session, view: str, exclude: tuple[str, ...]) -> None:
        self.s = s
        shown = func.coalesce(DefinitionRow.draft_number, DefinitionRow.published_number)
        self.live = [VersionRow.number == shown if view == WORKING else VersionRow.state == PUBLISHED,
                     DefinitionRow.definition_id.not_in(exclude)]

    def by_name(self, role: str, names: Iterable[str]) -> list[tuple[str, _Meta]]:
        """(name, version) for each version in view that expands to (``EXPANDS``) or refers to
        (``REFERS``) one of ``names``."""
        wanted = sorted(set(names))
        query = (select(VersionNameRow.name, VersionRow.id, DefinitionRow.definition_id, DefinitionRow.kind,
                        VersionRow.expansions, VersionRow.references)
                 .join(VersionRow, VersionRow.id == VersionNameRow.version_pk)
                 .join(DefinitionRow, DefinitionRow.id == VersionRow.definition_pk)
                 .where(VersionNameRow.role == role, *self.live))
        out = []
        for start in range(0, len(wanted), _IN_CHUNK):  # a for_each may expand to thousands of ids
            chunk = wanted[start:start + _IN_CHUNK]
            out += [(name, _Meta(pk, did, kind, tuple(exp), tuple(refs)))
                    for name, pk, did, kind, exp, refs in self.s.execute(query.where(VersionNameRow.name.in_(chunk)))]
        return out

    def segment_ids(self) -> list[str]:
        """Every segment id in view (for "did you mean" on an unknown ``in_segment``: errors only)."""
        return list(self.s.scalars(select(VersionNameRow.name)
                                   .join(VersionRow, VersionRow.id == VersionNameRow.version_pk)
                                   .join(DefinitionRow, DefinitionRow.id == VersionRow.definition_pk)
                                   .where(VersionNameRow.role == EXPANDS, DefinitionRow.kind == "segment",
                                          *self.live)))


def _affected(graph: _Graph, expansions: Iterable[str], references: Iterable[str],
              watched: Iterable[str]) -> dict[str, _Meta]:
    """The definitions of ``graph`` a change can interact with: those owning any of
    ``expansions`` (duplicates), those referring to ``watched`` ids, and every definition
    reachable through ``in_segment`` from the change or from those."""
    chosen = {m.definition_id: m for _, m in graph.by_name(EXPANDS, expansions)}
    chosen.update((m.definition_id, m) for _, m in graph.by_name(REFERS, watched))
    references = sorted(set(references))
    frontier = set(references) | {r for m in chosen.values() for r in m.references}
    seen: set[str] = set()
    first = True
    while frontier:
        seen |= frontier
        found = graph.by_name(EXPANDS, frontier)
        if first:
            owned = {name for name, _ in found}
            missing = [r for r in references if r not in owned]
            if missing:
                # an unknown target: bring in the closest id, so the validator's "did you mean" can name it
                segments = graph.segment_ids()
                close = {c for r in missing for c in difflib.get_close_matches(r, segments, n=1, cutoff=0.6)}
                found += graph.by_name(EXPANDS, close - seen)
                seen |= close
            first = False
        new = {m.definition_id: m for _, m in found if m.definition_id not in chosen}
        chosen.update(new)
        frontier = {r for m in new.values() for r in m.references} - seen
    return chosen


@dataclass(frozen=True)
class _Checked:
    """A check of the versions ``versions`` (primary keys) as one set, and what it found."""

    versions: frozenset[int]
    problems: list[LocatedProblem]


def _item(row: DefinitionRow, version: VersionRow) -> str:
    return item_digest(row.kind, row.definition_id, version.body_sha256)


def _cycle_through(p: LocatedProblem, ids: set[str]) -> bool:
    """An in_segment cycle the validator reported on another definition, passing through ``ids``."""
    head, _, chain = p.message.partition(": ")
    return head == "in_segment cycle" and bool(ids.intersection(chain.split(" → ")))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise BadInput(f"unknown kind {kind!r}; use feed or segment")


def _version_info(row: DefinitionRow, v: VersionRow) -> VersionInfo:
    return VersionInfo(row.definition_id, row.kind, v.number, v.state, dict(v.body), v.author, v.created_at,
                       v.message, v.base_number, list(v.expansions), list(v.references))
