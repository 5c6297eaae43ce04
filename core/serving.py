"""The serving store and its ``current/<definition_id>.json`` pointers: which run each
definition serves. ``jobs/publish.py`` writes the pointers; the gates, the membership index,
the console's preview and the lifecycle read them here."""

from __future__ import annotations

import json
from typing import Any

from feedgen.core.store import Store, open_store


def serving_store(config: Any) -> Store:
    """The store readers are served from: ``publish.store``, else the data root."""
    return open_store(config.get("publish.store") or config.root, config)


def pointer_key(definition_id: str) -> str:
    return f"current/{definition_id}.json"


def read_pointer(store: Store, definition_id: str) -> dict[str, Any] | None:
    """The ``current/<id>.json`` pointer of a definition, or None before its first publication."""
    try:
        return json.loads(store.read_bytes(pointer_key(definition_id)))
    except FileNotFoundError:
        return None


def current_run_id(config: Any, definition_id: str, store: Store | None = None) -> str | None:
    """The run the definition's pointer names (the base of the next diff and gate)."""
    pointer = read_pointer(store or serving_store(config), definition_id)
    return pointer["run_id"] if pointer else None


def current_pointers(store: Store) -> dict[str, dict[str, Any]]:
    """Every definition's pointer in ``store``, by definition id (unreadable ones skipped)."""
    out = {}
    for key in store.list("current/"):
        if key.endswith(".json") and key.count("/") == 1:
            try:
                pointer = json.loads(store.read_bytes(key))
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            out[pointer.get("definition_id", key[8:-5])] = pointer
    return out


__all__ = ["current_pointers", "current_run_id", "pointer_key", "read_pointer", "serving_store"]
