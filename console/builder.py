"""The rule builder's model of a definition, and the field list its pickers offer.

``to_model(kind, body)`` turns a definition body (one entry of a ``feeds:``/``segments:``
list, as the registry stores it) into the JSON the builder edits; ``to_body(model)`` turns
it back. The two round-trip exactly, key order included: every node keeps the order its
keys were written in (``keys``), and a node the builder made has none (canonical order).

Nodes of ``where``:

- ``{"type": "group", "op": "all"|"any", "items": [node, ...]}``
- ``{"type": "not", "item": node}``
- ``{"type": "field", "field": "price.amount", "op": "between", "value": [10, 500], "ignore_case": false}``
- ``{"type": "history", "history": "orders", "agg": "count"|"sum"|"min"|"max"|"exists",
  "agg_field": "amount"|null, "op": "gte"|null, "value": 1, "where": node|null, "within_last": "30d"|null}``
- ``{"type": "in_segment", "segment": "buyers"}``

A body the model cannot hold (a clause with two operators, a value of the wrong shape) is
refused with :class:`NotModelable`, naming the JSON pointer: the page then offers the YAML
view only, where the validator's messages say what to fix.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pyspark.sql import types as T

from feedgen.aggregator.schemas import AGGREGATE_SCHEMAS, ENTITY_KEYS
from feedgen.generator.fields import describe, kind_of
from feedgen.generator.parse import _AGG_TEST_OPS, _load_yaml
from feedgen.generator.registry import AUDIENCE_EXPORTS, FEED_TEMPLATES
from feedgen.generator.tree import HISTORY_AGGS, LEAF_OPS
from feedgen.generator.validate import OPS_BY_KIND

__all__ = ["NotModelable", "field_list", "to_body", "to_model"]

SECTIONS = ("template", "exports", "pick_one_per", "order_by", "for_each", "options", "delivery", "gates",
            "refresh_after", "description", "entity")
LEAF_KEYS = ("field", "ignore_case")
HISTORY_KEYS = ("history", "where", "within_last")
# what min/max/sum may aggregate
AGG_FIELD_KINDS = {"sum": ("number",), "min": ("number", "timestamp", "string"),
                   "max": ("number", "timestamp", "string")}


class NotModelable(ValueError):
    """The body has a shape the builder cannot show; ``pointer`` says where."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"{pointer or '/'}: {message}; edit it in the YAML view")
        self.pointer = pointer


# -- body → model ----------------------------------------------------------------------------

def to_model(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The builder's model of ``body`` (a feed or segment entry)."""
    if not isinstance(body, Mapping):
        raise NotModelable("", "a definition is a mapping of keys (id, where, ...)")
    model: dict[str, Any] = {"kind": kind, "keys": list(body)}
    for key, value in body.items():
        if key == "where":
            model["where"] = node_model(value, "/where")
        else:
            model[key] = copy.deepcopy(value)
    return model


def node_model(raw: Any, pointer: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise NotModelable(pointer, "a clause is a mapping, e.g. {field: brand, eq: Sony}")
    keys = list(raw)
    if "all" in raw or "any" in raw:
        op = "all" if "all" in raw else "any"
        items = raw[op]
        if len(raw) != 1 or not isinstance(items, list):
            raise NotModelable(pointer, f"{op} stands alone and holds a list of clauses")
        return {"type": "group", "op": op,
                "items": [node_model(item, f"{pointer}/{op}/{i}") for i, item in enumerate(items)]}
    if "not" in raw:
        if len(raw) != 1:
            raise NotModelable(pointer, "not stands alone")
        return {"type": "not", "item": node_model(raw["not"], f"{pointer}/not")}
    if "in_segment" in raw:
        if len(raw) != 1:
            raise NotModelable(pointer, "in_segment stands alone")
        return {"type": "in_segment", "segment": raw["in_segment"]}
    if "history" in raw:
        return _history_model(raw, keys, pointer)
    if "field" in raw:
        ops = [k for k in raw if k not in LEAF_KEYS]
        if len(ops) != 1 or ops[0] not in LEAF_OPS:
            raise NotModelable(pointer, "a field clause has exactly one operator")
        out = {"type": "field", "field": raw["field"], "op": ops[0], "value": copy.deepcopy(raw[ops[0]]),
               "keys": keys}
        if "ignore_case" in raw:
            out["ignore_case"] = raw["ignore_case"]
        return out
    raise NotModelable(pointer, "not a clause: use all, any, not, field, history or in_segment")


def _history_model(raw: Mapping[str, Any], keys: list[str], pointer: str) -> dict[str, Any]:
    aggs = [k for k in raw if k in HISTORY_AGGS]
    extra = [k for k in raw if k not in HISTORY_KEYS and k not in HISTORY_AGGS]
    if len(aggs) != 1 or extra:
        raise NotModelable(pointer, "a history clause has exactly one of count, sum, min, max, exists")
    agg = aggs[0]
    out: dict[str, Any] = {"type": "history", "history": raw["history"], "agg": agg, "keys": keys,
                           "where": node_model(raw["where"], f"{pointer}/where") if raw.get("where") is not None
                           else raw.get("where", _ABSENT),
                           "within_last": raw.get("within_last", _ABSENT)}
    spec = raw[agg]
    if agg == "exists":
        out.update(agg_field=None, op=None, value=spec)
    else:
        if not isinstance(spec, Mapping):
            raise NotModelable(f"{pointer}/{agg}", f"{agg} holds a comparison, e.g. {{gte: 1}}")
        ops = [k for k in spec if k not in ("field", "ignore_case")]
        if len(ops) != 1:
            raise NotModelable(f"{pointer}/{agg}", "one comparison")
        out.update(agg_field=spec.get("field"), op=ops[0], value=copy.deepcopy(spec[ops[0]]),
                   spec_keys=list(spec))
        if "ignore_case" in spec:
            out["ignore_case"] = spec["ignore_case"]
    for name in ("where", "within_last"):
        if out[name] is _ABSENT:
            out[name] = None
            out.setdefault("absent", []).append(name)
    return out


class _Absent:
    def __repr__(self) -> str:  # pragma: no cover
        return "<absent>"


_ABSENT = _Absent()


# -- model → body ----------------------------------------------------------------------------

def to_body(model: Mapping[str, Any]) -> dict[str, Any]:
    """The definition body of a builder model."""
    keys = model.get("keys") or ["id", *[k for k in ("entity", "description") if k in model], "where",
                                 *[k for k in SECTIONS if k in model and k not in ("entity", "description")]]
    body: dict[str, Any] = {}
    for key in keys:
        if key == "where":
            if model.get("where") is not None:
                body["where"] = node_body(model["where"])
        elif key in model:
            body[key] = copy.deepcopy(model[key])
    for key, value in model.items():  # sections the builder added after loading
        if key not in body and key not in ("kind", "keys", "where") and value is not None:
            body[key] = copy.deepcopy(value)
    if "where" not in body and model.get("where") is not None:
        body["where"] = node_body(model["where"])
    return body


def node_body(node: Mapping[str, Any]) -> dict[str, Any]:
    kind = node.get("type")
    if kind == "group":
        return {node["op"]: [node_body(item) for item in node.get("items") or []]}
    if kind == "not":
        return {"not": node_body(node["item"])}
    if kind == "in_segment":
        return {"in_segment": node["segment"]}
    if kind == "field":
        values = {"field": node.get("field"), node["op"]: copy.deepcopy(node.get("value"))}
        if "ignore_case" in node:
            values["ignore_case"] = node["ignore_case"]
        return _ordered(values, node.get("keys") or ["field", node["op"], "ignore_case"])
    if kind == "history":
        return _history_body(node)
    raise ValueError(f"unknown builder node type {kind!r}")


def _history_body(node: Mapping[str, Any]) -> dict[str, Any]:
    agg = node["agg"]
    absent = set(node.get("absent") or ())
    values: dict[str, Any] = {"history": node["history"]}
    if node.get("where") is not None:
        values["where"] = node_body(node["where"])
    elif "where" not in absent and "where" in (node.get("keys") or ()):
        values["where"] = None
    if node.get("within_last") is not None:
        values["within_last"] = node["within_last"]
    elif "within_last" not in absent and "within_last" in (node.get("keys") or ()):
        values["within_last"] = None
    if agg == "exists":
        values["exists"] = node.get("value")
    else:
        spec = {"field": node.get("agg_field"), node["op"]: copy.deepcopy(node.get("value"))}
        if spec["field"] is None:
            del spec["field"]
        if "ignore_case" in node:
            spec["ignore_case"] = node["ignore_case"]
        values[agg] = _ordered(spec, node.get("spec_keys") or ["field", node["op"], "ignore_case"])
    return _ordered(values, node.get("keys") or ["history", "where", "within_last", agg])


def _ordered(values: dict[str, Any], order: list[str]) -> dict[str, Any]:
    out = {k: values[k] for k in order if k in values}
    out.update({k: v for k, v in values.items() if k not in out})
    return out


# -- the field list --------------------------------------------------------------------------

def _fields(struct: T.StructType, prefix: str = "") -> list[dict[str, Any]]:
    out = []
    for f in struct.fields:
        path = f"{prefix}{f.name}"
        kind = kind_of(f.dataType)
        if kind == "struct":
            out.extend(_fields(f.dataType, f"{path}."))
            continue
        entry: dict[str, Any] = {"path": path, "kind": kind, "type": describe(f.dataType),
                                 "operators": list(OPS_BY_KIND.get(kind, ()))}
        if kind == "map":
            value_kind = kind_of(f.dataType.valueType)
            entry["key_path"] = f"{path}.<key>"
            entry["value_kind"] = value_kind
            entry["value_operators"] = list(OPS_BY_KIND.get(value_kind, ()))
        if kind == "list":
            entry["element_kind"] = kind_of(f.dataType.elementType)
        if kind == "history":
            element = f.dataType.elementType
            entry["element_fields"] = _fields(element)
            entry["aggregates"] = {
                agg: {"test_operators": list(_AGG_TEST_OPS.get(agg, ("eq",))) if agg != "exists" else ["eq"],
                      "fields": [e["path"] for e in _fields(element) if e["kind"] in AGG_FIELD_KINDS.get(agg, ())]}
                for agg in HISTORY_AGGS}
            entry["within_last"] = "ts" in element.fieldNames()
        out.append(entry)
    return out


def field_list(entity: str) -> dict[str, Any]:
    """The fields of ``entity``'s aggregate for the builder: path, type, valid operators; the
    histories with their element fields and aggregates; the templates of the entity."""
    schema = AGGREGATE_SCHEMAS[entity]
    fields = _fields(schema)
    return {
        "entity": entity, "key": ENTITY_KEYS[entity],
        "fields": [f for f in fields if f["kind"] != "history"],
        "histories": [f for f in fields if f["kind"] == "history"],
        "operators": OPS_BY_KIND,
        "templates": list(FEED_TEMPLATES) if entity == "offer" else [],
        "exports": list(AUDIENCE_EXPORTS) if entity == "customer" else [],
    }


# -- the YAML view ---------------------------------------------------------------------------

def to_yaml(body: Mapping[str, Any]) -> str:
    """The body as the YAML view shows it: keys in their order, block style, unicode kept."""
    import yaml

    return yaml.safe_dump(dict(body), sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def from_yaml(text: str) -> dict[str, Any]:
    """A body from the YAML view's text; NotModelable (pointer "") when it is not a mapping."""
    import yaml

    try:
        data = _load_yaml(text)
    except Exception as err:  # noqa: BLE001 - the parser's message names the line
        raise NotModelable("", f"not valid YAML: {str(err).splitlines()[0] if str(err) else err}") from None
    if not isinstance(data, Mapping):
        raise NotModelable("", "the YAML view holds one definition: a mapping of id, where, ...")
    return yaml.safe_load(yaml.safe_dump(_plain(data), sort_keys=False))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
