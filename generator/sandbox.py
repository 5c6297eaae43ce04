"""The environment user templates run in: Jinja's immutable sandbox, with bounds.

The sandbox keeps a template from reaching Python internals; the bounds keep it from
taking the machine. Per render (one item, or a header, or a footer):

- ``MAX_TEXT`` (1,000,000) characters: no value a template builds (``*``, ``**``, ``+``,
  ``%``, ``~``, a filter, a string method, a ``namespace`` attribute) may be larger, and
  all the text one render writes (macro, ``set`` and ``call`` blocks included) may not
  add up to more;
- ``MAX_STEPS`` (100,000) loop iterations, ``range()`` elements counted in;
- ``MAX_SECONDS`` (1 s) of wall-clock time;
- Python's recursion limit (a recursive macro).

Sizes are checked *before* the value is built where the size can be known ahead (a
repeat, a power, a padding width, a replace, a join, a format width), so a hostile
template never allocates the value it asks for. Over a bound, ``TemplateLimit`` names
the bound; the renderer excludes the item with reason ``template_limit``.

Time is checked at every loop step, output write and call; on the main thread (the
Spark Python worker, ``feedgen validate``) a ``SIGALRM`` timer also interrupts a render
stuck in one long Python-level operation. Elsewhere (the driver's header/footer thread)
the step, size and output bounds and the checks at each step remain.
"""

from __future__ import annotations

import functools
import re
import signal
import string
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.runtime import ChainableUndefined, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace
from markupsafe import Markup

__all__ = ["MAX_SECONDS", "MAX_STEPS", "MAX_TEXT", "BoundedSandbox", "TemplateLimit", "failure_site",
           "render_bounds", "render_template", "user_environment"]

MAX_TEXT = 1_000_000
MAX_STEPS = 100_000
MAX_SECONDS = 1.0
MAX_INT_BITS = 8 * MAX_TEXT


class TemplateLimit(Exception):
    """A user template went over one of the bounds; ``bound`` is ``size``, ``loop``, ``time``,
    ``recursion`` or ``memory``."""

    def __init__(self, bound: str, message: str) -> None:
        super().__init__(message)
        self.bound = bound
        self.message = message


# -- the budget of one render -----------------------------------------------------------------

class _Budget:
    __slots__ = ("steps", "text", "deadline")

    def __init__(self, seconds: float) -> None:
        self.steps = MAX_STEPS
        self.text = MAX_TEXT
        self.deadline = time.monotonic() + seconds


_local = threading.local()


def _budget() -> _Budget | None:
    return getattr(_local, "budget", None)


def _over_time(budget: _Budget) -> None:
    if time.monotonic() > budget.deadline:
        raise TemplateLimit("time", f"the render took longer than {MAX_SECONDS:g} s")


def _charge_steps(n: int) -> None:
    budget = _budget()
    if budget is None:
        return
    budget.steps -= n
    if budget.steps < 0:
        raise TemplateLimit("loop", f"more than {MAX_STEPS:,} loop iterations and range() elements")
    _over_time(budget)


def _charge_text(n: int) -> None:
    budget = _budget()
    if budget is None:
        return
    budget.text -= n
    if budget.text < 0:
        raise TemplateLimit("size", f"the render wrote more than {MAX_TEXT:,} characters")
    _over_time(budget)


_previous_alarm: Any = None


def _on_alarm(signum, frame) -> None:
    if _budget() is not None:
        raise TemplateLimit("time", f"the render took longer than {MAX_SECONDS:g} s")
    if callable(_previous_alarm):  # not ours (pytest-timeout): pass it on
        _previous_alarm(signum, frame)


def _arm(seconds: float) -> tuple[float, float]:
    global _previous_alarm
    # installed once and kept (5 us a call): outside a render it hands the signal on
    if signal.getsignal(signal.SIGALRM) is not _on_alarm:
        _previous_alarm = signal.signal(signal.SIGALRM, _on_alarm)
    return signal.setitimer(signal.ITIMER_REAL, seconds)


@contextmanager
def render_bounds(seconds: float = MAX_SECONDS) -> Iterator[None]:
    """The budget of one render (steps, text, time), with a SIGALRM timer on the main thread."""
    previous = _budget()
    _local.budget = _Budget(seconds)
    timer = threading.current_thread() is threading.main_thread()
    if timer:
        start = time.monotonic()
        old_delay, old_interval = _arm(seconds)
    try:
        yield
    finally:
        if timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            if old_delay > 0:  # somebody else's timer: give it back what is left
                left = max(old_delay - (time.monotonic() - start), 1e-3)
                signal.setitimer(signal.ITIMER_REAL, left, old_interval)
        _local.budget = previous


def render_template(template: jinja2.Template, variables: Mapping[str, Any]) -> str:
    """``template.render(variables)`` with every chunk counted against the render's text budget.

    Errors propagate as they are (no traceback rewriting: ``failure_site`` finds the line).
    """
    budget = _budget() or _Budget(MAX_SECONDS)
    out = []
    for chunk in template.root_render_func(template.new_context(dict(variables))):
        budget.text -= len(chunk)  # inline: this loop runs for every piece of every item
        if budget.text < 0:
            raise TemplateLimit("size", f"the render wrote more than {MAX_TEXT:,} characters")
        out.append(chunk)
    return "".join(out)


def failure_site(err: BaseException, default: str = "") -> tuple[str, int]:
    """The template file and line an error was raised at (the innermost template frame)."""
    if isinstance(err, jinja2.TemplateSyntaxError) and err.filename:
        return err.filename, err.lineno or 0
    file, line = default, 0
    tb = err.__traceback__
    while tb is not None:
        frame_globals = tb.tb_frame.f_globals
        template = frame_globals.get("__jinja_template__")
        if template is not None:
            file = template.filename or template.name or file
            line = template.get_corresponding_lineno(tb.tb_lineno)
        elif "__jinja_exception__" in frame_globals:  # a frame Jinja rewrote: its line is the template's
            file, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
        tb = tb.tb_next
    return file, line


# -- sizes ------------------------------------------------------------------------------------

_CONTAINERS = (list, tuple, dict, set, frozenset)


def _size(value: Any, limit: int = MAX_TEXT) -> int:
    """Characters, elements and nested sizes of ``value``, counted until past ``limit``."""
    kind = type(value)
    if kind is str or kind is Markup or isinstance(value, str | bytes):
        return len(value)
    if kind is int:
        return value.bit_length() // 8
    if not isinstance(value, _CONTAINERS):
        return 0
    total = len(value)
    stack = [iter(value.items() if isinstance(value, dict) else value)]
    while stack and total <= limit:
        child = next(stack[-1], _END)
        if child is _END:
            stack.pop()
        elif isinstance(child, str | bytes):
            total += len(child)
        elif isinstance(child, _CONTAINERS):
            total += len(child)
            stack.append(iter(child.items() if isinstance(child, dict) else child))
    return total


_END = object()
_PLAIN = frozenset({bool, float, type(None), Undefined, ChainableUndefined})


def _need(size: int, what: str) -> None:
    if size > MAX_TEXT:
        raise TemplateLimit("size", f"{what} would make a value of {size:,} characters or elements "
                                    f"(the limit is {MAX_TEXT:,})")


def _checked(value: Any, what: str) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is str or kind is Markup:
        if len(value) > MAX_TEXT:
            _need(len(value), what)
        return value
    if kind is int:
        if value.bit_length() > MAX_INT_BITS:
            raise TemplateLimit("size", f"{what} made a number of more than {MAX_INT_BITS:,} bits")
        return value
    _need(_size(value), what)
    return value


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# printf-style conversions (``"%5d" % x``, the format filter) and str.format fields
_PRINTF = re.compile(r"%(?:\([^)]*\))?([^a-zA-Z%]*)")
_DIGITS = re.compile(r"\d+")


def _check_printf(fmt: str) -> None:
    for flags in _PRINTF.findall(fmt):
        if "*" in flags:
            raise TemplateLimit("size", "a '*' width or precision in a % format (write the number)")
        for digits in _DIGITS.findall(flags):
            _need(int(digits) if len(digits) < 12 else MAX_TEXT + 1, "a % format width")


def _check_format(fmt: str) -> None:
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if not spec:
            continue
        if "{" in spec:
            raise TemplateLimit("size", "a nested {} in a format spec (write the width)")
        for digits in _DIGITS.findall(spec):
            _need(int(digits) if len(digits) < 12 else MAX_TEXT + 1, "a format width")


def _replaced(s: Any, old: Any, new: Any, count: Any = -1) -> int:
    s, old, new = str(s), str(old), str(new)
    hits = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * max(0, len(new) - len(old))


def _joined(items: list, sep: Any) -> int:
    return sum(_size(x) if isinstance(x, str) else _size(str(x)) for x in items) + len(str(sep)) * len(items)


# -- filters: checked before (what they will build) and after (what they built) ----------------

def _pre_center(value, width=80, *_a, **_k):
    _need(len(str(value)) + _int(width), "center")


def _pre_indent(value, width=4, *_a, **_k):
    per_line = len(width) if isinstance(width, str) else _int(width)
    _need(len(str(value)) + (str(value).count("\n") + 1) * per_line, "indent")


def _pre_replace(value, old, new, count=None, *_a, **_k):
    _need(_replaced(value, old, new, -1 if count is None else count), "replace")


def _pre_format(value, *_a, **_k):
    _check_printf(str(value))


def _pre_batch(value, linecount, *_a, **_k):
    _need(_int(linecount), "batch")


def _pre_slice(value, slices, *_a, **_k):
    _need(_int(slices), "slice")


def _pre_wordwrap(value, width=79, break_long_words=True, wrapstring=None, *_a, **kw):
    wrap = kw.get("wrapstring", wrapstring)
    _need(len(str(value)) * (1 + len(str(wrap or "\n"))), "wordwrap")


def _pre_tojson(value, indent=None, *_a, **kw):
    if _int(kw.get("indent", indent)) > 16:
        raise TemplateLimit("size", "tojson indent over 16")


_PRE = {"center": _pre_center, "indent": _pre_indent, "replace": _pre_replace, "format": _pre_format,
        "batch": _pre_batch, "slice": _pre_slice, "wordwrap": _pre_wordwrap, "tojson": _pre_tojson}
# filters that turn their value into text: the value itself must be within the bound
_TEXT_FILTERS = frozenset({"string", "tojson", "pprint", "e", "escape", "forceescape", "safe", "striptags",
                           "title", "upper", "lower", "capitalize", "trim", "wordwrap", "truncate", "center",
                           "indent", "replace", "urlize", "urlencode", "xmlattr", "format", "wordcount"})


def _bounded_filter(name: str, func):
    pre = _PRE.get(name)
    passes = getattr(func, "jinja_pass_arg", None) is not None
    text = name in _TEXT_FILTERS

    @functools.wraps(func)  # keeps jinja_pass_arg
    def run(*args, **kwargs):
        own = args[1:] if passes else args
        if own and text:
            _need(_size(own[0]), f"filter {name!r} on a value")
        if pre is not None and own:
            pre(*own, **kwargs)
        if name == "join" and own:
            items = list(own[0])
            _charge_steps(len(items))
            _need(_joined(items, own[1] if len(own) > 1 else kwargs.get("d", "")), "join")
            args = (*args[: len(args) - len(own)], items, *own[1:])
        result = func(*args, **kwargs)
        if isinstance(result, Iterator):
            return _steps(result)
        return _checked(result, f"filter {name!r}")

    return run


def _steps(iterable: Iterable) -> Iterator:
    for value in iterable:
        _charge_steps(1)
        yield value


# -- string methods called from a template ----------------------------------------------------

def _pre_method(obj: Any, args: tuple, kwargs: dict) -> tuple:
    """Check a call of a str method that can grow its string; return the (maybe listed) args."""
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str):
        return args
    name = getattr(obj, "__name__", "")
    if name in ("ljust", "rjust", "center", "zfill") and args:
        _need(max(len(owner), _int(args[0])), f"str.{name}")
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        _need(len(owner) + owner.count("\t") * _int(tab), "str.expandtabs")
    elif name == "replace" and len(args) >= 2:
        _need(_replaced(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1)),
              "str.replace")
    elif name == "join" and args:
        items = list(args[0])
        _charge_steps(len(items))
        _need(_joined(items, owner), "str.join")
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        _need(len(owner) * max(1, longest), "str.translate")
    return args


# -- the environment --------------------------------------------------------------------------

def _counted(node: nodes.Expr) -> bool:
    return (isinstance(node, nodes.Call) and isinstance(node.node, nodes.EnvironmentAttribute)
            and node.node.name == "feedgen_steps")


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator with every loop, ``~`` and output buffer going through the bounds."""

    def visit_For(self, node: nodes.For, frame) -> None:
        if not _counted(node.iter):  # Jinja allows no custom node types: a call of the environment
            node.iter = nodes.Call(nodes.EnvironmentAttribute("feedgen_steps"), [node.iter], [], None, None,
                                   lineno=node.iter.lineno)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame) -> None:
        self.write("environment.feedgen_checked(")
        super().visit_Concat(node, frame)
        self.write(", \"'~'\")")

    def buffer(self, frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.feedgen_buffer()")


class _TextBuffer(list):
    """The output buffer of a macro, ``set`` or ``call`` block: every write is counted."""

    __slots__ = ()

    def append(self, text: str) -> None:
        _charge_text(len(text))
        list.append(self, text)

    def extend(self, texts: Iterable[str]) -> None:
        texts = tuple(texts)
        _charge_text(sum(len(t) for t in texts))
        list.extend(self, texts)


class _Namespace(Namespace):
    """``namespace()`` whose attributes are bounded like every other value."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 (Jinja's own signature)
        Namespace.__init__(*args, **kwargs)
        for value in kwargs.values():
            _checked(value, "a namespace attribute")

    def __setitem__(self, name: str, value: Any) -> None:
        Namespace.__setitem__(self, name, _checked(value, f"namespace attribute {name!r}"))


def _range(*args: int) -> range:
    values = range(*args)
    try:
        n = len(values)
    except OverflowError:
        n = MAX_STEPS + 1
    if n > MAX_STEPS:
        raise TemplateLimit("loop", f"range() of {n:,} elements (the limit is {MAX_STEPS:,} per item)")
    _charge_steps(n)
    return values


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with the bounds of this module (see the module docstring)."""

    code_generator_class = _BoundedCodeGenerator
    # intercepted operators are also never constant-folded at compile time
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.globals.pop("lipsum", None)  # lipsum(n) writes n paragraphs: nothing a feed needs
        self.globals.update(range=_range, namespace=_Namespace)
        inner = self.finalize

        def finalize(value: Any) -> Any:
            return _checked(value if inner is None else inner(value), "an output value")

        self.finalize = finalize

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            seq, times = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(times, int) and not isinstance(seq, int) and times > 0:
                _need(_size(seq) * times, "'*'")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if right * max(1, left.bit_length() - 1) > MAX_INT_BITS:
                raise TemplateLimit("size", f"'**' would make a number of more than {MAX_INT_BITS:,} bits")
        elif operator == "%" and isinstance(left, str):
            _check_printf(left)
        return _checked(self.binop_table[operator](left, right), repr(operator))

    def call(__self, __context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        args = _pre_method(__obj, args, kwargs)
        return _checked(super().call(__context, __obj, *args, **kwargs), "a call")

    def wrap_str_format(self, value: Any):
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt = value.__self__

        @functools.wraps(wrapper)
        def bounded(*args: Any, **kwargs: Any) -> str:
            _check_format(fmt)
            return _checked(wrapper(*args, **kwargs), "str.format")

        return bounded

    # called by the generated code (see _BoundedCodeGenerator)
    def feedgen_steps(self, iterable: Iterable) -> Iterator:
        return _steps(iterable)

    def feedgen_checked(self, value: Any, what: str) -> Any:
        return _checked(value, what)

    def feedgen_buffer(self) -> _TextBuffer:
        return _TextBuffer()


class _FolderLoader(jinja2.FileSystemLoader):
    """A file loader that refuses files outside its folder (a symlink pointing out included)."""

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        inside = any(Path(filename).resolve().is_relative_to(Path(root).resolve()) for root in self.searchpath)
        if not inside:
            raise jinja2.TemplateNotFound(template)
        return source, filename, uptodate


# How every feedgen template is read, built-in or user: whitespace, escaping, no reloads.
TEMPLATE_OPTIONS = {"trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True,
                    "auto_reload": False}


def user_environment(folder: str, fmt: str, finalize=None) -> BoundedSandbox:
    """The environment of the user templates in ``folder`` (autoescaped for XML)."""
    return BoundedSandbox(loader=_FolderLoader(folder), autoescape=fmt == "xml",
                          undefined=jinja2.ChainableUndefined, finalize=finalize, **TEMPLATE_OPTIONS)
