"""User templates: a folder per template under ``generate.templates_dir``.

``<templates_dir>/<name>/`` holds ``header.<fmt>.j2``, ``item.<fmt>.j2`` and
``footer.<fmt>.j2`` (``fmt`` is ``xml``, ``csv`` or ``tsv``, found from the item file) and
optionally a file ``entity`` holding ``offer`` (the default) or ``customer``. They run in
Jinja's immutable sandbox with bounds (generator/sandbox.py). ``template_problems`` finds,
before any output is written, what would break them: a missing file, a syntax error, an
attribute the sandbox refuses, an include/import/extends of a file that is not in the
template's folder, an unknown filter, test, function or name; each with its file and line.
Validation then renders the header and footer once, and the item once on ``sample_item``
(generator/validate.py), under the same bounds as a run.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_FUNCTION_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    UNSAFE_METHOD_ATTRIBUTES,
)

from feedgen.generator.sandbox import BoundedSandbox, failure_site, user_environment

__all__ = ["FORMATS", "TemplateProblem", "UserTemplate", "find_user_template", "sample_item",
           "template_problems", "user_template_names"]

FORMATS = ("xml", "csv", "tsv")
PARTS = ("header", "item", "footer")
# what each file sees besides the globals (range, dict, namespace, cycler, joiner)
NAMES = {
    "item": ("item", "row", "reject", "warn", "options"),
    "header": ("definition_id", "title", "link", "description", "run_id", "as_of", "options", "columns", "row"),
}
NAMES["footer"] = NAMES["header"]
NAME = re.compile(r"[A-Za-z0-9_\-]+")
_UNSAFE = (UNSAFE_FUNCTION_ATTRIBUTES | UNSAFE_METHOD_ATTRIBUTES | UNSAFE_GENERATOR_ATTRIBUTES
           | UNSAFE_COROUTINE_ATTRIBUTES | UNSAFE_ASYNC_GENERATOR_ATTRIBUTES | {"mro"})
# methods the immutable sandbox refuses to call (they change a list, dict or set)
_MUTATING = frozenset({"append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse",
                       "update", "setdefault", "popitem", "add", "discard", "difference_update",
                       "symmetric_difference_update", "intersection_update", "appendleft",
                       "extendleft", "popleft", "rotate"})


@dataclass(frozen=True)
class UserTemplate:
    name: str
    folder: Path
    fmt: str
    entity: str

    def file(self, part: str) -> Path:
        return self.folder / f"{part}.{self.fmt}.j2"


class TemplateProblem(ValueError):
    """What is wrong with a user template: the file, the line, the message and the fix."""

    def __init__(self, file: Path | str, line: int, message: str, fix: str) -> None:
        super().__init__(f"{file}:{line}: {message}; {fix}")
        self.file = str(file)
        self.line = line
        self.message = message
        self.fix = fix


def user_template_names(templates_dir: str | Path | None) -> list[str]:
    """The template folders under ``templates_dir`` (sorted; none when it is unset or missing)."""
    if not templates_dir or not Path(templates_dir).is_dir():
        return []
    return sorted(p.name for p in Path(templates_dir).iterdir() if p.is_dir() and NAME.fullmatch(p.name))


def find_user_template(name: str, templates_dir: str | Path) -> UserTemplate:
    """The user template ``name``; TemplateProblem when its folder has no item file or a bad entity."""
    base = Path(templates_dir) / name
    if not NAME.fullmatch(name) or not base.is_dir():
        raise TemplateProblem(base, 0, f"no template folder {name!r}",
                              f"create {base}/item.xml.j2 (or .csv.j2, .tsv.j2) with header and footer")
    fmts = [fmt for fmt in FORMATS if (base / f"item.{fmt}.j2").is_file()]
    if not fmts:
        raise TemplateProblem(base, 0, f"template {name!r} has no item.xml.j2, item.csv.j2 or item.tsv.j2",
                              "add the item file: it renders one entity as one XML element or CSV/TSV line")
    if len(fmts) > 1:
        raise TemplateProblem(base, 0, f"template {name!r} has item files for {' and '.join(fmts)}",
                              "keep one format per template folder")
    entity = "offer"
    marker = base / "entity"
    if marker.is_file():
        entity = marker.read_text(encoding="utf-8").strip()
        if entity not in ("offer", "customer"):
            raise TemplateProblem(marker, 1, f"entity {entity!r}", "write offer or customer")
    return UserTemplate(name, base, fmts[0], entity)


def template_problems(template: UserTemplate) -> list[TemplateProblem]:
    """Every file of ``template`` (and every file they include) that is missing, does not parse,
    refers to a file outside its folder, uses an unknown filter, test, function or name, or
    uses what the sandbox refuses."""
    env = user_environment(str(template.folder), template.fmt)
    problems: list[TemplateProblem] = []
    todo: list[tuple[Path, tuple[str, ...] | None]] = []
    for part in PARTS:
        path = template.file(part)
        if not path.is_file():
            problems.append(TemplateProblem(path, 0, f"template {template.name!r} has no {path.name}",
                                            f"a template folder holds {', '.join(f'{p}.{template.fmt}.j2' for p in PARTS)}"
                                            " (an empty file is fine)"))
        else:
            todo.append((path, NAMES[part]))
    seen: set[Path] = set()
    while todo:
        path, names = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        found, more = _file_problems(env, template.folder, path, names)
        problems.extend(found)
        todo.extend((p, None) for p in more)  # an included file sees its includer's names: not checked
    return problems


def _file_problems(env: BoundedSandbox, folder: Path, path: Path,
                   names: tuple[str, ...] | None) -> tuple[list[TemplateProblem], list[Path]]:
    """The problems of one template file, and the files it includes, imports or extends."""
    source = path.read_text(encoding="utf-8")
    name = path.relative_to(folder).as_posix()
    try:
        tree = env.parse(source, name=name, filename=str(path))
    except jinja2.TemplateSyntaxError as err:
        return [TemplateProblem(path, err.lineno or 0, f"Jinja syntax error: {err.message}",
                                "fix the template syntax at that line")], []
    problems = _unsafe(tree, path)
    refs, more = _references(tree, path, folder)
    problems += refs + _unknown_filters(tree, path, env)
    if names is not None and not problems:
        problems += _unknown_names(tree, path, env, names)
    if not problems:
        try:
            env.compile(source, name=name, filename=str(path))
        except jinja2.TemplateSyntaxError as err:
            problems.append(TemplateProblem(path, err.lineno or 0, f"Jinja error: {err.message}",
                                            "fix the template at that line"))
    return problems, more


_REF_KINDS = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from-import",
              nodes.Extends: "extends"}


def _ref_names(expr: nodes.Expr) -> list[str] | None:
    """The file names an include/import/extends names, or None when it computes them."""
    if isinstance(expr, nodes.Const):
        value = expr.value
        values = list(value) if isinstance(value, list | tuple) else [value]
    elif isinstance(expr, nodes.List | nodes.Tuple) and all(isinstance(i, nodes.Const) for i in expr.items):
        values = [i.value for i in expr.items]
    else:
        return None
    return values if values and all(isinstance(v, str) for v in values) else None


def _references(tree: nodes.Template, path: Path, folder: Path) -> tuple[list[TemplateProblem], list[Path]]:
    """Includes, imports and extends must name files that exist in the template's folder."""
    problems: list[TemplateProblem] = []
    files: list[Path] = []
    root = folder.resolve()
    for node in tree.find_all(tuple(_REF_KINDS)):
        kind = _REF_KINDS[type(node)]
        names = _ref_names(node.template)
        if names is None:
            problems.append(TemplateProblem(path, node.lineno, f"{kind} of a computed file name: validate "
                                            "cannot check it", f'name the file in quotes, e.g. {{% {kind.split("-")[0]} '
                                            f'"part.{path.name.split(".")[-2]}.j2" %}}'))
            continue
        existing = []
        for name in names:
            target = (folder / name).resolve()
            if name.startswith("/") or "\\" in name or ".." in name.split("/") or not target.is_relative_to(root):
                problems.append(TemplateProblem(path, node.lineno, f"{kind} {name!r} is outside the template "
                                                f"folder {folder}", "templates may only use files of their own "
                                                "folder: copy the file there and name it relative to the folder"))
            elif target.is_file():
                existing.append(target)
        if existing:
            files.append(existing[0])
        elif not problems and not getattr(node, "ignore_missing", False):
            problems.append(TemplateProblem(path, node.lineno, f"{kind} of {' or '.join(map(repr, names))}: no such "
                                            f"file in {folder}", "create the file in the template folder, or fix "
                                            "its name"))
    return problems, files


def _unknown_filters(tree: nodes.Template, path: Path, env: BoundedSandbox) -> list[TemplateProblem]:
    found = []
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        kind, known = ("filter", env.filters) if isinstance(node, nodes.Filter) else ("test", env.tests)
        if node.name not in known:
            found.append(TemplateProblem(path, node.lineno, f"unknown {kind} {node.name!r}",
                                         _did_you_mean(node.name, known) or f"see Jinja's list of built-in {kind}s"))
    return found


def _unknown_names(tree: nodes.Template, path: Path, env: BoundedSandbox,
                   names: tuple[str, ...]) -> list[TemplateProblem]:
    """Names the file neither defines nor gets (an undefined name renders empty, a call of one fails)."""
    try:
        undeclared = meta.find_undeclared_variables(tree)
    except jinja2.TemplateSyntaxError:
        return []  # the compile step reports it
    known = {*names, *env.globals}
    guarded = {n.node.name for n in tree.find_all(nodes.Test)
               if n.name in ("defined", "undefined") and isinstance(n.node, nodes.Name)}
    called = {n.node.name for n in tree.find_all(nodes.Call) if isinstance(n.node, nodes.Name)}
    found = []
    for name in sorted(undeclared - known - guarded):
        line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == name), 0)
        what = "function" if name in called else "name"
        sees = f"{path.name} sees {', '.join(names)} and {', '.join(sorted(env.globals))}"
        hint = _did_you_mean(name, sorted(known))
        found.append(TemplateProblem(path, line, f"unknown {what} {name!r}", f"{hint}; {sees}" if hint else sees))
    return found


def _did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def _unsafe(tree: nodes.Template, path: Path) -> list[TemplateProblem]:
    """Attribute access the sandbox refuses at render time, found in the syntax tree."""
    found: list[TemplateProblem] = []
    fix = "templates see item fields and the names row, reject, warn, options; remove that access"

    def refused(name: object) -> bool:
        return isinstance(name, str) and (name.startswith("_") or name in _UNSAFE)

    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Call)):
        name = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args \
                and isinstance(node.args[0], nodes.Const):
            name = node.args[0].value
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) \
                and node.node.attr in _MUTATING:
            found.append(TemplateProblem(path, node.lineno, f"call of .{node.node.attr}(): the sandbox does "
                                         "not let templates change values", "build a new value instead "
                                         "(e.g. a + [x] or a list in row([...]))"))
            continue
        if refused(name):
            found.append(TemplateProblem(path, node.lineno, f"unsafe attribute {name!r}: the sandbox refuses "
                                         "it", fix))
    return found


def render_trouble(err: BaseException, template: UserTemplate) -> TemplateProblem:
    """A TemplateProblem for an error raised while rendering ``template``'s header or footer."""
    file, line = failure_site(err, str(template.folder))
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    return TemplateProblem(file, line, f"fails to render: {type(err).__name__}: {message}",
                           "the header and footer see definition_id, title, link, description, run_id, "
                           "as_of, options, columns and row")


# -- the sample item a validation renders ----------------------------------------------------

_SAMPLE_TEXT = {
    "link": "https://shop.example.com/p/1", "image_link": "https://shop.example.com/p/1.jpg",
    "currency": "PLN", "country": "PL", "email": "jane.doe@example.com", "phone": "+48600100200",
    "availability": "in_stock", "condition": "new", "gtin": "5901234123457", "zip": "00-001",
    "status": "active", "type": "view", "path": "Electronics > Phones", "category_path": "Electronics > Phones",
}


def sample_item(entity: str) -> dict[str, Any]:
    """An aggregate row of ``entity`` with every field present and a plausible value."""
    from feedgen.aggregator.schemas import AGGREGATE_SCHEMAS  # lazy: pyspark, only when asked

    return _sample(AGGREGATE_SCHEMAS[entity], "")


def _sample(dtype: Any, name: str) -> Any:
    from pyspark.sql import types as T

    if isinstance(dtype, T.StructType):
        return {f.name: _sample(f.dataType, f.name) for f in dtype.fields}
    if isinstance(dtype, T.ArrayType):
        return [_sample(dtype.elementType, name)]
    if isinstance(dtype, T.MapType):
        return {"color": "red"} if isinstance(dtype.valueType, T.StringType) else {"key": _sample(dtype.valueType, name)}
    if isinstance(dtype, T.StringType):
        return _SAMPLE_TEXT.get(name) or (f"{name.removesuffix('_id')}-1" if name.endswith("_id")
                                          else f"Sample {name.replace('_', ' ')}")
    if isinstance(dtype, T.BooleanType):
        return True
    if isinstance(dtype, T.IntegralType):
        return 3
    if isinstance(dtype, T.DecimalType):
        return Decimal("19.99")
    if isinstance(dtype, T.FractionalType):
        return 4.5
    if isinstance(dtype, T.TimestampType):
        return dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
    if isinstance(dtype, T.DateType):
        return dt.date(2026, 1, 15)
    return None
