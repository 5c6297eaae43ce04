"""Feed and segment definitions: load a directory of YAML/JSON files into a DefinitionSet.

Each file holds ``feeds:`` and/or ``segments:`` lists. ``for_each`` expands one entry into
one definition per value (``{name}`` in any string is replaced; ``{{name}}`` is a literal).
Loading collects every problem in every file, then validation against the aggregate
schema adds its own, and one DefinitionError lists them all.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from feedgen.core.errors import BadInput, DefinitionError
from feedgen.generator.gates import THRESHOLD_KEYS
from feedgen.generator.parse import (
    Context,
    Entry,
    FileError,
    LocDict,
    LocList,
    Problem,
    did_you_mean,
    load_file,
    located,
    parse_duration,
    parse_where,
    read_text,
    survey,
    type_label,
)
from feedgen.generator.tree import Node

KINDS = {"feeds": "feed", "segments": "segment"}
DEFAULT_ENTITY = {"feed": "offer", "segment": "customer"}
ENTITIES = ("offer", "customer")
COMMON_KEYS = ("id", "entity", "description", "where", "options", "delivery", "gates", "refresh_after",
               "for_each")
FEED_KEYS = (*COMMON_KEYS, "template", "pick_one_per", "order_by")
SEGMENT_KEYS = (*COMMON_KEYS, "exports")
# Output options: `fields` chooses the columns of generic templates; the limits split files.
OPTION_KEYS = ("fields", "max_file_bytes", "max_file_items")
DELIVERY_KEYS = ("events", "destinations")
GATE_KEYS = THRESHOLD_KEYS  # per-definition overrides of the anomaly gates
EXTENSIONS = (".yaml", ".yml", ".json")
MAX_FOR_EACH = 10_000        # definitions one for_each entry may expand to
MAX_DEFINITIONS = 100_000    # definitions in one directory, after expansion
_PLACEHOLDER = re.compile(r"\{\{([A-Za-z_]\w*)\}\}|\{([A-Za-z_]\w*)\}")


@dataclass(frozen=True)
class Definition:
    """One feed or segment, for_each already expanded; ``where`` is the predicate tree."""

    id: str
    kind: str                                  # feed | segment
    entity: str                                # offer | customer
    where: Node
    template: str | None = None                # feeds
    exports: tuple[str, ...] = ()              # segments
    pick_one_per: str | None = None
    order_by: tuple[str, ...] = ()             # "-field" sorts descending
    options: Mapping[str, Any] = field(default_factory=dict)
    delivery: Mapping[str, Any] = field(default_factory=dict)
    gates: Mapping[str, Any] = field(default_factory=dict)
    refresh_after: timedelta | None = None     # None: the default (28 days)
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None
    file: str = "<memory>"
    line: int = 0
    source_id: str = ""                        # the id as written, before for_each expansion
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.id!r}"

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


@dataclass(frozen=True)
class DefinitionSet:
    """Every definition of a directory, in file order."""

    definitions: tuple[Definition, ...]

    def __iter__(self) -> Iterator[Definition]:
        return iter(self.definitions)

    def __len__(self) -> int:
        return len(self.definitions)

    @property
    def feeds(self) -> tuple[Definition, ...]:
        return tuple(d for d in self.definitions if d.kind == "feed")

    @property
    def segments(self) -> tuple[Definition, ...]:
        return tuple(d for d in self.definitions if d.kind == "segment")

    @property
    def by_id(self) -> dict[str, Definition]:
        return {d.id: d for d in self.definitions}

    def for_entity(self, entity: str) -> tuple[Definition, ...]:
        return tuple(d for d in self.definitions if d.entity == entity)

    def segments_by_id(self) -> dict[str, Definition]:
        return {d.id: d for d in self.definitions if d.kind == "segment"}

    def get(self, definition_id: str) -> Definition:
        """The definition with this id; BadInput naming the closest ids when there is none."""
        found = self.by_id.get(definition_id)
        if found is None:
            ids = sorted(self.by_id)
            raise BadInput(f"no definition {definition_id!r}; "
                           + (did_you_mean(definition_id, ids) if ids else "the definitions directory is empty"))
        return found


def load_definitions(directory: str | Path, *, validate: bool = True,
                     templates_dir: str | Path | None = None) -> DefinitionSet:
    """Load every ``*.yaml``, ``*.yml`` and ``*.json`` under ``directory``; DefinitionError lists every problem.

    ``templates_dir`` (config ``generate.templates_dir``) holds the user templates definitions may name.
    """
    problems: list[Problem] = []
    definitions = _bounded(_load_directory(Path(directory), problems), str(directory), problems)
    if validate:
        from feedgen.generator.validate import validate_definitions

        problems.extend(validate_definitions(definitions, templates_dir))
    if problems:
        raise DefinitionError(_dedupe(problems))
    return DefinitionSet(tuple(definitions))


def definitions_from_mapping(data: Mapping[str, Any], file: str = "<memory>", *,
                             validate: bool = True, templates_dir: str | Path | None = None) -> DefinitionSet:
    """Definitions from an in-memory ``{feeds: [...], segments: [...]}`` (tests, benchmarks)."""
    return definitions_from_documents([(file, data)], validate=validate, templates_dir=templates_dir)


def definitions_from_documents(documents: Iterable[tuple[str, Mapping[str, Any]]], *, validate: bool = True,
                               templates_dir: str | Path | None = None) -> DefinitionSet:
    """Definitions from ``(file label, {feeds: [...], segments: [...]})`` pairs, validated as one set;
    each problem names its document's label (``registry:<id> v<n>``) and, for parsed YAML, the line."""
    problems: list[Problem] = []
    found = itertools.chain.from_iterable(_definitions_of_document(data, file, problems)
                                          for file, data in documents)
    definitions = _bounded(found, "the definitions", problems)
    if validate:
        from feedgen.generator.validate import validate_definitions

        problems.extend(validate_definitions(definitions, templates_dir))
    if problems:
        raise DefinitionError(_dedupe(problems))
    return DefinitionSet(tuple(definitions))


def _bounded(found: Iterator[Definition], where: str, problems: list[Problem]) -> list[Definition]:
    """At most MAX_DEFINITIONS definitions; past it, one problem instead of a MemoryError."""
    out: list[Definition] = []
    for d in found:
        if len(out) == MAX_DEFINITIONS:
            problems.append(Problem(d.file, d.line, d.label, "", f"more than {MAX_DEFINITIONS:,} definitions "
                                    f"in {where} (after for_each)", _TOO_MANY_FIX))
            break
        out.append(d)
    return out


def _definitions_of_document(data: Any, file: str, problems: list[Problem]) -> Iterator[Definition]:
    try:
        data = located(data)
    except FileError as err:
        problems.append(Problem(file, err.line, None, "", str(err), err.fix))
        return
    yield from _definitions_of_file(data, file, problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    # One mistake in a for_each entry shows once, not once per expanded value.
    seen, out = set(), []
    for p in problems:
        key = (p.file, p.line, p.path, p.message, p.fix)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _load_directory(directory: Path, problems: list[Problem]) -> Iterator[Definition]:
    if directory.is_file() and directory.suffix in EXTENSIONS:
        files = [directory]  # one file, e.g. the copy a run pinned: runs/<run_id>/definitions.yaml
    elif not directory.is_dir():
        problems.append(Problem(str(directory), 0, None, "", "definitions directory not found",
                                "pass an existing directory (--definitions DIR or 'definitions' in the config)"))
        return
    else:
        files = sorted(p for p in directory.rglob("*") if p.suffix in EXTENSIONS and p.is_file())
    if not files:
        problems.append(Problem(str(directory), 0, None, "", "no definition files (*.yaml, *.yml, *.json)",
                                "add a file with feeds: and/or segments: lists"))
    # First every file's size, nesting and for_each sizes, from the parser's events: over a
    # bound, stop before building (or expanding) anything.
    texts: dict[Path, str] = {}
    entries: list[tuple[str, Entry]] = []
    for path in files:
        try:
            text = read_text(path)
            entries.extend((str(path), e) for e in survey(text))
        except FileError as err:
            problems.append(Problem(str(path), err.line, None, "", str(err), err.fix))
            continue
        texts[path] = text
    if _over_bounds(entries, str(directory), problems):
        return
    for path, text in texts.items():
        try:
            data = load_file(path, text)
        except FileError as err:
            problems.append(Problem(str(path), err.line, None, "", str(err), err.fix))
            continue
        yield from _definitions_of_file(data, str(path), problems)


def _over_bounds(entries: list[tuple[str, Entry]], where: str, problems: list[Problem]) -> bool:
    """Problems for every for_each over MAX_FOR_EACH and for more than MAX_DEFINITIONS in all,
    counted from the for_each list lengths before anything is expanded."""
    before = len(problems)
    total = 0
    for file, e in entries:
        label = f"{KINDS[e.kind]} {e.id!r}" if isinstance(e.id, str) else f"{KINDS[e.kind]} at line {e.line}"
        size = math.prod(e.sizes.values()) if e.sizes and None not in e.sizes.values() else 1
        if size > MAX_FOR_EACH:
            problems.append(Problem(file, e.for_each_line, label, "for_each", *_for_each_too_big(list(e.sizes.values()))))
        total += size
        if total > MAX_DEFINITIONS and len(problems) == before:
            problems.append(Problem(file, e.line, label, "", f"more than {MAX_DEFINITIONS:,} definitions in {where} "
                                    "(after for_each)", _TOO_MANY_FIX))
    return len(problems) != before


def _for_each_too_big(sizes: list[int]) -> tuple[str, str]:
    return (f"for_each expands to {math.prod(sizes):,} definitions ({' × '.join(map(str, sizes))}), "
            f"over the limit of {MAX_FOR_EACH:,}",
            "split it into several entries, or match several values in one definition with in: [...]")


_TOO_MANY_FIX = ("split them across several definitions directories and runs, or match several values in one "
                 "definition with in: [...]")


def _definitions_of_file(data: Any, file: str, problems: list[Problem]) -> Iterator[Definition]:
    if data is None:
        return
    if not isinstance(data, dict):
        problems.append(Problem(file, 1, None, "", f"a definitions file must be a mapping, got {type_label(data)}",
                                "start the file with feeds: or segments:"))
        return
    for key, line in getattr(data, "duplicates", []):
        problems.append(Problem(file, line, None, str(key), f"duplicate key {key!r}", "merge the two lists into one"))
    for key, entries in data.items():
        if key not in KINDS:
            problems.append(Problem(file, data.line_of(key), None, str(key), f"unknown top-level key {key!r}",
                                    did_you_mean(key, tuple(KINDS))))
            continue
        if entries is None:
            continue
        if not isinstance(entries, list):
            problems.append(Problem(file, data.line_of(key), None, key, f"{key} must be a list, got {type_label(entries)}",
                                    f"write {key}:\\n  - id: ..."))
            continue
        for i, raw in enumerate(entries):
            line = entries.line_of(i) if isinstance(entries, LocList) else 0
            if not isinstance(raw, dict):
                problems.append(Problem(file, line, None, f"{key}[{i}]", f"an entry must be a mapping, got {type_label(raw)}",
                                        "start it with - id: ..."))
                continue
            yield from _expand(raw, KINDS[key], file, problems)


def _expand(raw: LocDict, kind: str, file: str, problems: list[Problem]) -> Iterator[Definition]:
    raw_id = raw.get("id")
    label = f"{kind} {raw_id!r}" if isinstance(raw_id, str) else f"{kind} at line {raw.line}"
    ctx = Context(file, label, problems)
    if not isinstance(raw_id, str) or not raw_id:
        ctx.problem(raw.line_of("id") if "id" in raw else raw.line, "id", f"missing id (got {type_label(raw_id)})",
                    "add id: a-name-like-this ([a-z0-9-]+, unique)")
        return
    for key, line in getattr(raw, "duplicates", []):
        ctx.problem(line, str(key), f"duplicate key {key!r}", "keep one of them")
    allowed = FEED_KEYS if kind == "feed" else SEGMENT_KEYS
    for key in raw:
        if key not in allowed:
            other = "segments" if kind == "feed" else "feeds"
            hint = (f"{key!r} belongs to {other}" if key in (SEGMENT_KEYS if kind == "feed" else FEED_KEYS)
                    else did_you_mean(key, allowed))
            ctx.problem(raw.line_of(key), str(key), f"unknown key {key!r}", hint)
    params_list = _for_each(raw, ctx)
    if params_list is None:
        return
    body = LocDict((k, v) for k, v in raw.items() if k != "for_each")
    body.line, body.key_lines = raw.line, getattr(raw, "key_lines", {})
    for params in params_list:
        before = len(problems)
        # without for_each and without a brace there is nothing to substitute or report: no copy
        expanded = _substitute(body, params, ctx, "") if params or _has_brace(body) else body
        if len(problems) != before:
            continue
        definition = _build(expanded, kind, file, params, raw_id, problems)
        if definition is not None:
            yield definition


def _for_each(raw: LocDict, ctx: Context) -> list[dict[str, Any]] | None:
    spec = raw.get("for_each")
    if spec is None:
        return [{}]
    line = raw.line_of("for_each")
    if not isinstance(spec, dict) or not spec:
        ctx.problem(line, "for_each", f"for_each must map names to lists of values, got {type_label(spec)}",
                    "write for_each: {store_id: [101, 102]}")
        return None
    names, values = [], []
    for name, items in spec.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
            ctx.problem(spec.line_of(name), f"for_each.{name}", f"bad placeholder name {name!r}",
                        "use letters, digits and _ (e.g. store_id)")
            return None
        if not isinstance(items, list) or not items or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                                for v in items):
            ctx.problem(spec.line_of(name), f"for_each.{name}", f"{name} needs a non-empty list of texts or numbers",
                        f"write {name}: [101, 102, 103]")
            return None
        if f"{{{name}}}" not in str(raw.get("id")):
            ctx.problem(spec.line_of(name), f"for_each.{name}", f"the id does not use {{{name}}}",
                        f"put {{{name}}} in the id so each expanded definition has its own id")
            return None
        names.append(name)
        values.append(items)
    if math.prod(len(v) for v in values) > MAX_FOR_EACH:
        ctx.problem(line, "for_each", *_for_each_too_big([len(v) for v in values]))
        return None
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def _has_brace(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_brace(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_brace(v) for v in value)
    return isinstance(value, str) and "{" in value


def _substitute(value: Any, params: dict[str, Any], ctx: Context, path: str, line: int = 0) -> Any:
    """Copy ``value`` with ``{name}`` replaced in every string, keeping line numbers."""
    if isinstance(value, dict):
        out = LocDict()
        out.line = getattr(value, "line", line)
        out.key_lines = dict(getattr(value, "key_lines", {}))
        for k, v in value.items():
            sub_path = f"{path}.{k}" if path else str(k)
            out[k] = _substitute(v, params, ctx, sub_path, value.line_of(k) if isinstance(value, LocDict) else line)
        return out
    if isinstance(value, list):
        out_list = LocList(_substitute(v, params, ctx, f"{path}[{i}]",
                                       value.line_of(i) if isinstance(value, LocList) else line)
                           for i, v in enumerate(value))
        out_list.line = getattr(value, "line", line)
        out_list.item_lines = list(getattr(value, "item_lines", []))
        return out_list
    if isinstance(value, str) and "{" in value:
        def repl(m: re.Match) -> str:
            if m.group(1):
                return "{" + m.group(1) + "}"
            name = m.group(2)
            if name in params:
                return str(params[name])
            ctx.problem(line, path, f"unexpanded placeholder {{{name}}} in {value!r}",
                        f"add {name} to for_each, or write {{{{{name}}}}} for a literal {{{name}}}")
            return m.group(0)

        return _PLACEHOLDER.sub(repl, value)
    return value


def _build(raw: LocDict, kind: str, file: str, params: dict[str, Any], source_id: str,
           problems: list[Problem]) -> Definition | None:
    def_id = raw["id"]
    ctx = Context(file, f"{kind} {def_id!r}", problems)
    entity = raw.get("entity", DEFAULT_ENTITY[kind])
    if entity not in ENTITIES:
        ctx.problem(raw.line_of("entity"), "entity", f"unknown entity {entity!r}",
                    f"use entity: offer or entity: customer ({did_you_mean(entity, ENTITIES)})")
    where = parse_where(raw.get("where"), ctx, raw.line_of("where") if "where" in raw else raw.line)
    template = raw.get("template")
    if kind == "feed" and not isinstance(template, str):
        ctx.problem(raw.line_of("template") if "template" in raw else raw.line, "template",
                    "a feed needs a template" if template is None else f"template must be a name, got {type_label(template)}",
                    "add e.g. template: google_merchant_rss")
        template = None
    exports = _str_list(raw, "exports", ctx)
    order_by = _str_list(raw, "order_by", ctx)
    pick = raw.get("pick_one_per")
    if pick is not None and not isinstance(pick, str):
        ctx.problem(raw.line_of("pick_one_per"), "pick_one_per", f"pick_one_per needs a field, got {type_label(pick)}",
                    "write pick_one_per: product_id")
        pick = None
    if pick is not None and not order_by:
        ctx.problem(raw.line_of("pick_one_per"), "pick_one_per", "pick_one_per without order_by",
                    "add order_by: [price.amount] so the pick is the same every run")
    refresh = None
    if "refresh_after" in raw:
        duration = parse_duration(raw["refresh_after"], ctx, raw.line_of("refresh_after"), "refresh_after")
        refresh = duration.delta if duration else None
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        ctx.problem(raw.line_of("description"), "description", f"description must be text, got {type_label(description)}",
                    "quote it")
        description = None
    return Definition(
        id=def_id, kind=kind, entity=entity if entity in ENTITIES else DEFAULT_ENTITY[kind], where=where,
        template=template, exports=tuple(exports), pick_one_per=pick, order_by=tuple(order_by),
        options=_section(raw, "options", OPTION_KEYS, ctx), delivery=_section(raw, "delivery", DELIVERY_KEYS, ctx),
        gates=_section(raw, "gates", GATE_KEYS, ctx), refresh_after=refresh, params=dict(params),
        description=description, file=file, line=raw.line, source_id=source_id,
        key_lines=dict(getattr(raw, "key_lines", {})),
    )


def _str_list(raw: LocDict, key: str, ctx: Context) -> list[str]:
    value = raw.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        ctx.problem(raw.line_of(key), key, f"{key} must be a list of names, got {type_label(value)}",
                    f"write {key}: [a, b]")
        return []
    return list(value)


def _section(raw: LocDict, key: str, allowed: tuple[str, ...], ctx: Context) -> dict[str, Any]:
    """A small mapping with known keys (values are checked by the validator)."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        ctx.problem(raw.line_of(key), key, f"{key} must be a mapping, got {type_label(value)}",
                    f"write {key}: {{{allowed[0]}: ...}}")
        return {}
    out = {}
    for k, v in value.items():
        if k not in allowed:
            ctx.problem(value.line_of(k), f"{key}.{k}", f"unknown {key} key {k!r}", did_you_mean(k, allowed))
        else:
            out[k] = _to_plain(v)
    return out


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    return value
