"""Structural diff of two definition bodies, leaf by leaf, each change located by a JSON pointer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_MISSING = object()


@dataclass(frozen=True)
class Change:
    """``op`` is added, removed or changed; ``old``/``new`` are None where absent."""

    op: str
    pointer: str
    old: Any = None
    new: Any = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "pointer": self.pointer}
        if self.op != "added":
            out["old"] = self.old
        if self.op != "removed":
            out["new"] = self.new
        return out

    def __str__(self) -> str:
        if self.op == "added":
            return f"+ {self.pointer}: {self.new!r}"
        if self.op == "removed":
            return f"- {self.pointer}: {self.old!r}"
        return f"~ {self.pointer}: {self.old!r} → {self.new!r}"


def diff(old: Any, new: Any) -> list[Change]:
    """Every leaf that differs: mappings by key (old's order, then new keys), lists by index."""
    changes: list[Change] = []
    _walk(old, new, "", changes)
    return changes


def _escape(step: Any) -> str:
    return str(step).replace("~", "~0").replace("/", "~1")


def _walk(old: Any, new: Any, pointer: str, out: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            _step(old.get(key, _MISSING), new.get(key, _MISSING), f"{pointer}/{_escape(key)}", out)
    elif isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            _step(old[i] if i < len(old) else _MISSING, new[i] if i < len(new) else _MISSING, f"{pointer}/{i}", out)
    elif not _same(old, new):
        out.append(Change("changed", pointer, old, new))


def _step(old: Any, new: Any, pointer: str, out: list[Change]) -> None:
    if old is _MISSING:
        out.append(Change("added", pointer, None, new))
    elif new is _MISSING:
        out.append(Change("removed", pointer, old, None))
    else:
        _walk(old, new, pointer, out)


def _same(a: Any, b: Any) -> bool:
    # 1 and 1.0 and True are equal in Python but not to a marketer reading a rule.
    return type(a) is type(b) and a == b
