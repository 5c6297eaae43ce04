"""Definition folders in and out: read a folder's entries for import, write byte-stable YAML.

An export writes one file per published definition, ``feeds/<id>.yaml`` or
``segments/<id>.yaml``, holding ``feeds: [the body]``: the same registry exported twice
gives the same bytes, and the files load with ``feedgen validate`` and import unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from feedgen.generator.definitions import EXTENSIONS, KINDS, load_definitions
from feedgen.generator.parse import LocDict, load_file

PLURAL = {kind: plural for plural, kind in KINDS.items()}
_UNSAFE = re.compile(r"[^A-Za-z0-9._{}-]")


@dataclass(frozen=True)
class FileEntry:
    """One entry of a definitions file: ``body`` keeps its line numbers for messages."""

    kind: str
    body: LocDict
    file: str

    @property
    def definition_id(self) -> Any:
        return self.body.get("id")


def read_folder(directory: str | Path) -> list[FileEntry]:
    """Every entry of every definitions file under ``directory``, in file order.

    DefinitionError (with ``feedgen validate``'s messages) when a file is malformed or does not
    have the ``feeds:``/``segments:`` shape; the entries' contents are checked by the caller.
    """
    directory = Path(directory)
    load_definitions(directory, validate=False)
    entries = []
    for path in sorted(p for p in directory.rglob("*") if p.suffix in EXTENSIONS and p.is_file()):
        data = load_file(path) or {}
        for plural, kind in KINDS.items():
            for raw in data.get(plural) or []:
                entries.append(FileEntry(kind, raw, str(path)))
    return entries


class _Dumper(yaml.SafeDumper):
    pass


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _represent_dict(dumper: _Dumper, data: dict) -> yaml.Node:
    # Leaf clauses ({field: price.amount, gte: 10}) read best on one line, like the examples.
    flow = bool(data) and all(_is_scalar(v) or (isinstance(v, list) and all(map(_is_scalar, v)))
                              for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


def _represent_list(dumper: _Dumper, data: list) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=all(map(_is_scalar, data)))


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(list, _represent_list)


class _FastDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # libyaml's emitter when PyYAML has it
    pass


_FastDumper.add_representer(dict, _represent_dict)
_FastDumper.add_representer(list, _represent_list)
_DUMP_OPTIONS = {"sort_keys": False, "allow_unicode": True, "width": 100, "indent": 2, "line_break": "\n"}


def dump_definition(kind: str, body: dict[str, Any]) -> bytes:
    """One definition as a definitions file (``feeds:`` or ``segments:`` with one entry)."""
    return yaml.dump({PLURAL[kind]: [body]}, Dumper=_Dumper, **_DUMP_OPTIONS).encode("utf-8")


def dump_document(document: dict[str, list[dict[str, Any]]]) -> bytes:
    """A whole ``{feeds: [...], segments: [...]}`` document as YAML the loader reads, in the export's
    style: a run's pinned copy of thousands of definitions (libyaml's emitter, 3x faster)."""
    return yaml.dump(document, Dumper=_FastDumper, **_DUMP_OPTIONS).encode("utf-8")


def file_name(kind: str, definition_id: str) -> str:
    return f"{PLURAL[kind]}/{_UNSAFE.sub('_', definition_id)}.yaml"


def write_folder(directory: str | Path, items: Iterable[tuple[str, str, dict[str, Any]]]) -> tuple[list[Path], list[Path]]:
    """Write ``(kind, definition_id, body)`` items; remove the exported files no longer in the set.

    Only ``feeds/`` and ``segments/`` under ``directory`` are touched. Returns (written, removed).
    """
    directory = Path(directory)
    written: list[Path] = []
    keep: set[Path] = set()
    for kind, definition_id, body in items:
        path = directory / file_name(kind, definition_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = dump_definition(kind, body)
        keep.add(path)
        if not path.is_file() or path.read_bytes() != data:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        written.append(path)
    removed = []
    for plural in PLURAL.values():
        folder = directory / plural
        if folder.is_dir():
            for stale in sorted(folder.glob("*.yaml")):
                if stale not in keep:
                    stale.unlink()
                    removed.append(stale)
    return written, removed
