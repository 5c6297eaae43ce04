"""Which definitions a run uses, read once at its start and pinned into its folder.

A source is a folder of YAML/JSON files or, with ``definitions: registry``, the published
versions in the definitions registry (``registry.url``). A run reads its source once
(``read_source``: one query for the registry), writes it to ``runs/<run_id>/definitions.yaml``
and records where it came from in run.json (``record["pinned_definitions"]``: the source,
the registry's version of each definition or the folder's path, and the file's SHA-256).
From then on the run reads only that file: ``--resume`` uses it even when definitions were
published, or the folder edited, since.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from feedgen.console.registry import registry_for, registry_url
from feedgen.console.registry.yamlio import PLURAL, dump_document, read_folder
from feedgen.core.config import Config
from feedgen.core.errors import BadInput, DefinitionError, RunFailed
from feedgen.core.runs import run_dir
from feedgen.generator.definitions import (
    DefinitionSet,
    definitions_from_documents,
    load_definitions,
)
from feedgen.generator.parse import _load_yaml
from feedgen.generator.validate_body import plain, validator_fingerprint

REGISTRY = "registry"
PIN_FILE = "definitions.yaml"
RECORD_KEY = "pinned_definitions"
# The definitions this process last pinned, by (file, SHA-256): the run that pinned them goes
# on without parsing its own file again (thousands of definitions take seconds to parse).
_JUST_PINNED: dict[tuple[str, str], DefinitionSet] = {}


@dataclass(frozen=True)
class Snapshot:
    """A source read once: the bytes to pin, what run.json records, and the definitions."""

    text: bytes
    source: dict[str, Any]
    definitions: DefinitionSet


def is_registry(source: str | os.PathLike[str] | None) -> bool:
    """``registry`` names the registry; a folder of that name is written ``./registry``."""
    return str(source or "").strip() == REGISTRY


def source_of(config: Config, override: str | None = None) -> str:
    """``--definitions`` if given, else config ``definitions`` (a folder, or ``registry``)."""
    return str(override or config.get("definitions"))


def describe(config: Config, source: str) -> str:
    """The source as a message names it: the folder, or ``registry (URL without password)``."""
    if is_registry(source):
        return f"registry ({redact(registry_url(config))})"
    return str(source)


def redact(url: str) -> str:
    """A database URL without its password (safe to log and to keep in run.json)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL: make_engine reports it with the fix
        return url


def read_source(config: Config, source: str) -> Snapshot:
    """Read and validate a source: DefinitionError naming each definition and field, BadInput
    for an empty registry. Nothing is written."""
    if is_registry(source):
        return _read_registry(config)
    return _read_folder(config, source)


def load_source(config: Config, source: str) -> DefinitionSet:
    """The definitions of a source (a folder, or the registry's published set), validated."""
    return read_source(config, source).definitions


def _read_registry(config: Config) -> Snapshot:
    """The published set, read in one query and pinned as the versions' stored export texts.

    The set is validated with the loader unless the registry knows this very set (its digest)
    was found valid as a whole by the same validator (code, aggregate schemas, built-in and
    user templates: ``validator_fingerprint``): publish keeps that knowledge up to date, and a
    run that had to validate records it for the next one.
    """
    url = registry_url(config)
    templates_dir = config.get("generate.templates_dir")
    registry = registry_for(config)
    try:
        published = registry.published_set()  # one query: every published version, its body and text
        if not published.versions:
            raise BadInput(f"definitions: registry: no published definitions in {redact(url)}; import a folder "
                           "with `feedgen definitions import DIR` (or publish drafts in the console), or set "
                           "'definitions' to a folder")
        fingerprint = validator_fingerprint(templates_dir)
        known_valid = published.valid_fingerprint == fingerprint
        labelled = [(f"registry:{did} v{number}", kind, body) for did, kind, number, body in published.versions]
        definitions = _load_labelled(labelled, templates_dir, validate=not known_valid)
        if not known_valid:
            _remember_valid(registry, published.digest, fingerprint)
    finally:
        registry.close()
    source = {"source": REGISTRY, "url": redact(url),
              "versions": {did: number for did, _, number, _ in published.versions}}
    return Snapshot(published.text, _with_digest(source, published.text), definitions)


def _remember_valid(registry, digest: str, fingerprint: str) -> None:
    """Tell the registry the set is valid (the next run skips validating it); a read-only
    database user just means the next run validates again."""
    with contextlib.suppress(SQLAlchemyError):
        registry.mark_valid(digest, fingerprint)


def _load_labelled(labelled: list[tuple[str, str, dict[str, Any]]], templates_dir, *,
                   validate: bool = True) -> DefinitionSet:
    """Definitions of registry versions, each problem naming ``registry:<id> v<n>``.

    The bodies are validated as they are (fast); only when there are problems is each
    version written out as YAML and parsed again, so that messages carry the line within
    the file ``feedgen definitions export`` would write for it.
    """
    try:
        return definitions_from_documents(((label, {PLURAL[kind]: [body]}) for label, kind, body in labelled),
                                          validate=validate, templates_dir=templates_dir)
    except DefinitionError:
        documents = [(label, _load_yaml(dump_document({PLURAL[kind]: [body]}).decode("utf-8")))
                     for label, kind, body in labelled]
        return definitions_from_documents(documents, templates_dir=templates_dir)


def _read_folder(config: Config, folder: str) -> Snapshot:
    definitions = load_definitions(folder, templates_dir=config.get("generate.templates_dir"))
    document: dict[str, list[dict[str, Any]]] = {}
    if Path(folder).is_file():  # a single file, e.g. another run's pinned definitions.yaml
        text = Path(folder).read_bytes()
    else:
        for entry in read_folder(folder):
            document.setdefault(PLURAL[entry.kind], []).append(plain(entry.body))
        text = dump_document(document)
    source = {"source": "folder", "path": str(Path(folder).resolve())}
    return Snapshot(text, _with_digest(source, text), definitions)


def _with_digest(source: dict[str, Any], text: bytes) -> dict[str, Any]:
    return {**source, "file": PIN_FILE, "sha256": hashlib.sha256(text).hexdigest()}


# -- a run's pin --------------------------------------------------------------------------

def pinned_path(root: str | Path, run_id: str) -> Path:
    return run_dir(root, run_id) / PIN_FILE


def is_pinned(record: dict[str, Any]) -> bool:
    return bool(record.get(RECORD_KEY))


def pin(root: str | Path, record: dict[str, Any], snapshot: Snapshot) -> Path:
    """Write ``snapshot`` to ``runs/<run_id>/definitions.yaml`` (atomically) and record it; the
    caller writes run.json. Returns the pinned file."""
    path = pinned_path(root, record["run_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(snapshot.text)
    os.replace(tmp, path)
    _JUST_PINNED.clear()
    _JUST_PINNED[(str(path), snapshot.source["sha256"])] = snapshot.definitions
    record[RECORD_KEY] = snapshot.source
    record["definitions_dir"] = snapshot.source.get("path", REGISTRY)
    return path


def load_pinned(config: Config, record: dict[str, Any]) -> tuple[Path, DefinitionSet]:
    """The run's pinned file and its definitions; RunFailed when the file is gone or was changed."""
    path = pinned_path(config.root, record["run_id"])
    pinned = record[RECORD_KEY]
    if not path.is_file():
        raise RunFailed(f"run {record['run_id']}: its pinned definitions {path} are missing; the run cannot "
                        "continue with the definitions it started with: start a new run")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if pinned.get("sha256") and digest != pinned["sha256"]:
        raise RunFailed(f"run {record['run_id']}: {path} was changed after the run pinned it (SHA-256 "
                        f"{digest[:12]}…, pinned {pinned['sha256'][:12]}…); restore it, or start a new run")
    known = _JUST_PINNED.get((str(path), digest))
    return path, known if known is not None else load_definitions(path, templates_dir=config.get("generate.templates_dir"))


def run_definitions(config: Config, record: dict[str, Any], source: str | None) -> tuple[Path, DefinitionSet]:
    """The definitions a run uses: its pinned ones, or ``source`` read and pinned now (the
    record is updated; the caller writes run.json)."""
    if is_pinned(record):
        return load_pinned(config, record)
    snapshot = read_source(config, source_of(config, source))
    return pin(config.root, record, snapshot), snapshot.definitions


def check_resume_source(config: Config, record: dict[str, Any], source: str | None) -> None:
    """``--resume`` always uses the run's pinned definitions: refuse a ``--definitions`` naming another source."""
    if not source or not is_pinned(record):
        return
    pinned = record[RECORD_KEY]
    same = is_registry(source) if pinned.get("source") == REGISTRY else (
        not is_registry(source) and str(Path(source).resolve()) == pinned.get("path"))
    if not same:
        where = pinned.get("url") if pinned.get("source") == REGISTRY else pinned.get("path")
        raise BadInput(f"--resume {record['run_id']}: the run pinned its definitions from {pinned.get('source')} "
                       f"{where} ({pinned_path(config.root, record['run_id'])}) and always resumes with them; "
                       f"drop --definitions {source}, or start a new run to use other definitions")


__all__ = ["PIN_FILE", "RECORD_KEY", "REGISTRY", "Snapshot", "check_resume_source", "describe", "is_pinned",
           "is_registry", "load_pinned", "load_source", "pin", "pinned_path", "read_source", "redact",
           "run_definitions", "source_of"]
