"""Data of the marketers' pages: the definitions list with sizes, versions with diffs.

Plain functions returning dicts (the pages render them; the JSON twins answer them), on
the registry and the runs under the data root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feedgen.console.registry import NotFound, Registry
from feedgen.console.registry.models import STATES
from feedgen.console.registry.service import KINDS
from feedgen.core.runs import read_run

LIST_FILTERS = ("kind", "state", "entity", "template", "destination", "author", "q")
PUBLISHED_STATES = ("published", "emitted")
MAX_RUNS = 30


def run_sizes(root: str | Path, limit: int = MAX_RUNS) -> list[dict[str, Any]]:
    """The retained runs that published, oldest first: run id, as_of and items per definition."""
    folder = Path(root) / "runs"
    names = sorted(p.name for p in folder.iterdir() if (p / "run.json").is_file()) if folder.is_dir() else []
    out = []
    for name in names:
        try:
            record = read_run(root, name)
        except Exception:  # noqa: BLE001 - an unreadable run.json is left out of the trend
            continue
        if record.get("status") not in PUBLISHED_STATES:
            continue
        sizes = {d: s.get("items") for d, s in (record.get("definitions") or {}).items() if isinstance(s, dict)}
        out.append({"run_id": name, "as_of": record.get("as_of"), "items": sizes})
    return out[-limit:]


def definitions_overview(registry: Registry, root: str | Path, filters: dict[str, str],
                         limit: int = 200) -> dict[str, Any]:
    """The definitions matching ``filters``, each with its size in the latest published run,
    the change since the run before, and its sizes over the retained runs."""
    found = registry.list_definitions(
        kind=filters.get("kind") or None, status=filters.get("state") or None, search=filters.get("q") or None,
        entity=filters.get("entity") or None, template=filters.get("template") or None,
        destination=filters.get("destination") or None, author=filters.get("author") or None,
        offset=0, limit=limit)
    runs = run_sizes(root)
    rows = []
    for info in found:
        row = info.as_dict()
        series = [r["items"].get(info.definition_id) for r in runs]
        known = [(r["run_id"], v) for r, v in zip(runs, series, strict=True) if v is not None]
        row["trend"] = [{"run_id": r["run_id"], "items": v} for r, v in zip(runs, series, strict=True)]
        row["items"] = known[-1][1] if known else None
        row["run_id"] = known[-1][0] if known else None
        row["change"] = (known[-1][1] - known[-2][1]) if len(known) > 1 else None
        row["change_share"] = (round(row["change"] / known[-2][1], 6)
                               if len(known) > 1 and known[-2][1] else None)
        rows.append(row)
    return {"definitions": rows, "filters": filters, "runs": [r["run_id"] for r in runs],
            "choices": {"kind": list(KINDS), "state": list(STATES), "entity": ["offer", "customer"]}}


def versions_data(registry: Registry, definition_id: str, a: int | None, b: int | None) -> dict[str, Any]:
    """Every version (author, time, message) and the structural diff of versions ``a`` → ``b``
    (default: the two latest)."""
    info = registry.definition(definition_id)
    versions = registry.versions(definition_id)
    numbers = [v.number for v in versions]
    b = b or numbers[-1]
    a = a or (numbers[-2] if len(numbers) > 1 else numbers[-1])
    for n in (a, b):
        if n not in numbers:
            raise NotFound(f"definition {definition_id!r} has no version {n}; it has versions "
                           f"{', '.join(map(str, numbers))}")
    changes = [c.as_dict() for c in registry.diff(definition_id, a, b)]
    return {"definition": info.as_dict(), "definition_id": definition_id, "a": a, "b": b, "changes": changes,
            "versions": [{k: v for k, v in version.as_dict().items() if k != "body"} for version in versions]}
