"""Meta custom audience users: add (``join``) and remove (``leave``) hashed users.

Up to 10,000 records a call. Each row carries ``EXTERN_ID`` (the customer key) so a
leave, which has no data, still names the user, and so Meta's invalid-entry samples can
be matched back to events. Emails and phones are normalised and SHA-256 hashed here
unless the event already holds a 64-hex digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from feedgen.connectors.base import Item, MappingError, Partner, Request, Settings, json_bytes

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
JOIN_SCHEMA = ["EXTERN_ID", "EMAIL", "PHONE"]
LEAVE_SCHEMA = ["EXTERN_ID"]


def hashed(value: Any, kind: str) -> str:
    """SHA-256 hex of a normalised email or phone; '' when missing; digests pass through."""
    if value is None:
        return ""
    text = str(value).strip().lower()
    if not text:
        return ""
    if _HEX64.match(text):
        return text
    if kind == "phone":
        text = re.sub(r"\D", "", text)  # Meta wants digits with the country code, no '+'
        if not text:
            return ""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class MetaCustomAudience(Partner):
    type = "meta_custom_audience"
    max_items = 10000
    ops = frozenset({"join", "leave"})

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        super().__init__(settings, environ)
        self.token = settings.secret("token_env", environ)

    def map_event(self, event: dict[str, Any]) -> list[str]:
        key = str(event.get("key") or "")
        if not key:
            raise MappingError("missing 'key' (the customer id, sent as EXTERN_ID)")
        if event["op"] == "leave":
            return [key]
        data = event.get("data")
        if not isinstance(data, dict):
            raise MappingError("op 'join' needs 'data' with email and/or phone")
        email = hashed(data.get("email_sha256") or data.get("email"), "email")
        phone = hashed(data.get("phone_sha256") or data.get("phone"), "phone")
        return [key, email, phone]

    def requests(self, items: list[Item]) -> list[Request]:
        out = []
        for op, method, schema in (("join", "POST", JOIN_SCHEMA), ("leave", "DELETE", LEAVE_SCHEMA)):
            part = [it for it in items if it.event["op"] == op]
            if not part:
                continue
            session_id = int(hashlib.sha256("\n".join(i.event_id for i in part).encode()).hexdigest()[:12], 16)
            body = {"payload": {"schema": schema, "data": [it.payload for it in part]},
                    "session": {"session_id": session_id, "batch_seq": 1, "last_batch_flag": True,
                                "estimated_num_total": len(part)}}
            out.append(Request(part, method, self.settings.endpoint, json_bytes(body),
                               {"Authorization": f"Bearer {self.token}"}))
        return out

    def rejected(self, request: Request, status: int, body: bytes) -> dict[int, str]:
        try:
            samples = json.loads(body or b"{}").get("invalid_entry_samples") or {}
        except (ValueError, AttributeError):
            return {}
        out: dict[int, str] = {}
        for index, it in enumerate(request.items):
            why = samples.get(it.payload[0])
            if why:
                out[index] = f"EXTERN_ID {it.payload[0]}: {why}"
        return out


PARTNER = MetaCustomAudience
