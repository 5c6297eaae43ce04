"""Check definitions against the aggregate schemas and the registry, collecting every problem.

``validate_definitions`` returns the list; ``check_definitions`` raises one DefinitionError
holding all of them. Each problem names file:line, the definition, the path inside it,
what is wrong and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pyspark.sql import types as T

from feedgen.aggregator.schemas import AGGREGATE_SCHEMAS
from feedgen.core.config_schema import gate_problem
from feedgen.core.errors import DefinitionError
from feedgen.generator.definitions import Definition
from feedgen.generator.fields import FieldNotFound, coerce, describe, kind_of, leaf_paths, resolve
from feedgen.generator.parse import Problem, did_you_mean, type_label
from feedgen.generator.regex import RegexRejected, check_pattern
from feedgen.generator.registry import AUDIENCE_EXPORTS, FEED_TEMPLATES, TEMPLATE_ENTITY
from feedgen.generator.templates import (
    TemplateProblem,
    UserTemplate,
    find_user_template,
    render_trouble,
    sample_item,
    template_problems,
    user_template_names,
)
from feedgen.generator.tree import (
    Between,
    Compare,
    Contains,
    History,
    In,
    InSegment,
    IsNull,
    Leaf,
    Node,
    Regex,
    StringMatch,
    TimeWindow,
)

ID_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_ID_LENGTH = 128  # the file server routes ids of at most 128 characters (fileserver/params.py)
_ORDERED = ("eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in", "is_null")
OPS_BY_KIND: dict[str, tuple[str, ...]] = {
    "string": (*_ORDERED, "starts_with", "ends_with", "contains", "matches"),
    "number": _ORDERED,
    "boolean": ("eq", "ne", "is_null"),
    "timestamp": ("eq", "ne", "lt", "lte", "gt", "gte", "between", "is_null", "within_last", "older_than"),
    "list": ("contains", "is_null"),
    "map": ("is_null",),
    "struct": ("is_null",),
    "history": ("is_null",),
}
_SORTABLE = ("string", "number", "boolean", "timestamp")
GENERIC_TEMPLATES = ("generic_csv", "generic_tsv")  # their columns are options.fields


def check_definitions(definitions: Iterable[Definition], templates_dir: str | Path | None = None) -> None:
    """Raise DefinitionError listing every problem; return quietly when there is none."""
    problems = validate_definitions(list(definitions), templates_dir)
    if problems:
        raise DefinitionError(problems)


def validate_definitions(definitions: list[Definition],
                         templates_dir: str | Path | None = None) -> list[Problem]:
    """Every problem of ``definitions``; user templates are looked up in ``templates_dir``."""
    problems: list[Problem] = []
    first_seen: dict[str, Definition] = {}
    templates = _UserTemplates(templates_dir)
    for d in definitions:
        _Checker(d, problems, templates).check()
        other = first_seen.get(d.id)
        if other is not None:
            problems.append(Problem(d.file, d.line, d.label, "id",
                                    f"duplicate id {d.id!r}, also defined at {other.file}:{other.line}",
                                    "give each feed and segment its own id"))
        else:
            first_seen[d.id] = d
    problems.extend(_segment_references(definitions, first_seen))
    return problems


class _UserTemplates:
    """The user templates of one validation, each found and checked once."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = folder
        self.names = user_template_names(folder)
        self._checked: dict[str, tuple[UserTemplate | None, list[TemplateProblem]]] = {}
        self._rendered: dict[tuple, list[TemplateProblem]] = {}

    def check(self, name: str) -> tuple[UserTemplate | None, list[TemplateProblem]]:
        if name not in self._checked:
            try:
                found = find_user_template(name, self.folder)
            except TemplateProblem as err:
                self._checked[name] = (None, [err])
            else:
                self._checked[name] = (found, template_problems(found) or _chrome_problems(found))
        return self._checked[name]

    def sample(self, template: UserTemplate, options: Mapping | None) -> list[TemplateProblem]:
        """The problems of rendering ``template``'s item once on a sample item (once per render options)."""
        from feedgen.generator.render import renderer_key

        key = renderer_key(template.name, options)
        if key not in self._rendered:
            self._rendered[key] = _item_problems(template, options or {})
        return self._rendered[key]

    def choices(self, builtin: Iterable[str]) -> str:
        names = ", ".join(sorted(builtin))
        if self.folder is None:
            return f"built-in: {names} (set generate.templates_dir for your own)"
        return f"built-in: {names}; yours in {self.folder}: {', '.join(self.names) or 'none'}"


_SAMPLE_FIX = {
    "template_limit": "keep each item within the bounds: 1,000,000 characters per value and per item, "
                      "100,000 loop iterations, 1 s (README, 'Your own templates')",
    "template_security_error": "remove that access: the sandbox refuses it",
    "template_invalid_xml": "make the item one well-formed XML element (values are escaped for you)",
}


def _item_problems(template: UserTemplate, options: Mapping) -> list[TemplateProblem]:
    """Render the item once on a sample item with every field set, under the bounds of a run:
    an error there would leave out every item of every run."""
    from feedgen.generator.render import TEMPLATE_FAILURES, get_renderer

    try:
        result = get_renderer(template.name, options, template.folder.parent).render(sample_item(template.entity))
    except Exception as err:  # any error of a user's template is a problem to report
        return [render_trouble(err, template)]
    if result.text is not None or not result.errors or result.errors[0] not in TEMPLATE_FAILURES:
        return []  # rendered, or left out by the template's own reject()
    reason, detail = result.errors[0], result.detail or {}
    fix = _SAMPLE_FIX.get(reason, "every field of the sample is set (see aggregator/schemas.py): fix the "
                                  "expression at that line, or guard it with {% if %} or |default")
    return [TemplateProblem(detail.get("file") or template.file("item"), detail.get("line") or 0,
                            f"fails on a sample {template.entity} ({reason}): {detail.get('message', '')}", fix)]


def _chrome_problems(template: UserTemplate) -> list[TemplateProblem]:
    """Render the header and footer once: an error there would stop the run after its Spark job."""
    from feedgen.generator.render import get_renderer

    ctx = {"definition_id": "check", "title": "check", "link": "", "run_id": "check",
           "as_of": "2026-01-01T00:00:00Z"}
    try:
        renderer = get_renderer(template.name, {}, template.folder.parent)
        renderer.header(ctx)
        renderer.footer(ctx)
    except Exception as err:  # any error of a user's template is a problem to report
        return [render_trouble(err, template)]
    return []


class _Checker:
    """The checks of one definition."""

    def __init__(self, definition: Definition, problems: list[Problem],
                 templates: _UserTemplates | None = None) -> None:
        self.d = definition
        self.problems = problems
        self.templates = templates or _UserTemplates(None)
        self.schema: T.StructType = AGGREGATE_SCHEMAS[definition.entity]

    def problem(self, line: int, path: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(self.d.file, line, self.d.label, path, message, fix))

    def node_problem(self, node: Node, suffix: str, message: str, fix: str = "") -> None:
        loc = node.loc
        line = loc.line if loc else self.d.line
        path = (loc.path if loc else "where") + (f".{suffix}" if suffix else "")
        self.problem(line, path, message, fix)

    def check(self) -> None:
        d = self.d
        if len(d.id) > MAX_ID_LENGTH:
            short = f"{d.id[:40]}…"
            self.problems.append(Problem(
                d.file, d.line_of("id"), f"{d.kind} {short!r}", "id",
                f"id of {len(d.id):,} characters{' after for_each' if d.id != d.source_id else ''}, "
                f"over the limit of {MAX_ID_LENGTH} (the file server serves ids up to {MAX_ID_LENGTH})",
                "shorten the id (or the for_each values it includes)"))
        elif not ID_PATTERN.fullmatch(d.id):
            self.problem(d.line_of("id"), "id", f"bad id {d.id!r}",
                         "use lower-case letters, digits and single dashes, e.g. google-electronics-pl")
        self._check_outputs()
        self._check_ordering()
        self._check_sections()
        stack = [d.where]
        while stack:
            node = stack.pop()
            if isinstance(node, History):
                self._check_history(node)  # its where addresses the elements, not the entity
            elif isinstance(node, Leaf):
                self._check_leaf(node, self.schema)
            else:
                stack.extend(reversed(node.children()))

    # -- outputs, ordering, options ------------------------------------------------------

    def _check_outputs(self) -> None:
        d = self.d
        if d.kind == "feed" and d.template is not None:
            if d.template in AUDIENCE_EXPORTS:
                self.problem(d.line_of("template"), "template", f"unknown template {d.template!r}",
                             f"{d.template!r} is an audience export; feeds use a template")
            elif d.template not in FEED_TEMPLATES:
                self._check_user_template(d.template, "template", FEED_TEMPLATES)
            elif TEMPLATE_ENTITY[d.template] != d.entity:
                self.problem(d.line_of("template"), "template",
                             f"template {d.template!r} renders {TEMPLATE_ENTITY[d.template]}s, not {d.entity}s",
                             f"use entity: {TEMPLATE_ENTITY[d.template]} or another template")
        for i, name in enumerate(d.exports):
            if name in FEED_TEMPLATES:
                self.problem(d.line_of("exports"), f"exports[{i}]", f"unknown export {name!r}",
                             f"{name!r} is a feed template; segments use exports")
            elif name not in AUDIENCE_EXPORTS:
                self._check_user_template(name, f"exports[{i}]", AUDIENCE_EXPORTS)
            elif TEMPLATE_ENTITY[name] != d.entity:
                self.problem(d.line_of("exports"), f"exports[{i}]",
                             f"export {name!r} is for {TEMPLATE_ENTITY[name]}s, not {d.entity}s",
                             "use an offer feed with a template instead")

    def _check_user_template(self, name: str, path: str, builtin: Mapping[str, str]) -> None:
        d = self.d
        key = "template" if path == "template" else "exports"
        what = "template" if key == "template" else "export"
        if name not in self.templates.names:
            close = did_you_mean(name, [*builtin, *self.templates.names])
            choices = self.templates.choices(builtin)
            if not close.startswith("did you mean"):
                hint = f"use one of: {choices}"
            else:  # with user templates, say which of them exist too
                hint = close if self.templates.folder is None else f"{close} ({choices})"
            self.problem(d.line_of(key), path, f"unknown {what} {name!r}", hint)
            return
        found, troubles = self.templates.check(name)
        if found is not None and not troubles and found.entity == d.entity:
            troubles = self.templates.sample(found, d.options)
        for t in troubles:
            self.problems.append(Problem(t.file, t.line, d.label, path, f"template {name!r}: {t.message}", t.fix))
        if found is not None and found.entity != d.entity:
            self.problem(d.line_of(key), path, f"template {name!r} renders {found.entity}s, not {d.entity}s",
                         f"use entity: {found.entity}, or write {d.entity} in {found.folder / 'entity'}")

    def _scalar_field(self, path: str, line: int, where: str, what: str) -> None:
        try:
            ref = resolve(self.schema, path)
        except FieldNotFound as err:
            self.problem(line, where, err.problem, _field_fix(err))
            return
        if kind_of(ref.dtype) not in _SORTABLE:
            self.problem(line, where, f"{what} needs a single value, but {path!r} is a {describe(ref.dtype)}",
                         "use a text, number, boolean or timestamp field")

    def _check_ordering(self) -> None:
        d = self.d
        if d.pick_one_per:
            self._scalar_field(d.pick_one_per, d.line_of("pick_one_per"), "pick_one_per", "pick_one_per")
        for i, item in enumerate(d.order_by):
            self._scalar_field(item.removeprefix("-"), d.line_of("order_by"), f"order_by[{i}]", "order_by")

    def _check_sections(self) -> None:
        d = self.d
        fields = d.options.get("fields")
        if fields is None and d.template in GENERIC_TEMPLATES:
            self.problem(d.line_of("template"), "options.fields", f"template {d.template!r} needs the fields to write",
                         "add options: {fields: [offer_id, title, price.amount]}")
        if fields is not None:
            if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
                self.problem(d.line_of("options"), "options.fields", "fields must be a non-empty list of field paths",
                             "write fields: [offer_id, title, price.amount]")
            else:
                for i, f in enumerate(fields):
                    try:
                        resolve(self.schema, f)
                    except FieldNotFound as err:
                        self.problem(d.line_of("options"), f"options.fields[{i}]", err.problem, _field_fix(err))
        for key in ("max_file_bytes", "max_file_items"):
            value = d.options.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                self.problem(d.line_of("options"), f"options.{key}", f"{key} must be a whole number > 0, got {type_label(value)}",
                             f"write {key}: 100000")
        events = d.delivery.get("events")
        if events is not None and not isinstance(events, bool):
            self.problem(d.line_of("delivery"), "delivery.events", f"events takes true or false, got {type_label(events)}",
                         "write events: true")
        dests = d.delivery.get("destinations")
        if dests is not None and (not isinstance(dests, list) or not all(
                isinstance(x, str) and re.fullmatch(r"[a-z0-9_-]+", x) for x in dests)):
            self.problem(d.line_of("delivery"), "delivery.destinations",
                         "destinations must be a list of connector names", "write destinations: [meta_catalog_batch]")
        for key, value in d.gates.items():
            # the same rules as the config's gates section (feedgen.core.config_schema.Gates)
            if key in ("enabled", "allow_empty"):
                fix = f"write {key}: true or {key}: false"
            elif key == "refresh_after":
                fix = "write refresh_after: 28d"
            elif key == "min_base_items":
                fix = "write min_base_items: 50 (a whole number of items)"
            else:
                fix = f"write {key}: 0.2 (a share: 0.2 is 20%)"
            if gate_problem(key, value):
                self.problem(d.line_of("gates"), f"gates.{key}", f"bad {key}: {type_label(value)}", fix)

    # -- predicates ------------------------------------------------------------------------

    def _resolve(self, node: Node, schema: T.StructType, path: str, suffix: str = "field") -> T.DataType | None:
        try:
            return resolve(schema, path).dtype
        except FieldNotFound as err:
            self.node_problem(node, suffix, err.problem, _field_fix(err))
            return None

    def _check_leaf(self, leaf: Leaf, schema: T.StructType, value_type: T.DataType | None = None,
                    label: str | None = None) -> None:
        """A leaf on a field of ``schema``, or (``value_type``) on an aggregate value named ``label``."""
        if value_type is None:
            if leaf.field is None:
                return  # a History test: checked by _check_history
            dtype = self._resolve(leaf, schema, leaf.field)
            if dtype is None:
                return
            label = leaf.field
        else:
            dtype = value_type
        kind = kind_of(dtype)
        allowed = OPS_BY_KIND.get(kind, ())
        if leaf.op not in allowed:
            self.node_problem(leaf, leaf.op, f"operator {leaf.op!r} is not valid for {label!r} ({describe(dtype)})",
                              _op_fix(kind, dtype, label, allowed))
            return
        if leaf.ignore_case and not (kind == "string" or (kind == "list" and kind_of(dtype.elementType) == "string")):
            self.node_problem(leaf, "ignore_case", f"ignore_case applies to text, and {label!r} is {describe(dtype)}",
                              "remove ignore_case")
        if isinstance(leaf, (Compare, Contains)):
            self._check_value(leaf, leaf.op, leaf.value, dtype, label)
        elif isinstance(leaf, Between):
            low = self._check_value(leaf, "between", leaf.low, dtype, label)
            high = self._check_value(leaf, "between", leaf.high, dtype, label)
            if low is not None and high is not None and low > high:
                self.node_problem(leaf, "between", f"between [{leaf.low}, {leaf.high}] is empty: low > high",
                                  f"write between: [{leaf.high}, {leaf.low}]")
        elif isinstance(leaf, In):
            for v in leaf.values:
                self._check_value(leaf, leaf.op, v, dtype, label)
        elif isinstance(leaf, StringMatch):
            self._check_value(leaf, leaf.op, leaf.value, dtype, label)
        elif isinstance(leaf, Regex):
            self._check_regex(leaf)
        elif isinstance(leaf, (IsNull, TimeWindow)):
            pass

    def _check_regex(self, leaf: Regex) -> None:
        shown = leaf.pattern if len(leaf.pattern) <= 80 else f"{leaf.pattern[:60]}…"
        try:
            check_pattern(leaf.pattern, leaf.ignore_case)
        except RegexRejected as err:
            # Python checks the pattern, Spark's Java engine runs it on every row: only what both
            # read alike, within the limits, and nothing that can backtrack for minutes
            why = {"syntax": "is not supported (patterns run on Spark's Java engine)",
                   "limit": "is not accepted (patterns run on every row)",
                   "backtracking": "could take minutes on one row (patterns run on every row)"}[err.kind]
            self.node_problem(leaf, "matches", f"regex {shown!r}: {err.construct} at position {err.position} {why}",
                              err.fix)
        except re.error as err:
            self.node_problem(leaf, "matches", f"bad regex {shown!r}: {err}",
                              "fix the pattern (escape special characters like . ( [ with a backslash)")

    def _check_value(self, leaf: Leaf, op: str, value: Any, dtype: T.DataType, label: str) -> Any:
        target = dtype.elementType if kind_of(dtype) == "list" else dtype
        try:
            return coerce(value, target)
        except ValueError as err:
            fix = f"write {err}"
            if kind_of(target) == "string" and isinstance(value, bool):
                fix = f"quote it: \"{'yes' if value else 'no'}\" (YAML reads yes/no/on/off as true/false)"
            elif kind_of(target) == "string" and value is not None:
                fix = f"quote it: \"{value}\""
            self.node_problem(leaf, op, f"wrong value type: {label!r} is {describe(target)}, got {type_label(value)}", fix)
            return None

    def _check_history(self, node: History) -> None:
        dtype = self._resolve(node, self.schema, node.name, "history")
        if dtype is None:
            return
        if kind_of(dtype) != "history":
            arrays = [p for p in leaf_paths(self.schema) if kind_of(resolve(self.schema, p).dtype) == "history"]
            self.node_problem(node, "history", f"{node.name!r} is {describe(dtype)}, not a history",
                              f"history works on {', '.join(arrays)}; use a field clause for {node.name!r}")
            return
        element: T.StructType = dtype.elementType
        if node.within_last is not None:
            ts = next((f for f in element.fields if f.name == "ts"), None)
            if ts is None or kind_of(ts.dataType) != "timestamp":
                self.node_problem(node, "within_last", f"{node.name!r} elements have no ts timestamp",
                                  "filter on one of their timestamps in where: {field: ..., within_last: 30d}")
        if node.where is not None:
            for inner in node.where.walk():
                if isinstance(inner, Leaf):
                    self._check_leaf(inner, element)
        value_type: T.DataType | None
        if node.agg == "count":
            value_type = T.LongType()
        elif node.agg == "exists":
            value_type = T.BooleanType()
        else:
            value_type = self._resolve(node, element, node.agg_field, f"{node.agg}.field")
            if value_type is None:
                return
            kind = kind_of(value_type)
            wanted = ("number",) if node.agg == "sum" else ("number", "timestamp", "string")
            if kind not in wanted:
                self.node_problem(node, f"{node.agg}.field",
                                  f"{node.agg} of {node.agg_field!r} ({describe(value_type)}) is not possible",
                                  f"{node.agg} works on {' or '.join(wanted)} fields")
                return
        self._check_leaf(node.test, element, value_type, f"{node.name} {node.agg}")


def _field_fix(err: FieldNotFound) -> str:
    if err.suggestions:
        return f"did you mean {err.suggestions[0]!r}?"
    return "check the field name against the aggregate schema (aggregator/schemas.py)"


def _op_fix(kind: str, dtype: T.DataType, label: str, allowed: tuple[str, ...]) -> str:
    if kind == "struct":
        inner = ", ".join(f"{label}.{f.name}" for f in dtype.fields[:4])
        return f"use one of its fields: {inner}"
    if kind == "history":
        return f"use a history clause: {{history: {label}, count: {{gte: 1}}}}"
    if kind == "list":
        return "use contains: VALUE to test membership"
    if kind == "map":
        return f"address a key: field: {label}.KEY"
    return f"use one of: {', '.join(allowed)}"


def _segment_references(definitions: list[Definition], by_id: Mapping[str, Definition]) -> list[Problem]:
    """Unknown targets, wrong entities and cycles of ``in_segment``."""
    problems: list[Problem] = []
    edges: dict[str, list[str]] = {}
    for d in definitions:
        for node in d.where.walk():
            if not isinstance(node, InSegment):
                continue
            loc = node.loc
            line, path = (loc.line, loc.path) if loc else (d.line, "where")
            target = by_id.get(node.segment_id)
            if target is None or target.kind != "segment":
                segment_ids = [x.id for x in definitions if x.kind == "segment"]
                what = "a feed, not a segment" if target is not None else "unknown segment"
                problems.append(Problem(d.file, line, d.label, f"{path}.in_segment", f"{what} {node.segment_id!r}",
                                        did_you_mean(node.segment_id, segment_ids) if segment_ids else "define the segment first"))
            elif target.entity != d.entity:
                problems.append(Problem(d.file, line, d.label, f"{path}.in_segment",
                                        f"segment {node.segment_id!r} is of {target.entity}s, not {d.entity}s",
                                        "refer to a segment of the same entity"))
            else:
                edges.setdefault(d.id, []).append(node.segment_id)
    reported: set[frozenset[str]] = set()
    for start in edges:
        cycle = _find_cycle(start, edges)
        if cycle and frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            d = by_id[cycle[0]]
            problems.append(Problem(d.file, d.line, d.label, "where", "in_segment cycle: " + " → ".join([*cycle, cycle[0]]),
                                    "remove one of these in_segment references"))
    return problems


def _find_cycle(start: str, edges: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle through ``start`` as a list of ids, or None."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, []):
            if nxt == start:
                return path
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None
