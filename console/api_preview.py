"""Preview, explain and the builder's field list: the console API routes on the warm engine.

``POST /preview`` evaluates a draft on the latest aggregate (``console/preview.py``);
``GET /explain/{definition_id}/{key}``, ``POST /explain`` and ``GET /inspect/{entity}/{key}``
say why an entity is or is not in; ``GET /fields/{entity}`` (and ``/values``) feed the rule
builder's pickers. With no aggregate yet the answer says so (``run_id: null`` and a
``note``) rather than failing: the console works before the first run.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Response, current_app, jsonify

from feedgen.console import builder
from feedgen.console.api import (
    ApiError,
    _body,
    _definition_body,
    _definition_id,
    _kind,
    _query,
    problems_json,
    registry,
    route,
)
from feedgen.console.preview import SECTIONS, NoAggregate, PreviewEngine, draft_definitions
from feedgen.console.registry import NotFound
from feedgen.generator.definitions import Definition, DefinitionSet, definitions_from_documents

KEY = re.compile(r"[A-Za-z0-9._@:+-]{1,200}")
FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z0-9_ -]{1,64}){0,4}")
ENTITIES = ("offer", "customer")
MAX_SAMPLES = 100


def engine() -> PreviewEngine:
    state = current_app.extensions["feedgen_console"]
    found = state.get("preview")
    if found is None:
        held = state["registry"]
        found = state["preview"] = PreviewEngine(state["config"], published=lambda: published_from(held))
    return found


def published_from(source) -> DefinitionSet:
    """A registry's published definitions, expanded (validated when they were published)."""
    return definitions_from_documents([("registry", source.published_document())], validate=False)


def published_set() -> DefinitionSet:
    """The published definitions of this app's registry."""
    return published_from(registry())


def _key(text: str) -> str:
    if not KEY.fullmatch(text):
        raise ApiError(400, "malformed key; an offer or customer id is 1-200 letters, digits and . _ @ : + -")
    return text


def _entity(text: str) -> str:
    if text not in ENTITIES:
        raise ApiError(400, f"entity must be one of {', '.join(ENTITIES)}")
    return text


def _field(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not FIELD.fullmatch(value):
        raise ApiError(400, f"{name}: give a field path such as category.top or seller.country")
    return value


def _valid_draft(kind: str, body: dict[str, Any]) -> None:
    problems = registry().validate(kind, body)
    if problems:
        raise ApiError(422, "the definition is invalid; fix it, then preview again", errors=problems_json(problems))


def _no_aggregate(err: NoAggregate, **extra: Any) -> Response:
    return jsonify({**extra, "run_id": None, "as_of": None, "note": str(err)})


def _sections(value: Any) -> tuple[str, ...]:
    if value is None:
        return SECTIONS
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v in SECTIONS for v in value):
        raise ApiError(400, f"body: 'sections' must be a non-empty list of {', '.join(SECTIONS)}")
    return tuple(dict.fromkeys(value))


@route("POST", "/preview", "definitions.edit")
def preview() -> Response:
    data = _body(("kind", "body"), ("base", "sections", "breakdown_field", "change_field", "samples", "expansion"))
    kind, body = _kind(data["kind"]), _definition_body(data)
    base = data.get("base")
    if base is not None:
        if not isinstance(base, str):
            raise ApiError(400, "body: 'base' must be the id of the published definition the draft edits")
        base = _definition_id(base)
    sections = _sections(data.get("sections"))
    samples = data.get("samples", 20)
    if isinstance(samples, bool) or not isinstance(samples, int) or not 0 <= samples <= MAX_SAMPLES:
        raise ApiError(400, f"body: 'samples' must be a whole number from 0 to {MAX_SAMPLES}")
    expansion = data.get("expansion")
    if expansion is not None and not isinstance(expansion, str):
        raise ApiError(400, "body: 'expansion' must be one of the ids the for_each expands to")
    _valid_draft(kind, body)
    try:
        return jsonify(engine().preview(
            kind, body, base=base, sections=sections, samples=samples, expansion=expansion,
            breakdown_field=_field(data.get("breakdown_field"), "breakdown_field"),
            change_field=_field(data.get("change_field"), "change_field")))
    except NoAggregate as err:
        return _no_aggregate(err, definition_id=str(body.get("id")), base=base)


def _stored(definition_id: str) -> Definition:
    """The published version of a definition, else its latest version (a draft)."""
    info = registry().definition(definition_id)
    number = info.published_version or info.latest_version
    version = registry().version(definition_id, number)
    found = draft_definitions(info.kind, version.body)
    if not found:
        raise ApiError(404, f"definition {definition_id!r} expands to no definitions")
    return found[0]


@route("GET", "/explain/{definition_id}/{key}", "definitions.read")
def explain_definition(definition_id: str, key: str) -> Response:
    _query()
    definition_id, key = _definition_id(definition_id), _key(key)
    try:
        d = _stored(definition_id)
    except NotFound:
        raise ApiError(404, f"definition {definition_id!r} not found; list them with GET /api/v1/definitions") from None
    try:
        return jsonify(engine().explain(d.entity, key, [d]))
    except NoAggregate as err:
        return _no_aggregate(err, entity=d.entity, key=key, definitions=[])


@route("POST", "/explain", "definitions.edit")
def explain_draft() -> Response:
    data = _body(("kind", "body", "key"))
    kind, body = _kind(data["kind"]), _definition_body(data)
    if not isinstance(data["key"], str):
        raise ApiError(400, "body: 'key' must be an offer or customer id")
    key = _key(data["key"])
    _valid_draft(kind, body)
    found = draft_definitions(kind, body)
    entity = found[0].entity if found else "offer"
    try:
        return jsonify(engine().explain(entity, key, found, extra_segments=found))
    except NoAggregate as err:
        return _no_aggregate(err, entity=entity, key=key, definitions=[])


@route("GET", "/inspect/{entity}/{key}", "definitions.read")
def inspect_entity(entity: str, key: str) -> Response:
    _query()
    entity, key = _entity(entity), _key(key)
    try:
        return jsonify(engine().explain(entity, key))
    except NoAggregate as err:
        return _no_aggregate(err, entity=entity, key=key, definitions=[])


@route("GET", "/fields/{entity}", "definitions.read")
def list_fields(entity: str) -> Response:
    _query()
    return jsonify(builder.field_list(_entity(entity)))


@route("GET", "/fields/{entity}/values", "definitions.read")
def field_values(entity: str) -> Response:
    q = _query("field")
    entity = _entity(entity)
    name = _field(q.get("field"), "field")
    if name is None:
        raise ApiError(400, "query: field is required, e.g. ?field=brand")
    try:
        return jsonify(engine().frequent_values(entity, name))
    except NoAggregate as err:
        return _no_aggregate(err, entity=entity, field=name, values=[])


@route("POST", "/builder", "definitions.read")
def builder_convert() -> Response:
    """The builder's model, the body and its YAML text from either of them (the two views in step)."""
    data = _body(("kind",), ("model", "yaml", "body"))
    kind = _kind(data["kind"])
    given = [k for k in ("model", "yaml", "body") if data.get(k) is not None]
    if len(given) != 1:
        raise ApiError(400, "body: send exactly one of 'model', 'yaml' or 'body'")
    try:
        if given[0] == "model":
            if not isinstance(data["model"], dict):
                raise ApiError(400, "body: 'model' must be the builder's JSON model")
            body = builder.to_body(data["model"])
        elif given[0] == "yaml":
            if not isinstance(data["yaml"], str) or len(data["yaml"]) > 500_000:
                raise ApiError(400, "body: 'yaml' must be the definition as YAML text")
            body = builder.from_yaml(data["yaml"])
        else:
            body = _definition_body(data)
    except builder.NotModelable as err:
        raise ApiError(422, str(err), errors=[{"definition_id": None, "pointer": err.pointer,
                                               "message": str(err), "fix": None}]) from None
    except (ValueError, KeyError, TypeError) as err:
        raise ApiError(422, f"the model cannot be turned into a definition: {err}", errors=[]) from None
    try:
        model, note = builder.to_model(kind, body), None
    except builder.NotModelable as err:
        model, note = None, str(err)
    # not jsonify: it sorts keys, and the body keeps the order its keys were written in
    answer = {"kind": kind, "body": body, "yaml": builder.to_yaml(body), "model": model, "note": note}
    return Response(json.dumps(answer, ensure_ascii=False), mimetype="application/json")
