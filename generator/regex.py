"""``matches:`` patterns: the syntax Python's ``re`` and Java's ``Pattern`` share, nothing else.

The validator checks a pattern with Python; Spark runs it on the JVM (``rlike``). The two
engines read many constructs differently or only one of them knows them, so a small
tokenizer accepts an allow-list of shared constructs (literals, ``.``, ``^``, ``$``, ``\\A``,
classes, ``\\d \\w \\s \\b`` and their negations, groups, lookarounds, backreferences
``\\1``-``\\9``, greedy and lazy quantifiers) and rejects the rest, naming the construct.

Where the shared constructs mean different things, ``java_pattern`` writes Python's
meaning out for Java: ``.`` is any character but ``\\n``, ``$`` is the end or before a final
``\\n``, ``\\d \\w \\s`` are Python's Unicode classes spelled as explicit ranges, ``\\b`` is a
lookaround over them. Nested unbounded quantifiers and overlapping alternatives under a
repeat (catastrophic backtracking: ``(a+)+``, ``(a|aa)+``) are rejected too.
"""

from __future__ import annotations

import functools
import re
import sys
import warnings
from dataclasses import dataclass, field

__all__ = ["MAX_NESTING", "MAX_PATTERN_LENGTH", "MAX_REPEAT", "RegexRejected", "check_pattern", "java_pattern"]

MAX_PATTERN_LENGTH = 1000
MAX_REPEAT = 1000        # largest n in {n} / {n,m}
MAX_NESTING = 32         # groups inside groups
_BRACES = re.compile(r"\{([0-9]*)(,?)([0-9]*)\}")

_PUNCT = frozenset("\\^$.|?*+()[]{}-/&~#!\"%',:;<=>@_`") | {" "}
_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "a": "\a"}
_CLASS_ESCAPES = "dDwWsS"
_FLAG_CHARS = frozenset("aiLmsux-")

# escapes one engine knows and the other does not (or reads differently): construct, fix
_FOREIGN_ESCAPES: dict[str, tuple[str, str]] = {
    "Z": ("\\Z (Python: end of text; Java: before a final line break)", "use $ (end, or before a final newline)"),
    "z": ("\\z (Java-only end of input)", "use $ (end, or before a final newline)"),
    "G": ("\\G (Java-only end of the previous match)", "anchor with ^ instead"),
    "h": ("\\h (Java-only horizontal whitespace)", "write [ \\t] or \\s"),
    "H": ("\\H (Java-only non-horizontal-whitespace)", "write [^ \\t] or \\S"),
    "v": ("\\v (Java: any vertical whitespace; Python: only \\x0B)", "write \\x0B, or [\\n\\r] for line breaks"),
    "V": ("\\V (Java-only non-vertical-whitespace)", "write [^\\n\\r]"),
    "R": ("\\R (Java-only line break)", "write (?:\\r\\n|\\n|\\r)"),
    "X": ("\\X (Java-only grapheme cluster)", "match the characters you expect"),
    "p": ("\\p{...} (Java-only Unicode property)", "list the characters in a class, or use \\w or \\d"),
    "P": ("\\P{...} (Java-only Unicode property)", "list the characters in a negated class, or use \\W or \\D"),
    "Q": ("\\Q...\\E (Java-only quoting)", "escape each special character with a backslash instead"),
    "E": ("\\E (Java-only end of quoting)", "escape each special character with a backslash instead"),
    "k": ("\\k<name> (Java-only named backreference)", "use a numbered group and \\1"),
    "K": ("\\K (keep-out, supported by neither)", "use a lookbehind (?<=...)"),
    "e": ("\\e (Java-only escape character)", "write \\x1B"),
    "c": ("\\cX (Java-only control character)", "write the character as \\xHH"),
    "0": ("\\0 (Python: NUL; Java: an octal escape)", "write \\x00"),
    "N": ("\\N{name} (named character)", "write the character as \\uXXXX"),
    "U": ("\\UXXXXXXXX (Python-only 8-digit escape)", "write the character itself or \\uXXXX"),
    "g": ("\\g<name> (Python-only group reference)", "use \\1"),
}


class RegexRejected(ValueError):
    """A pattern outside the shared syntax: ``construct`` found, ``fix`` says what to write.

    ``kind``: ``syntax`` (not read alike by both engines), ``limit`` (too long, too deep, a
    repeat count too large) or ``backtracking`` (could take exponential or cubic time).
    """

    def __init__(self, construct: str, fix: str, position: int, kind: str = "syntax") -> None:
        super().__init__(f"{construct} at position {position}")
        self.construct = construct
        self.fix = fix
        self.position = position
        self.kind = kind


# -- the syntax tree ---------------------------------------------------------------------


@dataclass
class _Chars:
    """One character out of a set; ``py`` matches exactly that set in Python (for overlap)."""

    java: str
    py: str


@dataclass
class _Assert:
    java: str
    body: _Alt | None = None     # lookarounds


@dataclass
class _Backref:
    number: int


@dataclass
class _Group:
    body: _Alt
    capturing: bool
    number: int = 0              # capturing groups: 1, 2, ... in the order they open
    position: int = 0
    end: int = 0


@dataclass
class _Repeat:
    item: object
    low: int
    high: int | None
    lazy: bool
    position: int
    end: int


@dataclass
class _Alt:
    branches: list[list] = field(default_factory=list)
    position: int = 0


# -- Python's classes as explicit ranges, for Java -----------------------------------------


def _ranges(codepoints: list[int]) -> str:
    out, start, prev = [], None, None
    for cp in codepoints:
        if start is None:
            start = prev = cp
        elif cp == prev + 1:
            prev = cp
        else:
            out.append((start, prev))
            start = prev = cp
    if start is not None:
        out.append((start, prev))
    return "".join(_jchar(a) if a == b else f"{_jchar(a)}-{_jchar(b)}" for a, b in out)


@functools.cache
def _word_ranges() -> str:
    # Python's \w for str: str.isalnum() or "_" (Unicode database of this Python)
    return _ranges([cp for cp in range(sys.maxunicode + 1)
                    if chr(cp).isalnum() or cp == 0x5F])


@functools.cache
def _space_ranges() -> str:
    return _ranges([cp for cp in range(0x3001) if chr(cp).isspace()])


def _jchar(cp: int) -> str:
    c = chr(cp)
    if c.isascii() and c.isalnum():
        return c
    if c.isascii() and c in _PUNCT:
        return "\\" + c
    return f"\\x{{{cp:X}}}"


@functools.cache
def _cased() -> str:
    return "".join(chr(cp) for cp in range(sys.maxunicode + 1)
                   if len({chr(cp), chr(cp).lower(), chr(cp).upper(), chr(cp).title()}) > 1)


@functools.lru_cache(maxsize=4096)
def _fold_extras(py: str) -> str:
    """Characters Python's re.IGNORECASE matches with ``py`` (one character or class) and
    Java's (?iu) does not see by itself (İ for [A-Z], ẞ for ß ...), for an explicit class."""
    plain = re.compile(py)
    folded = re.compile(py, re.IGNORECASE)
    return "".join(_jchar(ord(c)) for c in _cased() if not plain.fullmatch(c) and folded.fullmatch(c))


def _class_java(letter: str) -> str:
    """``\\d \\w \\s`` (and negations) as a Java class with Python's meaning."""
    if letter == "d":
        return "\\p{Nd}"
    if letter == "D":
        return "\\P{Nd}"
    inner = _word_ranges() if letter in "wW" else _space_ranges()
    return f"[{'^' if letter.isupper() else ''}{inner}]"


def _boundary_java(negated: bool) -> str:
    w = f"[{_word_ranges()}]"
    if not negated:
        return f"(?:(?<={w})(?!{w})|(?<!{w})(?={w}))"
    # Python (before 3.14) never matches \B in an empty text
    return f"(?:(?<={w})(?={w})|(?<!{w})(?!{w})(?:(?<=[\\s\\S])|(?=[\\s\\S])))"


# -- the tokenizer/parser ------------------------------------------------------------------


class _Parser:
    def __init__(self, pattern: str, ignore_case: bool) -> None:
        self.p = pattern
        self.i = 0
        self.ignore_case = ignore_case
        self.groups_closed = 0
        self.groups_open = 0

    def reject(self, construct: str, fix: str, at: int | None = None) -> RegexRejected:
        return RegexRejected(construct, fix, self.i if at is None else at)

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.p[j] if j < len(self.p) else ""

    def parse(self) -> _Alt:
        alt = self.alternation()
        if self.i < len(self.p):  # a stray ")": Python's compile rejects it first
            raise self.reject("unbalanced parenthesis ')'", "escape it: \\)")
        return alt

    def alternation(self) -> _Alt:
        alt = _Alt(position=self.i)
        alt.branches.append(self.sequence())
        while self.peek() == "|":
            self.i += 1
            alt.branches.append(self.sequence())
        return alt

    def sequence(self) -> list:
        items: list = []
        while self.i < len(self.p) and self.peek() not in "|)":
            start = self.i
            atom = self.atom()
            items.append(self.quantified(atom, start))
        return items

    def quantified(self, atom, start: int):
        c = self.peek()
        if c == "" or c not in "*+?{":
            return atom
        at = self.i
        if c == "{":
            low, high = self.braces()
        else:
            self.i += 1
            low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
        if isinstance(atom, _Assert):
            raise self.reject("a quantifier on an anchor or lookaround", "remove the quantifier", at)
        lazy = False
        if self.peek() == "?":
            self.i += 1
            lazy = True
        elif self.peek() == "+":
            raise self.reject(f"possessive quantifier {self.p[at:self.i + 1]!r} (Java-only)",
                              "drop the trailing + (write a greedy quantifier)", at)
        if (self.peek() != "" and self.peek() in "*+{") or (self.peek() == "?" and lazy):
            raise self.reject("a quantifier on a quantifier", "put the inner part in a group: (?:a+)+ "
                              "(and see whether you need both)", self.i)
        return _Repeat(atom, low, high, lazy, start, self.i)

    def braces(self) -> tuple[int, int | None]:
        m = _BRACES.match(self.p, self.i)
        if not m or not m.group(1):
            if m and m.group(2) and m.group(3):
                raise self.reject("{,n} (Python-only: up to n)", "write {0,n}")
            raise self.reject("a literal '{'", "escape it: \\{ (or write a repeat like {2,5})")
        _check_repeat(m)
        self.i = m.end()
        low = int(m.group(1))
        high = low if not m.group(2) else (int(m.group(3)) if m.group(3) else None)
        return low, high

    def atom(self):
        c = self.peek()
        if c == "(":
            return self.group()
        if c == "[":
            return self.char_class()
        if c == "\\":
            return self.escape()
        self.i += 1
        if c == ".":
            return _Chars("[^\\n]", "[^\\n]")
        if c == "^":
            return _Assert("^")
        if c == "$":
            return _Assert("(?=\\n?\\z)")
        if c == "{":
            self.i -= 1
            self.braces()  # raises: a brace here is not a valid repeat of anything
        if c in "*+?":
            raise self.reject(f"nothing to repeat before {c!r}", f"escape it: \\{c}", self.i - 1)
        return self.literal(c)

    def literal(self, c: str) -> _Chars:
        extras = _fold_extras(re.escape(c)) if self.ignore_case else ""
        java = f"[{_jchar(ord(c))}{extras}]" if extras else _jchar(ord(c))
        return _Chars(java, re.escape(c))

    def group(self):
        at = self.i
        self.i += 1
        if self.peek() != "?":
            self.groups_open += 1
            number = self.groups_open
            body = self.close(at)
            self.groups_closed += 1
            return _Group(body, True, number, at, self.i)
        head = self.p[self.i:self.i + 3]
        if head.startswith("?:"):
            self.i += 2
            body = self.close(at)
            return _Group(body, False, 0, at, self.i)
        for lead, java in (("?=", "(?="), ("?!", "(?!"), ("?<=", "(?<="), ("?<!", "(?<!")):
            if self.p.startswith(lead, self.i):
                self.i += len(lead)
                return _Assert(java, self.close(at))
        raise self._group_rejection(at)

    def _group_rejection(self, at: int) -> RegexRejected:
        rest = self.p[at:]
        if rest.startswith("(?P<"):
            return self.reject("named group (?P<name>...) (Python-only)", "use a plain group (...)", at)
        if rest.startswith("(?P="):
            return self.reject("named backreference (?P=name) (Python-only)", "use a numbered group and \\1", at)
        if rest.startswith("(?<"):
            return self.reject("named group (?<name>...) (Java-only)", "use a plain group (...)", at)
        if rest.startswith("(?>"):
            return self.reject("atomic group (?>...) (Java and Python 3.11+ only)", "use (?:...)", at)
        if rest.startswith("(?#"):
            return self.reject("comment (?#...) (Python-only)", "remove the comment", at)
        if rest.startswith("(?("):
            return self.reject("conditional (?(1)...|...) (Python-only)", "write both cases as alternatives (a|b)", at)
        if len(rest) > 2 and rest[2] in _FLAG_CHARS:
            return self.reject(f"inline flags {rest[:rest.find(')') + 1] or rest[:4]!r} (they differ between "
                               "Python and Java)",
                               "remove them; for case-insensitive matching set ignore_case: true", at)
        return self.reject(f"group syntax {rest[:3]!r}", "use (...), (?:...) or a lookaround (?=...) (?!...)", at)

    def close(self, at: int) -> _Alt:
        body = self.alternation()
        if self.peek() != ")":
            raise self.reject("unterminated group", "close it with )", at)
        self.i += 1
        return body

    def escape(self):
        at = self.i
        c = self.peek(1)
        self.i += 2
        if c == "":
            raise self.reject("a trailing backslash", "remove it or escape it: \\\\", at)
        if c in _CLASS_ESCAPES:
            return _Chars(_class_java(c), "\\" + c)
        if c in "bB":
            return _Assert(_boundary_java(c == "B"))
        if c == "A":
            return _Assert("\\A")
        if c.isdigit() and c != "0":
            if self.peek().isdigit():
                raise self.reject(f"two-digit backreference \\{c}{self.peek()}",
                                  "use a group number 1-9, or write (?:\\1)0 for group 1 then a digit", at)
            if int(c) > self.groups_closed:
                raise self.reject(f"backreference \\{c} to a group not closed before it",
                                  "refer only to groups that end before the reference", at)
            return _Backref(int(c))
        return self.literal(chr(self.escaped_char(c, at, in_class=False)))

    def escaped_char(self, c: str, at: int, *, in_class: bool) -> int:
        """The code point of an escape that stands for one character."""
        if c == "":
            raise self.reject("a trailing backslash", "remove it or escape it: \\\\", at)
        if c in _SIMPLE_ESCAPES:
            return ord(_SIMPLE_ESCAPES[c])
        if c in "xu":
            digits = 2 if c == "x" else 4
            text = self.p[self.i:self.i + digits]
            if not re.fullmatch(f"[0-9A-Fa-f]{{{digits}}}", text):
                if c == "x" and self.peek() == "{":
                    raise self.reject("\\x{...} (Java-only)", "write \\xHH or \\uHHHH", at)
                raise self.reject(f"\\{c} needs {digits} hex digits", f"write \\{c}{'0' * digits}", at)
            self.i += digits
            return int(text, 16)
        if c in _FOREIGN_ESCAPES:
            construct, fix = _FOREIGN_ESCAPES[c]
            raise self.reject(construct, fix, at)
        if c in "bB" and in_class:
            raise self.reject(f"\\{c} inside a class (Python: backspace; Java: an error)", "write \\x08", at)
        if c in _PUNCT:
            return ord(c)
        raise self.reject(f"escape \\{c}", "escape only punctuation; write letters and digits as they are", at)

    def char_class(self) -> _Chars:
        at = self.i
        self.i += 1
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        if self.peek() == "]":
            raise self.reject("']' first in a class", "escape it: [\\]...]", self.i)
        java: list[str] = []
        while True:
            c = self.peek()
            if c == "":
                raise self.reject("unterminated class [", "close it with ]", at)
            if c == "]":
                self.i += 1
                break
            if c == "[":
                raise self.reject("'[' inside a class (Java reads it as a nested class)", "escape it: \\[")
            pair = self.p[self.i:self.i + 2]
            if pair in ("&&", "--", "~~", "||"):
                raise self.reject(f"{pair!r} inside a class (Java: intersection; Python: set operation warning)"
                                  if pair == "&&" else f"{pair!r} inside a class (reserved for set operations)",
                                  f"escape them: \\{pair[0]}\\{pair[1]}")
            first, start = self.class_item()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                last, _ = self.class_item()
                if first is None or last is None:
                    raise self.reject("a range with a class (like [a-\\d])", "escape the dash: \\-", start)
                java.append(f"{_jchar(first)}-{_jchar(last)}")
                if self.ignore_case:
                    java.append(_fold_extras(f"[{re.escape(chr(first))}-{re.escape(chr(last))}]"))
            elif first is None:
                java.append(self.class_shorthand(start))
            else:
                java.append(_jchar(first) + (_fold_extras(re.escape(chr(first))) if self.ignore_case else ""))
        py = self.p[at:self.i]
        return _Chars(f"[{'^' if negated else ''}{''.join(java)}]", py)

    def class_item(self) -> tuple[int | None, int]:
        """A class member: (code point, start), or (None, start) for \\d \\w \\s and negations."""
        start = self.i
        c = self.peek()
        if c != "\\":
            self.i += 1
            return ord(c), start
        e = self.peek(1)
        if e != "" and e in _CLASS_ESCAPES:
            self.i += 2
            return None, start
        self.i += 2
        if e.isdigit() and e != "0":
            raise self.reject(f"\\{e} inside a class (Python: octal; Java: an error)", "write \\xHH", start)
        return self.escaped_char(e, start, in_class=True), start

    def class_shorthand(self, start: int) -> str:
        letter = self.p[start + 1]
        if letter in "WS":
            raise self.reject(f"\\{letter} inside a class", f"write it beside the class: (?:\\{letter}|[...])", start)
        if letter in "dD":
            return _class_java(letter)
        return _word_ranges() if letter == "w" else _space_ranges()


# -- bounds: checked by a flat scan before any parser (or Python's re) recurses -----------


def _check_repeat(m: re.Match) -> None:
    """``{n}`` / ``{n,m}`` with both counts at most MAX_REPEAT (digits bounded before int())."""
    counts = [g for g in (m.group(1), m.group(3)) if g]
    if any(len(g) > len(str(MAX_REPEAT)) or int(g) > MAX_REPEAT for g in counts):
        raise RegexRejected(f"repeat count {_short(m.group(0))} over the limit of {MAX_REPEAT}",
                            f"repeat at most {MAX_REPEAT} times, e.g. {{1,{MAX_REPEAT}}}", m.start(), "limit")


def _short(text: str, keep: int = 24) -> str:
    return text if len(text) <= keep else f"{text[:keep]}… ({len(text):,} characters)"


def _check_bounds(pattern: str) -> None:
    """Length, group nesting and repeat counts, so that neither engine recurses or overflows."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexRejected(f"a pattern of {len(pattern):,} characters (limit {MAX_PATTERN_LENGTH:,})",
                            "shorten it, or split it into several clauses under any:", MAX_PATTERN_LENGTH, "limit")
    depth = deepest = 0
    deepest_at = i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":  # skip the class: its ( { are literal
            i += 2 if pattern.startswith("[^", i) else 1
            i += 1 if pattern.startswith("]", i) else 0
            while i < len(pattern) and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif c == "(":
            depth += 1
            if depth > deepest:
                deepest, deepest_at = depth, i
        elif c == ")":
            depth = max(depth - 1, 0)
        elif c == "{" and (m := _BRACES.match(pattern, i)):
            _check_repeat(m)
        i += 1
    if deepest > MAX_NESTING:
        raise RegexRejected(f"groups nested {deepest} deep (limit {MAX_NESTING})",
                            "flatten the pattern: most groups inside groups can be written side by side",
                            deepest_at, "limit")


# -- catastrophic backtracking -------------------------------------------------------------
#
# A backtracking engine (Python's re, Java's Pattern) takes exponential or high-polynomial
# time when the same text can be split between quantifiers in many ways. Two rules keep
# every accepted pattern at most quadratic in the text (a search from each position, each
# quantifier scanning once):
#
# (a) A repeat of more than once ({2}, {1,5}, +, *) never repeats something that can match
#     the empty string, and one iteration never hands text to the next: (a*)*, (a?){25},
#     (a+){10}, (.*a){3}, (\w+\s?)*, (a|aa)+ are refused; (\d+\.){3}, (ab?)+, ([\w-]+\.)+ are
#     fine, because each iteration ends where the next one cannot start.
# (b) Two quantifiers that can stop at several places ("open": a variable repeat like \d+,
#     a?, .*, or alternatives that can start alike) never follow each other with only text
#     between them that the first could also take: .*.*, \d+\d*, a*a?a*, .*foo.*bar, \w+\s*\w*
#     are refused; ^\d+\.\d+$, \s*-\s*, foo.*bar, \d+(\.\d+)?, [\w.]+@([\w-]+\.)+[a-z]{2,} are
#     fine. A lookahead that scans (?=.*x) is refused after an open quantifier or in a repeat.


# characters the overlap test tries: ASCII, Latin-1, a little of every script family
_UNIVERSE = "".join(chr(c) for c in (*range(0x00, 0x250), *range(0x370, 0x400),
                                     0x5D0, 0x627, 0x660, 0x905, 0x966, 0x3042, 0x4E00, 0xFF10))


@dataclass(frozen=True)
class _Open:
    """A quantifier that could have stopped at several places: ``more`` is what the text after
    it would start with had it taken more (the next iteration's first characters; for
    alternatives, any of theirs), ``body`` what one more iteration must match."""

    node: object
    more: frozenset
    body: object


class _Backtracking:
    """Rules (a) and (b) above over one parsed pattern."""

    def __init__(self, pattern: str, ignore_case: bool, tree: _Alt) -> None:
        self.pattern = pattern
        self.flags = re.IGNORECASE if ignore_case else 0
        self.universe = _UNIVERSE + "".join(sorted(set(pattern) - set(_UNIVERSE)))
        self.groups: dict[int, _Group] = {}
        self._collect(tree)
        self._sets: dict[tuple[int, str], frozenset] = {}
        self._done: dict[tuple, list[_Open]] = {}

    def _collect(self, item) -> None:
        for child in _children(item):
            if isinstance(child, _Group) and child.capturing:
                self.groups[child.number] = child
            self._collect(child)

    # -- what an item can match ------------------------------------------------------------

    def members(self, chars: _Chars) -> frozenset:
        key = (self.flags, chars.py)
        if key not in self._sets:
            rx = re.compile(chars.py, self.flags)
            self._sets[key] = frozenset(ch for ch in self.universe if rx.fullmatch(ch))
        return self._sets[key]

    def nullable(self, item) -> bool:
        if isinstance(item, _Chars):
            return False
        if isinstance(item, _Assert):
            return True
        if isinstance(item, _Backref):
            return self.nullable(self.groups[item.number])
        if isinstance(item, _Group):
            return self.nullable(item.body)
        if isinstance(item, _Alt):
            return any(all(self.nullable(i) for i in branch) for branch in item.branches)
        return item.low == 0 or self.nullable(item.item)

    def first(self, item) -> frozenset:
        """The characters ``item`` can start with."""
        if isinstance(item, _Chars):
            return self.members(item)
        if isinstance(item, _Assert):
            return frozenset()
        if isinstance(item, _Backref):
            return self.first(self.groups[item.number])
        if isinstance(item, _Group):
            return self.first(item.body)
        if isinstance(item, _Alt):
            out: frozenset = frozenset()
            for branch in item.branches:
                for i in branch:
                    out |= self.first(i)
                    if not self.nullable(i):
                        break
            return out
        return self.first(item.item) if item.high != 0 else frozenset()

    def chars(self, item) -> frozenset:
        """Every character ``item`` can take (lookarounds take none)."""
        if isinstance(item, _Chars):
            return self.members(item)
        if isinstance(item, _Assert):
            return frozenset()
        if isinstance(item, _Backref):
            return self.chars(self.groups[item.number])
        out: frozenset = frozenset()
        for child in _children(item):
            out |= self.chars(child)
        return out

    def within(self, item, allowed: frozenset) -> tuple[bool, bool]:
        """(can match empty, can match a non-empty text) using only characters in ``allowed``."""
        if isinstance(item, _Chars):
            return False, bool(self.members(item) & allowed)
        if isinstance(item, _Assert):
            return True, False
        if isinstance(item, _Backref):
            return self.within(self.groups[item.number], allowed)
        if isinstance(item, _Group):
            return self.within(item.body, allowed)
        if isinstance(item, _Alt):
            empty = nonempty = False
            for branch in item.branches:
                parts = [self.within(i, allowed) for i in branch]
                empty = empty or all(e for e, _ in parts)
                nonempty = nonempty or (all(e or n for e, n in parts) and any(n for _, n in parts))
            return empty, nonempty
        e, n = self.within(item.item, allowed)
        if item.high == 0:
            return True, False
        if item.low > 0 and not (e or n):
            return False, False
        return item.low == 0 or e, n

    def variable(self, item) -> bool:
        """Contains a repeat that can take a varying number of iterations."""
        if isinstance(item, _Repeat) and item.low != item.high:
            return True
        return any(self.variable(c) for c in _children(item))

    # -- rule (b): a left-to-right scan of what is open --------------------------------------

    def alternation(self, alt: _Alt, open_: list[_Open], under: _Repeat | None, group=None) -> list[_Open]:
        choice = len(alt.branches) > 1 and (self.nullable(alt) or _overlapping([self.first_of_branch(b)
                                                                               for b in alt.branches]))
        if choice:
            self.conflict(group or alt, self.first(alt), self.chars(alt), open_, alt.position)
        out: list[_Open] = []
        for branch in alt.branches:
            out = _union(out, self.sequence(branch, open_, under))
        if choice:
            out = _union(out, [_Open(group or alt, self.chars(alt), group or alt)])
        return out

    def first_of_branch(self, branch: list) -> frozenset:
        return self.first(_Alt([branch]))

    def sequence(self, items: list, open_: list[_Open], under: _Repeat | None) -> list[_Open]:
        for item in items:
            open_ = self.item(item, open_, under)
        return open_

    def item(self, item, open_: list[_Open], under: _Repeat | None) -> list[_Open]:
        key = (id(item), tuple(id(u.node) for u in open_), id(under))
        if key not in self._done:  # nested repeats scan their body twice: each (item, open) once
            self._done[key] = self._item(item, open_, under)
        return self._done[key]

    def _item(self, item, open_: list[_Open], under: _Repeat | None) -> list[_Open]:
        if isinstance(item, _Chars):
            return [u for u in open_ if u.more & self.members(item)]
        if isinstance(item, _Backref):
            group = self.groups[item.number]
            if self.nullable(group):
                return open_
            return [u for u in open_ if u.more & self.first(group)]
        if isinstance(item, _Assert):
            if item.body is not None:
                self.lookaround(item, open_, under)
            return open_
        if isinstance(item, _Group):
            return self.alternation(item.body, open_, under, item)
        return self.repeat(item, open_, under)

    def lookaround(self, item: _Assert, open_: list[_Open], under: _Repeat | None) -> None:
        self.alternation(item.body, [], None)
        if self.variable(item.body) and (open_ or under is not None):
            where = (f"inside the repeat {self.text(under)!r}" if under is not None
                     else f"after {self.text(open_[0].node)!r}")
            raise RegexRejected(f"a lookaround with a repeat {where} (it rescans the text at every place "
                                "the repeat could stop: catastrophic backtracking)",
                                "put the lookaround first in the pattern, e.g. ^(?=.*\\d)...", item.body.position,
                                "backtracking")

    def repeat(self, rep: _Repeat, open_: list[_Open], under: _Repeat | None) -> list[_Open]:
        body = rep.item
        if rep.high == 0:
            return open_
        many = rep.high is None or rep.high > 1
        if many:
            self.rule_a(rep)
        if rep.low != rep.high:
            self.conflict(rep, self.first(body), self.chars(body), open_, rep.position)
        end = self.item(body, open_, rep if many else under)
        if many:  # iteration after iteration: what the last one left open meets the next one
            end = self.wrapped(rep, end)
        if rep.low == 0:
            end = _union(end, open_)
        if rep.low != rep.high:
            end = _union(end, [_Open(rep, self.first(body), body)])
        return end

    def wrapped(self, rep: _Repeat, end: list[_Open]) -> list[_Open]:
        try:
            return self.item(rep.item, end, rep)
        except RegexRejected as err:
            if err.kind != "backtracking" or "one after the other" not in err.construct:
                raise
            raise RegexRejected(f"nested quantifier: {self.text(rep)!r} repeats a part whose end can "
                                "take the start of the next iteration (catastrophic backtracking)",
                                "let each iteration end with something the next cannot start with, or "
                                "quantify only once, e.g. (a+)+ → a+, (\\w+\\s?)* → [\\w\\s]*",
                                rep.position, "backtracking") from None

    def rule_a(self, rep: _Repeat) -> None:
        if self.nullable(rep.item):
            raise RegexRejected(f"nested quantifier: {self.text(rep)!r} repeats a part that can match "
                                "the empty string (catastrophic backtracking)",
                                "make the repeated part match at least one character, e.g. (a*)* → a*, "
                                "(a?){5} → a{0,5}", rep.position, "backtracking")
        for alt in _alternations(rep.item):
            if _overlapping([self.first_of_branch(b) for b in alt.branches]):
                raise RegexRejected(
                    f"alternatives that can start alike under a repeat in {self.text(rep)!r} "
                    "(catastrophic backtracking)",
                    "make each alternative start with different characters (e.g. (a|aa)+ → a+, "
                    "(ab|ac)+ → (a[bc])+)", alt.position, "backtracking")

    def conflict(self, node, first: frozenset, chars: frozenset, open_: list[_Open], position: int) -> None:
        """``node`` can stop at several places: refuse it after an open quantifier it can take text from."""
        for u in open_:
            if u.more & first and self.within(u.body, chars)[1]:
                raise RegexRejected(
                    f"quantifiers that can take the same text one after the other: {self.text(u.node)!r} "
                    f"then {self.text(node)!r} (catastrophic backtracking)",
                    "let one of them take different characters or merge them (\\d+\\d* → \\d+, "
                    ".*foo.*bar → foo.*bar, a.*b.*c → a[^b]*b.*c)", position, "backtracking")

    def text(self, node) -> str:
        start, end = _span(node, self.pattern)
        return _short(self.pattern[start:end], 40)


def _children(item) -> list:
    if isinstance(item, _Alt):
        return [i for branch in item.branches for i in branch]
    if isinstance(item, _Group):
        return [item.body]
    if isinstance(item, _Repeat):
        return [item.item]
    if isinstance(item, _Assert) and item.body is not None:
        return [item.body]
    return []


def _alternations(item) -> list[_Alt]:
    """The alternations inside ``item`` (not inside lookarounds)."""
    if isinstance(item, _Assert):
        return []
    found = [item] if isinstance(item, _Alt) and len(item.branches) > 1 else []
    for child in _children(item):
        found.extend(_alternations(child))
    return found


def _overlapping(sets: list[frozenset]) -> bool:
    return any(sets[x] & sets[y] for x in range(len(sets)) for y in range(x + 1, len(sets)))


def _union(a: list[_Open], b: list[_Open]) -> list[_Open]:
    seen = {id(u.node) for u in a}
    return [*a, *(u for u in b if id(u.node) not in seen)]


def _span(node, pattern: str) -> tuple[int, int]:
    if isinstance(node, _Repeat):
        return node.position, node.end
    if isinstance(node, _Alt):
        return node.position, node.position + 1
    if isinstance(node, _Group):
        return node.position, node.end
    return 0, len(pattern)


# -- public ---------------------------------------------------------------------------------


def _parse(pattern: str, ignore_case: bool) -> _Alt:
    _check_bounds(pattern)
    return _search_form(_Parser(pattern, ignore_case).parse())


def _open_dot_star(item) -> bool:
    return (isinstance(item, _Repeat) and item.low == 0 and item.high is None
            and isinstance(item.item, _Chars) and item.item.py == "[^\\n]")


def _search_form(tree: _Alt) -> _Alt:
    """``tree`` without a ``.*`` that opens or closes a top-level branch.

    ``matches:`` is a search (``re.search``, ``rlike``): ``.*X.*`` finds a match exactly where
    ``X`` does, since ``.*`` may match nothing. Written out, the ``.*`` only costs time (a
    scan per start position), and it would make ``.*Samsung.*`` look like two quantifiers
    that take the same text; so both engines get the branch without it.
    """
    for branch in tree.branches:
        while branch and _open_dot_star(branch[0]):
            branch.pop(0)
        while branch and _open_dot_star(branch[-1]):
            branch.pop()
    return tree


def check_pattern(pattern: str, ignore_case: bool = False) -> None:
    """Raise ``re.error`` (Python cannot read it) or RegexRejected (not shared, over a limit, or
    slow: exponential or cubic backtracking)."""
    _check_bounds(pattern)  # before re.compile, which recurses per group and overflows on {10**20}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error:
        # a construct only Java knows (\p{L}, \z) is named as such, not as Python's "bad escape"
        try:
            _parse(pattern, ignore_case)
        except RegexRejected as err:
            if "Java" in err.construct or "Python" in err.construct:
                raise err from None
        raise
    tree = _parse(pattern, ignore_case)
    _Backtracking(pattern, ignore_case, tree).alternation(tree, [], None)


def _emit_alt(alt: _Alt) -> str:
    return "|".join("".join(_emit(item) for item in branch) for branch in alt.branches)


def _emit(item) -> str:
    if isinstance(item, _Chars):
        return item.java
    if isinstance(item, _Assert):
        return item.java if item.body is None else f"{item.java}{_emit_alt(item.body)})"
    if isinstance(item, _Backref):
        return f"(?:\\{item.number})"
    if isinstance(item, _Group):
        return f"({'' if item.capturing else '?:'}{_emit_alt(item.body)})"
    if isinstance(item, _Repeat):
        inner = _emit(item.item)
        quant = (f"{{{item.low}}}" if item.low == item.high else
                 f"{{{item.low},{'' if item.high is None else item.high}}}")
        return f"{inner}{quant}{'?' if item.lazy else ''}"
    raise AssertionError(item)


@functools.lru_cache(maxsize=4096)
def java_pattern(pattern: str, ignore_case: bool = False) -> str:
    """The Java pattern that finds exactly what Python's ``re.search(pattern)`` finds.

    A pattern outside the shared syntax (a definition loaded without validation) is passed
    through as written.
    """
    try:
        body = _emit_alt(_parse(pattern, ignore_case))
    except RegexRejected:
        body = pattern
    return ("(?iu)" if ignore_case else "") + body
