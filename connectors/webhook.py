"""A generic webhook: JSON batches of the events as they are, signed with HMAC-SHA256.

Header ``X-Feedgen-Signature: sha256=<hex>`` is the HMAC of ``<timestamp>.<body>`` with
the shared secret, ``X-Feedgen-Timestamp`` the timestamp (so a receiver can refuse
replays). The receiver may answer ``{"rejected": [{"event_id": ..., "reason": ...}]}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from feedgen.connectors.base import Item, Partner, Request, Settings, json_bytes

SIGNATURE_HEADER = "X-Feedgen-Signature"
TIMESTAMP_HEADER = "X-Feedgen-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value a receiver recomputes to check a call."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class Webhook(Partner):
    type = "webhook"
    ops = frozenset({"add", "update", "remove", "refresh", "join", "leave"})

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        super().__init__(settings, environ)
        self.secret = settings.secret("secret_env", environ)
        self.max_items = int(settings.raw.get("max_items", 1000))

    def map_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return event

    def requests(self, items: list[Item]) -> list[Request]:
        body = json_bytes({"connector": self.settings.name, "events": [it.payload for it in items]})
        ts = str(int(time.time()))
        return [Request(items, "POST", self.settings.endpoint, body,
                        {SIGNATURE_HEADER: signature(self.secret, ts, body), TIMESTAMP_HEADER: ts})]

    def rejected(self, request: Request, status: int, body: bytes) -> dict[int, str]:
        try:
            rejected = json.loads(body or b"{}").get("rejected") or []
        except (ValueError, AttributeError):
            return {}
        reasons = {str(r.get("event_id")): str(r.get("reason", "rejected")) for r in rejected}
        return {i: f"event {it.event_id}: {reasons[it.event_id]}"
                for i, it in enumerate(request.items) if it.event_id in reasons}


PARTNER = Webhook
