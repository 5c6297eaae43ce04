"""Pages for marketers: the definitions list, the editor (rule builder, YAML, preview, publish),
versions with a structural diff, and the item inspector. Each renders the dict its JSON
twin answers; the editor's live parts call the API (preview, validate, builder, explain)."""

from __future__ import annotations

import json
import re

from flask import Response, g, request
from markupsafe import Markup

from feedgen.console import api, api_preview, builder, charts, definitiondata
from feedgen.console.pages import PageError, page, render
from feedgen.console.preview import NoAggregate
from feedgen.console.registry import NotFound

NEW_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
STARTERS = {
    "feed": {"id": "new-feed", "template": "google_merchant_rss",
             "where": {"all": [{"field": "category.top", "eq": "Electronics"}]}},
    "segment": {"id": "new-segment", "where": {"all": [{"history": "orders", "count": {"gte": 1}}]},
                "exports": ["ids_csv"]},
}


def _filters() -> dict[str, str]:
    q = api._query(*definitiondata.LIST_FILTERS)
    return {k: v for k, v in q.items() if v != ""}


@page("/definitions", "definitions.read")
def definitions_page() -> Response:
    filters = _filters()
    data = definitiondata.definitions_overview(api.registry(), api.config().root, filters)
    sparks = {row["definition_id"]: charts.sparkline([t["items"] for t in row["trend"]],
                                                     label=f"{row['definition_id']}: items over the retained runs")
              for row in data["definitions"]}
    return render("console/editor/definitions.html", "definitions", {**data, "sparks": sparks},
                  title="Definitions", api_url="/api/v1/definitions")


def _json_script(value) -> Markup:
    # safe inside <script type="application/json">: no "</" can close the element
    text = json.dumps(value, ensure_ascii=False).replace("</", "<\\/").replace("<!--", "<\\!--")
    return Markup(text)


def _editor(kind: str, body: dict, info: dict | None, version: int | None) -> Response:
    try:
        model, note = builder.to_model(kind, body), None
    except builder.NotModelable as err:
        model, note = None, str(err)
    entity = "customer" if kind == "segment" else "offer"
    if body.get("entity") in ("offer", "customer"):
        entity = body["entity"]
    segments = [d.id for d in api_preview.published_set() if d.kind == "segment" and d.id != body.get("id")]
    actor = g.caller.actor
    state = {
        "kind": kind, "body": body, "model": model, "note": note, "yaml": builder.to_yaml(body),
        "definition": info, "base_version": version, "fields": {e: builder.field_list(e) for e in ("offer", "customer")},
        "entity": entity, "segments": segments,
        "base": info["definition_id"] if info and info.get("published_version") else None,
        "can_edit": actor.can("definitions.edit"), "can_publish": actor.can("definitions.publish"),
    }
    title = f"{kind.title()} {info['definition_id']}" if info else f"New {kind}"
    return render("console/editor/edit.html", "definition", {**state, "state_json": _json_script(state)},
                  title=title, api_url=f"/api/v1/definitions/{info['definition_id']}" if info else None)


@page("/definitions/new", "definitions.edit")
def new_definition_page() -> Response:
    kind = request.args.get("kind", "feed")
    if kind not in STARTERS:
        raise PageError(400, "kind must be feed or segment: /definitions/new?kind=segment")
    return _editor(kind, dict(STARTERS[kind]), None, None)


@page("/definitions/<definition_id>", "definitions.read")
def definition_page(definition_id: str) -> Response:
    definition_id = api._definition_id(definition_id)
    try:
        info = api.registry().definition(definition_id)
    except NotFound:
        raise PageError(404, f"no definition {definition_id!r}; see the list at /definitions") from None
    version = api.registry().version(definition_id, info.latest_version)
    return _editor(info.kind, version.body, info.as_dict(), info.latest_version)


@page("/definitions/<definition_id>/edit", "definitions.read")
def edit_definition_page(definition_id: str) -> Response:
    return definition_page(definition_id)


@page("/definitions/<definition_id>/versions", "definitions.read")
def versions_page(definition_id: str) -> Response:
    q = api._query("a", "b", "published")
    a = api._number(q["a"], "a") if q.get("a") else None
    b = api._number(q["b"], "b") if q.get("b") else None
    data = definitiondata.versions_data(api.registry(), api._definition_id(definition_id), a, b)
    data["published_now"] = api._number(q["published"], "published") if q.get("published") else None
    return render("console/editor/versions.html", "versions", data, title=f"Versions of {definition_id}",
                  api_url=f"/api/v1/definitions/{definition_id}/diff?a={data['a']}&b={data['b']}")


@page("/inspect", "definitions.read")
def inspect_form_page() -> Response:
    entity, key = request.args.get("entity", "offer"), (request.args.get("key") or "").strip()
    if key:
        from flask import redirect

        return redirect(f"/inspect/{api_preview._entity(entity)}/{api_preview._key(key)}", code=303)
    return render("console/editor/inspect.html", "inspect", {"entity": entity, "key": "", "result": None},
                  title="Item inspector")


@page("/inspect/<entity>/<key>", "definitions.read")
def inspect_page(entity: str, key: str) -> Response:
    entity, key = api_preview._entity(entity), api_preview._key(key)
    try:
        result = api_preview.engine().explain(entity, key)
    except NoAggregate as err:
        result = {"run_id": None, "note": str(err), "definitions": [], "found": False}
    return render("console/editor/inspect.html", "inspect", {"entity": entity, "key": key, "result": result},
                  title=f"Inspect {entity} {key}", api_url=f"/api/v1/inspect/{entity}/{key}")


__all__ = ["definition_page", "definitions_page", "edit_definition_page", "inspect_form_page", "inspect_page",
           "new_definition_page", "versions_page"]
