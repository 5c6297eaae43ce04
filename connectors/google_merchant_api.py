"""Google Merchant Center (Content API ``products/custombatch``): insert and delete products.

Per-item id: each batch entry's ``batchId`` is derived from the event id, so a retried
call carries the same ids; errors come back per entry, by ``batchId``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from feedgen.connectors.base import (
    Item,
    MappingError,
    Partner,
    Request,
    Settings,
    json_bytes,
    require_data,
)

_AVAILABILITY = {"in_stock": "in stock", "out_of_stock": "out of stock", "preorder": "preorder"}
_FIELDS = {  # event data field -> Content API product field
    "title": "title", "description": "description", "link": "link", "image_link": "imageLink",
    "brand": "brand", "gtin": "gtin", "mpn": "mpn", "condition": "condition",
    "google_product_category": "googleProductCategory", "product_type": "productTypes",
}


def _price(value: Any, field: str) -> dict[str, str]:
    if isinstance(value, Mapping) and value.get("amount") is not None and value.get("currency"):
        return {"value": f"{float(value['amount']):.2f}", "currency": str(value["currency"])}
    if isinstance(value, str) and len(value.split()) == 2:
        amount, currency = value.split()
        return {"value": amount, "currency": currency}
    raise MappingError(f"data.{field}: {value!r} is not a price; give {{amount, currency}} or '12.00 PLN'")


def batch_id(event_id: str, taken: set[int]) -> int:
    """A uint32 batchId from the event id; the next free number if two events collide."""
    try:
        bid = int(event_id[:8], 16)
    except ValueError:
        bid = int.from_bytes(event_id.encode()[:4].ljust(4, b"\0"), "big")
    while bid in taken:
        bid = (bid + 1) % 2**32
    taken.add(bid)
    return bid


class GoogleMerchantApi(Partner):
    type = "google_merchant_api"
    max_items = 1000
    max_bytes = 30 * 1024 * 1024

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        super().__init__(settings, environ)
        self.token = settings.secret("token_env", environ)
        self.merchant_id = str(settings.require("merchant_id", "set your Merchant Center account id"))
        self.language = settings.raw.get("content_language", "pl")
        self.country = settings.raw.get("target_country", "PL")
        self.channel = settings.raw.get("channel", "online")

    def product(self, key: str, data: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"offerId": key, "channel": self.channel,
                               "contentLanguage": self.language, "targetCountry": self.country}
        custom = []
        for name, value in data.items():
            if value is None:
                continue
            if name in _FIELDS:
                out[_FIELDS[name]] = value
            elif name in ("price", "sale_price"):
                out["price" if name == "price" else "salePrice"] = _price(value, name)
            elif name == "availability":
                out["availability"] = _AVAILABILITY.get(str(value), str(value))
            elif not isinstance(value, (dict, list)):
                custom.append({"name": name, "value": str(value)})
        if "price" not in out:
            raise MappingError("data.price is required by Google Merchant Center")
        if custom:
            out["customAttributes"] = custom
        return out

    def map_event(self, event: dict[str, Any]) -> dict[str, Any]:
        key = str(event.get("key") or "")
        if not key:
            raise MappingError("missing 'key' (the offerId)")
        if event["op"] == "remove":
            return {"method": "delete", "productId": f"{self.channel}:{self.language}:{self.country}:{key}"}
        return {"method": "insert", "product": self.product(key, require_data(event))}

    def requests(self, items: list[Item]) -> list[Request]:
        taken: set[int] = set()
        entries = [{"batchId": batch_id(it.event_id, taken), "merchantId": self.merchant_id, **it.payload}
                   for it in items]
        return [Request(items, "POST", self.settings.endpoint, json_bytes({"entries": entries}),
                        {"Authorization": f"Bearer {self.token}"})]

    def rejected(self, request: Request, status: int, body: bytes) -> dict[int, str]:
        try:
            entries = json.loads(body or b"{}").get("entries") or []
        except (ValueError, AttributeError):
            return {}
        taken: set[int] = set()
        index_of = {batch_id(it.event_id, taken): i for i, it in enumerate(request.items)}
        out: dict[int, str] = {}
        for entry in entries:
            errors = entry.get("errors")
            if not errors or entry.get("batchId") not in index_of:
                continue
            details = "; ".join(f"{e.get('reason', '')}: {e.get('message', '')}" for e in errors.get("errors", []))
            out[index_of[entry["batchId"]]] = f"HTTP {errors.get('code', '?')} {errors.get('message', '')} {details}".strip()
        return out


PARTNER = GoogleMerchantApi
