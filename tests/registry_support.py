"""Small definitions and actors for the registry tests."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from feedgen.console.registry import Actor, NotFound

ADMIN = Actor("os:tester", "admin")
EDITOR = Actor("ed", "editor")
PUBLISHER = Actor("pia", "publisher")
VIEWER = Actor("vic", "viewer")
APPROVER = Actor("ava", "approver")

BUYERS = {"id": "buyers", "description": "Ordered at least once",
          "where": {"history": "orders", "count": {"gte": 1}}, "exports": ["ids_csv"]}
LAPSED = {"id": "lapsed-buyers", "where": {"all": [{"in_segment": "buyers"}, {"field": "orders_total", "gte": 100}]},
          "exports": ["ids_csv"]}
PER_STORE = {"id": "store-{store_id}-buyers", "for_each": {"store_id": [1, 2, 3]},
             "where": {"history": "orders", "where": {"field": "store_id", "eq": "{store_id}"}, "count": {"gte": 1}},
             "exports": ["ids_csv"]}
CHEAP = {"id": "cheap-electronics", "template": "google_merchant_rss",
         "where": {"all": [{"field": "category.path", "starts_with": "Electronics"}, {"field": "price.amount", "lt": 100}]}}


def body(base: dict, **changes) -> dict:
    out = copy.deepcopy(base)
    out.update(changes)
    return out


def published(registry, kind: str, template: dict, actor: Actor = ADMIN):
    """Save ``template`` as a draft on top of whatever is there, then publish it."""
    try:
        base = registry.definition(template["id"]).latest_version
    except NotFound:
        base = None
    draft = registry.save_draft(actor, kind, template, base_version=base, message="test")
    return registry.publish(actor, template["id"], draft.number, message="test")


class Clock:
    """A clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs) -> None:
        self.now += timedelta(**kwargs)
