"""Validate definition bodies held in memory (the registry's drafts), each problem located.

A body is one entry of a ``feeds:`` or ``segments:`` list, ``for_each`` included. The
checks are exactly those of ``feedgen validate`` (parse, then ``validate_definitions`` on
the whole set given); each problem is attributed to the body it is in and its path
(``where.all[2].field``) is also given as a JSON pointer into that body (``/where/all/2/field``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feedgen.core.paths import TEMPLATES_DIR
from feedgen.generator.definitions import Definition, _dedupe, _definitions_of_file
from feedgen.generator.parse import LocDict, LocList, Problem, located
from feedgen.generator.tree import InSegment

PLURAL = {"feed": "feeds", "segment": "segments"}
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class Body:
    """One definition entry to check: ``key`` names it for the caller (a definition id, a file entry)."""

    key: str
    kind: str                    # feed | segment
    body: Mapping[str, Any]
    file: str                    # shown in problems; unique per body unless the body has real line numbers


@dataclass(frozen=True)
class LocatedProblem:
    """A problem in one body: ``pointer`` is a JSON pointer into that body."""

    key: str
    pointer: str
    problem: Problem

    @property
    def message(self) -> str:
        return self.problem.message

    @property
    def fix(self) -> str:
        return self.problem.fix

    def __str__(self) -> str:
        p = self.problem
        where = " ".join(x for x in (p.definition, self.pointer or "/") if x)
        text = f"{where}: {p.message}"
        return f"{text}; {p.fix}" if p.fix else text


@dataclass
class Checked:
    """The definitions each body expands to, and every problem found."""

    definitions: dict[str, list[Definition]] = field(default_factory=dict)
    problems: list[LocatedProblem] = field(default_factory=list)

    def expansions(self, key: str) -> list[str]:
        return [d.id for d in self.definitions.get(key, [])]

    def references(self, key: str) -> list[str]:
        """The segment ids the body's ``in_segment`` clauses name (sorted, once each)."""
        found = {n.segment_id for d in self.definitions.get(key, []) for n in d.where.walk()
                 if isinstance(n, InSegment)}
        return sorted(found)

    def problems_of(self, keys: Iterable[str]) -> list[LocatedProblem]:
        wanted = set(keys)
        return [p for p in self.problems if p.key in wanted]


def json_pointer(path: str) -> str:
    """``where.all[2].field`` → ``/where/all/2/field`` (``""`` is the whole body)."""
    parts = []
    for m in _STEP.finditer(path or ""):
        step = m.group(1) if m.group(1) is not None else m.group(2)
        parts.append(step.replace("~", "~0").replace("/", "~1"))
    return "".join("/" + p for p in parts)


def check_bodies(bodies: Sequence[Body], templates_dir: str | Path | None = None) -> Checked:
    """Parse and validate ``bodies`` as one set, as ``feedgen validate`` does a directory;
    user templates are looked up in ``templates_dir`` (config ``generate.templates_dir``)."""
    from feedgen.generator.validate import validate_definitions

    out = Checked()
    everything: list[Definition] = []
    parse_problems: list[tuple[Body, Problem]] = []
    for body in bodies:
        problems: list[Problem] = []
        if not isinstance(body.body, Mapping):
            problems.append(Problem(body.file, 0, None, "", "a definition must be a mapping",
                                    "start it with id: ..."))
            defs: list[Definition] = []
        else:
            entry = body.body if isinstance(body.body, LocDict) else located(dict(body.body))
            document = LocDict({PLURAL[body.kind]: LocList([entry])})
            defs = list(_definitions_of_file(document, body.file, problems))
        out.definitions[body.key] = defs
        everything.extend(defs)
        parse_problems.extend((body, p) for p in problems)
    owner = _Owners(bodies)
    for body, p in parse_problems:
        out.problems.append(LocatedProblem(body.key, json_pointer(p.path), p))
    seen = {lp.problem for lp in out.problems}
    for p in _dedupe(validate_definitions(everything, templates_dir)):
        if p in seen:
            continue
        seen.add(p)
        out.problems.append(LocatedProblem(owner.of(p), json_pointer(p.path), p))
    return out


class _Owners:
    """Which body a validation problem belongs to: by its file, then by its line within that file."""

    def __init__(self, bodies: Sequence[Body]) -> None:
        self.by_file: dict[str, list[tuple[int, str]]] = {}
        for b in bodies:
            line = getattr(b.body, "line", 0)
            self.by_file.setdefault(b.file, []).append((line, b.key))
        for entries in self.by_file.values():
            entries.sort()

    def of(self, problem: Problem) -> str:
        entries = self.by_file.get(problem.file) or [(0, "")]
        key = entries[0][1]
        for line, candidate in entries:
            if line <= problem.line:
                key = candidate
        return key


def validator_fingerprint(templates_dir: str | Path | None = None) -> str:
    """SHA-256 of everything that decides whether a set of definitions is valid: the parser's and
    validator's code (generator/), the aggregate schemas, the gate options, the built-in templates
    and the user templates in ``templates_dir``. A set found valid under one fingerprint is valid
    under the same fingerprint; when any of these files changes, the set must be validated again."""
    files = _fingerprinted_files(templates_dir)
    key = tuple((name, st.st_mtime_ns, st.st_size) for name, path, st in files)
    if key not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for name, path, _ in files:
            digest.update(name.encode("utf-8") + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        _FINGERPRINTS.clear()  # one entry per process is enough: files change rarely
        _FINGERPRINTS[key] = digest.hexdigest()
    return _FINGERPRINTS[key]


_FINGERPRINTS: dict[tuple, str] = {}


def _fingerprinted_files(templates_dir: str | Path | None) -> list[tuple[str, Path, Any]]:
    here = Path(__file__).resolve().parent
    code = [*sorted(here.glob("*.py")), here.parent / "aggregator" / "schemas.py",
            here.parent / "core" / "config_schema.py"]
    out = [(f"code:{p.name}", p, p.stat()) for p in code if p.is_file()]
    for label, folder in (("builtin", TEMPLATES_DIR), ("user", templates_dir)):
        if folder and Path(folder).is_dir():
            out += [(f"{label}:{p.relative_to(folder)}", p, p.stat())
                    for p in sorted(Path(folder).rglob("*")) if p.is_file()]
    return out


def plain(value: Any) -> Any:
    """A YAML/JSON value as plain dicts, lists and JSON scalars (dates become ISO text)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
