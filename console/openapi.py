"""The OpenAPI 3 document of the console's API, served at ``/api/v1/openapi.json``.

Written by hand, next to the routes it describes; ``document(routes)`` adds to each
operation the permission its route checks (``x-feedgen-permission``), and the tests check
that the document and the routes name the same operations, that every role gets what the
permission table says, and (schemathesis) that every answer has a documented status and
matches its schema.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

DEFINITION_ID = "^[A-Za-z0-9_{}-]{1,200}$"
RUN_ID = "^[A-Za-z0-9-]{1,80}$"
MAX_NUMBER = 2_147_483_647
MAX_TEXT = 2000


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _obj(properties: dict[str, Any], required: Iterable[str] | None = None, *, closed: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "required": list(properties if required is None else required)}
    if not out["required"]:
        del out["required"]
    if closed:
        out["additionalProperties"] = False
    return out


STRING = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}
COUNT = {"type": "integer", "minimum": 0}
VERSION_NUMBER = {"type": "integer", "minimum": 1, "maximum": MAX_NUMBER}
TEXT = {"type": "string", "maxLength": MAX_TEXT}
REASON = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": r"\S"}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": STRING}),
    "Problem": _obj({"definition_id": _nullable(STRING), "pointer": STRING, "message": STRING,
                     "fix": _nullable(STRING)}),
    "Rejected": _obj({"error": STRING, "errors": {"type": "array", "items": _ref("Problem")}}),
    "Conflict": _obj({"error": STRING, "definition_id": STRING,
                      "base_version": _nullable(_ref("Version")), "current_version": _nullable(_ref("Version"))},
                     required=["error"]),
    "DefinitionBody": {"type": "object", "description": "One entry of a feeds: or segments: list, as in YAML "
                                                         "(id, where, template, for_each, ...)"},
    "Version": _obj({
        "definition_id": STRING, "kind": {"type": "string", "enum": ["feed", "segment"]},
        "number": VERSION_NUMBER, "state": {"type": "string", "enum": ["draft", "published", "archived"]},
        "body": _ref("DefinitionBody"), "author": STRING, "created_at": TIME, "message": STRING,
        "base_version": _nullable({"type": "integer"}),
        "expansions": {"type": "array", "items": STRING}, "references": {"type": "array", "items": STRING}}),
    "Definition": _obj({
        "definition_id": STRING, "kind": {"type": "string", "enum": ["feed", "segment"]},
        "status": {"type": "string", "enum": ["draft", "published", "archived"]},
        "latest_version": COUNT, "draft_version": _nullable({"type": "integer"}),
        "published_version": _nullable({"type": "integer"}), "description": _nullable(STRING),
        "expansions": {"type": "array", "items": STRING}, "created_at": TIME, "created_by": STRING,
        "updated_at": TIME, "updated_by": STRING}),
    "DefinitionPage": _obj({"definitions": {"type": "array", "items": _ref("Definition")},
                            "limit": COUNT, "offset": COUNT, "next_offset": _nullable(COUNT)}),
    "VersionList": _obj({"definition_id": STRING, "versions": {"type": "array", "items": {
        "type": "object", "required": ["number", "state", "author", "created_at", "message"],
        "properties": {"number": VERSION_NUMBER, "state": STRING, "author": STRING, "created_at": TIME,
                       "message": STRING, "base_version": _nullable({"type": "integer"})}}}}),
    "Diff": _obj({"definition_id": STRING, "a": VERSION_NUMBER, "b": VERSION_NUMBER, "changes": {
        "type": "array", "items": {"type": "object", "required": ["op", "pointer"], "properties": {
            "op": {"type": "string", "enum": ["added", "removed", "changed"]}, "pointer": STRING,
            "old": {}, "new": {}}}}}),
    "Validation": _obj({"valid": {"type": "boolean"}, "errors": {"type": "array", "items": _ref("Problem")}}),
    "Me": _obj({"name": STRING, "role": STRING, "via": {"type": "string", "enum": ["token", "session"]},
                "permissions": {"type": "array", "items": STRING}, "csrf_token": _nullable(STRING)}),
    "LoggedIn": _obj({"name": STRING, "role": STRING, "csrf_token": STRING}),
    "LoggedOut": _obj({"status": STRING}),
    "RunSummary": _obj({"run_id": STRING, "status": _nullable(STRING), "as_of": _nullable(STRING),
                        "created_at": _nullable(STRING), "definitions": COUNT, "gate": {"type": "object"},
                        "started_by": _nullable(STRING), "timings": {"type": "object"},
                        "resumed_by": {"type": "array", "items": STRING},
                        "items": _nullable(COUNT), "events": _nullable(COUNT), "emitted": _nullable(COUNT),
                        "versions": {"type": "object", "description": "definition id -> pinned version"},
                        "progress": _obj({"in_progress": {"type": "boolean"}, "interrupted": {"type": "boolean"},
                                          "stage": _nullable(STRING),
                                          "stages_done": COUNT, "stages": COUNT, "share": {"type": "number"}})},
                       required=["run_id", "status", "as_of", "created_at", "definitions", "gate"]),
    "RunPage": _obj({"runs": {"type": "array", "items": _ref("RunSummary")}, "limit": COUNT, "offset": COUNT,
                     "next_offset": _nullable(COUNT), "refresh_seconds": _nullable(COUNT)},
                    required=["runs", "limit", "offset", "next_offset"]),
    "RunDetails": _obj({"run": _ref("RunSummary"), "definitions": {"type": "array", "items": {
        "type": "object", "description": "Per definition: items, ops, bytes, excluded by reason, null rates, "
                                         "gate checks (value, threshold, status), trend"}},
        "history": {"type": "array", "items": {"type": "object"}}, "warnings": {"type": "array"},
        "stages": {"type": "object"}, "breaches": {"type": "array"}, "refresh_seconds": _nullable(COUNT)}),
    "RunReview": _obj({"run": _ref("RunSummary"), "status": _nullable(STRING), "definitions": {
        "type": "array", "items": {"type": "object", "description": "A breaching definition: breaches, previous "
                                   "and held counts, removed/updated evidence (breakdown, changed fields, samples)"}},
        "approve_effect": {"type": "object", "description": "files to publish, events per destination"},
        "evidence_kept_at": _nullable(STRING),
        "decided": _nullable({"type": "object"})}),
    "Diagnostics": _obj({"definition_id": STRING, "run_id": STRING, "status": _nullable(STRING),
                         "template": _nullable(STRING), "candidates": COUNT, "items": _nullable(COUNT),
                         "excluded_total": COUNT,
                         "reasons": {"type": "array", "items": _obj({"reason": STRING, "field": STRING, "count": COUNT,
                                                                     "share": _nullable({"type": "number"})})},
                         "warnings": {"type": "array", "items": _obj({"reason": STRING, "field": STRING,
                                                                      "count": COUNT})},
                         "trend": {"type": "array", "items": {"type": "object"}},
                         "samples": {"type": "array", "items": {"type": "object"}},
                         "runs": {"type": "array", "items": STRING}}),
    "Run": {"type": "object", "required": ["run_id"], "description": "The run's run.json as the pipeline wrote it",
            "properties": {"run_id": STRING, "status": STRING}},
    "Decision": _obj({"run_id": STRING, "action": {"type": "string", "enum": ["approve", "reject"]},
                      "status": _nullable(STRING), "gate": _nullable({"type": "object"})}),
    "AuditEntry": _obj({"id": {"type": "integer"}, "at": TIME, "actor": STRING, "action": STRING,
                        "object_type": STRING, "object_id": STRING, "version": _nullable({"type": "integer"}),
                        "detail": {"type": "object"}}),
    "AuditPage": _obj({"entries": {"type": "array", "items": _ref("AuditEntry")},
                       "next_before_id": _nullable({"type": "integer"})}),
}

_ERROR_TEXT = {
    400: "Malformed request: a bad id, number, query parameter or body",
    401: "No credentials, or credentials that do not hold",
    403: "The role may not do this, or a cookie change came without X-CSRF-Token",
    404: "No such definition, version or run",
    409: "A conflict: a stale base version, a state that does not allow it, or a decision already made",
    413: "The body is larger than the console accepts",
    422: "The definition is invalid: every problem, located by a JSON pointer",
    429: "Too many failed logins for this user or address",
    502: "The run was approved and published but its events could not all be sent",
}


def _responses(success: int, schema: str, errors: Iterable[int], description: str) -> dict[str, Any]:
    out: dict[str, Any] = {str(success): {"description": description,
                                          "content": {"application/json": {"schema": _ref(schema)}}}}
    for status in errors:
        body = "Rejected" if status == 422 else "Conflict" if status == 409 else "Error"
        response: dict[str, Any] = {"description": _ERROR_TEXT[status],
                                    "content": {"application/json": {"schema": _ref(body)}}}
        if status == 429:
            response["headers"] = {"Retry-After": {"description": "Seconds until a login may be tried again",
                                                   "schema": {"type": "integer", "minimum": 1}}}
        out[str(status)] = response
    return out


def _path(name: str, pattern: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": pattern, "maxLength": 200}}


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _body(properties: dict[str, Any], required: Iterable[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _obj(properties, required, closed=True)}}}


DEF_ID = _path("definition_id", DEFINITION_ID, "The definition's id (a for_each definition's id has its placeholders)")
RUN = _path("run_id", RUN_ID, "The run's id")
LIMIT = {"type": "integer", "minimum": 1, "maximum": 200}
OFFSET = {"type": "integer", "minimum": 0, "maximum": 10_000_000}
WORD = {"type": "string", "pattern": "^[a-z_]{1,64}$"}
NAME = {"type": "string", "pattern": "^[A-Za-z0-9._@:-]{1,200}$"}
AUTHED = (400, 401, 403)          # every signed-in operation: bad query, no credentials, wrong role
CHANGE = (*AUTHED, 413)           # with a body


def _op(op_id: str, summary: str, responses: dict[str, Any], *, parameters: list | None = None,
        body: dict[str, Any] | None = None, public: bool = False, tag: str = "definitions") -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": [tag], "responses": responses}
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = body
    if public:
        out["security"] = []
    return out


PATHS: dict[str, dict[str, Any]] = {
    "/openapi.json": {"get": _op("openapi_document", "This document", {
        "200": {"description": "The OpenAPI document", "content": {"application/json": {"schema": {"type": "object"}}}}},
        public=True, tag="meta")},
    "/login": {"post": _op("login", "Log in with a password: sets the session cookie, gives the CSRF token",
                           _responses(200, "LoggedIn", (400, 401, 413, 429), "Logged in"),
                           body=_body({"name": {"type": "string", "minLength": 1, "maxLength": 200},
                                       "password": {"type": "string", "maxLength": 1024}}, ["name", "password"]),
                           public=True, tag="session")},
    "/logout": {"post": _op("logout", "End the session (a cookie request needs X-CSRF-Token)",
                            _responses(200, "LoggedOut", (403,), "Logged out"), public=True, tag="session")},
    "/me": {"get": _op("me", "Who is calling, their role and permissions, and the session's CSRF token",
                       _responses(200, "Me", (401,), "The caller"), tag="session")},
    "/definitions": {
        "get": _op("list_definitions", "Definitions by id, filtered, a page at a time",
                   _responses(200, "DefinitionPage", AUTHED, "A page of definitions"), parameters=[
                       _query("kind", {"type": "string", "enum": ["feed", "segment"]}, "feed or segment"),
                       _query("state", {"type": "string", "enum": ["draft", "published", "archived"]},
                              "draft (never published), published or archived"),
                       _query("entity", WORD, "offer or customer"),
                       _query("template", WORD, "A feed template, e.g. google_merchant_rss"),
                       _query("destination", WORD, "One of delivery.destinations, e.g. meta_catalog_batch"),
                       _query("author", NAME, "Who wrote any of its versions"),
                       _query("q", {"type": "string", "maxLength": 200}, "Part of the id"),
                       _query("limit", LIMIT, "Page size (default 50)"),
                       _query("offset", OFFSET, "Definitions to skip (next_offset of the previous page)")]),
        "post": _op("create_definition", "Create a definition: its first draft (validated; nothing is stored if invalid)",
                    _responses(201, "Version", (*CHANGE, 409, 422), "The new draft version"),
                    body=_body({"kind": {"type": "string", "enum": ["feed", "segment"]},
                                "body": _ref("DefinitionBody"), "message": TEXT}, ["kind", "body"])),
    },
    "/definitions/{definition_id}": {"get": _op(
        "get_definition", "One definition: its state and version numbers",
        _responses(200, "Definition", (*AUTHED, 404), "The definition"), parameters=[DEF_ID])},
    "/definitions/{definition_id}/draft": {"put": _op(
        "save_draft", "Save a new draft version, based on base_version (a stale base is refused: 409 with both versions)",
        _responses(200, "Version", (*CHANGE, 404, 409, 422), "The new draft version"), parameters=[DEF_ID],
        body=_body({"body": _ref("DefinitionBody"), "base_version": _nullable(VERSION_NUMBER), "message": TEXT},
                   ["body", "base_version"]))},
    "/definitions/{definition_id}/versions": {"get": _op(
        "list_versions", "Every version, oldest first (without bodies)",
        _responses(200, "VersionList", (*AUTHED, 404), "The versions"), parameters=[DEF_ID])},
    "/definitions/{definition_id}/versions/{number}": {"get": _op(
        "get_version", "One version with its body",
        _responses(200, "Version", (*AUTHED, 404), "The version"), parameters=[
            DEF_ID, {"name": "number", "in": "path", "required": True, "description": "The version number",
                     "schema": VERSION_NUMBER}])},
    "/definitions/{definition_id}/diff": {"get": _op(
        "diff_versions", "What changed from version a to version b, leaf by leaf",
        _responses(200, "Diff", (*AUTHED, 404), "The changes"), parameters=[
            DEF_ID, _query("a", VERSION_NUMBER, "The older version", required=True),
            _query("b", VERSION_NUMBER, "The newer version", required=True)])},
    "/definitions/{definition_id}/publish": {"post": _op(
        "publish", "Publish a draft; refused (422) if the published set would break (in_segment, cycles, ids)",
        _responses(200, "Version", (*CHANGE, 404, 409, 422), "The published version"), parameters=[DEF_ID],
        body=_body({"version": VERSION_NUMBER, "message": TEXT}, ["version"]))},
    "/definitions/{definition_id}/archive": {"post": _op(
        "archive", "Take a definition out of the published set (refused while another refers to it)",
        _responses(200, "Definition", (*CHANGE, 404, 409, 422), "The archived definition"), parameters=[DEF_ID],
        body=_body({"reason": TEXT}, []))},
    "/definitions/{definition_id}/restore": {"post": _op(
        "restore", "An old version's body as a new draft",
        _responses(201, "Version", (*CHANGE, 404, 409, 422), "The new draft version"), parameters=[DEF_ID],
        body=_body({"version": VERSION_NUMBER, "base_version": _nullable(VERSION_NUMBER), "message": TEXT},
                   ["version", "base_version"]))},
    "/validate": {"post": _op(
        "validate", "Validate a definition as a draft: every problem, located; nothing is stored",
        _responses(200, "Validation", CHANGE, "The problems (none: valid)"),
        body=_body({"kind": {"type": "string", "enum": ["feed", "segment"]}, "body": _ref("DefinitionBody")},
                   ["kind", "body"]))},
    "/runs": {"get": _op(
        "list_runs", "Runs under the data root, newest first",
        _responses(200, "RunPage", AUTHED, "A page of runs"), tag="runs", parameters=[
            _query("status", WORD, "held, published, emitted, rejected, failed, ..."),
            _query("since", {"type": "string", "format": "date-time"}, "Started at or after (ISO 8601)"),
            _query("until", {"type": "string", "format": "date-time"}, "Started before (ISO 8601)"),
            _query("limit", LIMIT, "Page size (default 50)"), _query("offset", OFFSET, "Runs to skip")])},
    "/runs/{run_id}/details": {"get": _op(
        "run_details", "The run page's data: per definition items, deltas, bytes, exclusions, null rates and "
                       "gate checks against their thresholds; the last runs for the charts",
        _responses(200, "RunDetails", (*AUTHED, 404), "The run"), tag="runs", parameters=[
            RUN, _query("runs", {"type": "integer", "minimum": 2, "maximum": 50}, "Runs in the charts (default 10)")])},
    "/runs/{run_id}/review": {"get": _op(
        "run_review", "A held run's evidence: per breaching definition the removed and changed items by "
                      "category, seller and brand, with samples; what approving would publish and emit",
        _responses(200, "RunReview", (*AUTHED, 404), "The evidence"), tag="runs", parameters=[
            RUN, _query("samples", {"type": "integer", "minimum": 1, "maximum": 50}, "Samples per list (default 5)")])},
    "/definitions/{definition_id}/diagnostics": {"get": _op(
        "definition_diagnostics", "A feed's diagnostics: items excluded by reason with counts, trend over runs, "
                                  "samples with the offending value, warnings that did not exclude",
        _responses(200, "Diagnostics", (*AUTHED, 404), "The diagnostics"), tag="runs", parameters=[
            DEF_ID, _query("run", {"type": "string", "pattern": RUN_ID, "maxLength": 80},
                           "The run (default: the latest that generated it)"),
            _query("runs", {"type": "integer", "minimum": 1, "maximum": 50}, "Runs in the trend (default 10)")])},
    "/runs/{run_id}": {"get": _op(
        "get_run", "A run's run.json", _responses(200, "Run", (*AUTHED, 404), "The run"), tag="runs",
        parameters=[RUN])},
    "/runs/{run_id}/approve": {"post": _op(
        "approve_run", "Approve a held run (publish and emit it); the reason goes to run.json and the audit log",
        _responses(200, "Decision", (*CHANGE, 404, 409, 502), "Approved"), tag="runs", parameters=[RUN],
        body=_body({"reason": REASON}, ["reason"]))},
    "/runs/{run_id}/reject": {"post": _op(
        "reject_run", "Reject a held run (its files are discarded); the reason goes to run.json and the audit log",
        _responses(200, "Decision", (*CHANGE, 404, 409), "Rejected"), tag="runs", parameters=[RUN],
        body=_body({"reason": REASON}, ["reason"]))},
    "/audit": {"get": _op(
        "audit", "The audit log, newest first; page back with before_id",
        _responses(200, "AuditPage", AUTHED, "A page of entries"), tag="audit", parameters=[
            _query("actor", NAME, "Who: a user, os:USER (the CLI) or admin-token (the file server)"),
            _query("object_type", WORD, "definition, user or run"),
            _query("object_id", {"type": "string", "pattern": "^[A-Za-z0-9._@:{}-]{1,200}$"}, "The object's id"),
            _query("action", {"type": "string", "pattern": "^[a-z_.]{1,64}$"}, "e.g. definition.publish, run.approve"),
            _query("since", {"type": "string", "format": "date-time"}, "From this time (ISO 8601)"),
            _query("until", {"type": "string", "format": "date-time"}, "Before this time (ISO 8601)"),
            _query("before_id", {"type": "integer", "minimum": 1, "maximum": MAX_NUMBER},
                   "Entries older than this id (next_before_id of the previous page)"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Page size (default 100)")])},
}


# -- preview, explain and the builder's field list (console/api_preview.py) -------------------

KEY_PATH = {"name": "key", "in": "path", "required": True, "description": "An offer or customer id",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9._@:+-]{1,200}$", "maxLength": 200}}
ENTITY_PATH = {"name": "entity", "in": "path", "required": True, "description": "offer or customer",
               "schema": {"type": "string", "enum": ["offer", "customer"]}}
FIELD_PATH = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z0-9_ -]{1,64}){0,4}$"}
SECTION_NAMES = ["count", "breakdown", "samples", "excluded", "change", "dependents", "gates", "backtest"]
_ANSWERED_ON = {"run_id": _nullable(STRING), "as_of": _nullable(STRING),
                "note": {"type": "string", "description": "Set when there is no aggregate yet"}}

SCHEMAS.update({
    "Preview": {"type": "object", "required": ["run_id", "as_of"], "properties": {
        **_ANSWERED_ON, "definition_id": STRING, "aggregate": {"type": "object"},
        "count": COUNT, "items": {"type": "integer"}, "breakdown": {"type": "object"},
        "samples": {"type": "array", "items": {"type": "object"}}, "excluded": {"type": "object"},
        "change": {"type": "object"}, "dependents": {"type": "array", "items": {"type": "object"}},
        "gates": {"type": "object"}, "backtest": {"type": "array", "items": {"type": "object"}},
        "timings": {"type": "object"}},
        "description": "A draft on the latest aggregate: the sections asked for, and the run_id/as_of of the "
                       "aggregate they were computed on"},
    "Explanation": {"type": "object", "required": ["run_id", "as_of"], "properties": {
        **_ANSWERED_ON, "entity": STRING, "key": STRING, "found": {"type": "boolean"},
        "definitions": {"type": "array", "items": {"type": "object", "properties": {
            "definition_id": STRING, "in": {"type": "boolean"},
            "failing": {"type": "array", "items": {"type": "object"}}, "tree": {"type": "object"},
            "rendered": {"type": "object"}}}}}},
    "Builder": _obj({"kind": STRING, "body": {"type": "object"}, "yaml": STRING, "model": _nullable({"type": "object"}),
                     "note": _nullable(STRING)}),
    "FieldList": _obj({"entity": STRING, "key": STRING, "fields": {"type": "array", "items": {"type": "object"}},
                       "histories": {"type": "array", "items": {"type": "object"}}, "operators": {"type": "object"},
                       "templates": {"type": "array", "items": STRING}, "exports": {"type": "array", "items": STRING}}),
    "FieldValues": {"type": "object", "required": ["values"], "properties": {
        **_ANSWERED_ON, "entity": STRING, "field": STRING,
        "values": {"type": "array", "items": {"type": "object", "properties": {"value": {}, "count": COUNT}}}}},
})

_DRAFT = {"kind": {"type": "string", "enum": ["feed", "segment"]}, "body": _ref("DefinitionBody")}

PATHS.update({
    "/preview": {"post": _op(
        "preview", "A draft's effect on the latest aggregate: count, breakdown, rendered samples, excluded items, "
                   "the change against the published output of `base`, dependents, gate forecast, backtest",
        _responses(200, "Preview", (*CHANGE, 422), "The sections asked for (run_id null and a note: no aggregate yet)"),
        body=_body({**_DRAFT, "base": {"type": "string", "pattern": DEFINITION_ID, "maxLength": 200},
                    "sections": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": SECTION_NAMES}},
                    "breakdown_field": FIELD_PATH, "change_field": FIELD_PATH,
                    "samples": {"type": "integer", "minimum": 0, "maximum": 100},
                    "expansion": {"type": "string", "maxLength": 200}}, ["kind", "body"]))},
    "/explain/{definition_id}/{key}": {"get": _op(
        "explain_definition", "Whether an entity is in a definition (its published version, else its draft), "
                              "the failing clauses with their values, and for a feed the item as rendered",
        _responses(200, "Explanation", (*AUTHED, 404), "The explanation"), parameters=[DEF_ID, KEY_PATH])},
    "/explain": {"post": _op(
        "explain_draft", "Explain a draft body for one entity",
        _responses(200, "Explanation", (*CHANGE, 422), "The explanation"),
        body=_body({**_DRAFT, "key": {"type": "string", "pattern": "^[A-Za-z0-9._@:+-]{1,200}$"}},
                   ["kind", "body", "key"]))},
    "/inspect/{entity}/{key}": {"get": _op(
        "inspect_entity", "Every published definition of the entity: in or not, and why",
        _responses(200, "Explanation", AUTHED, "The explanation per definition"), parameters=[ENTITY_PATH, KEY_PATH])},
    "/builder": {"post": _op(
        "builder_convert", "The rule builder's model, the definition body and its YAML text, from any one of them",
        _responses(200, "Builder", (*CHANGE, 422), "The three views of the definition (model null: the YAML "
                                                   "view only, note says why)"),
        body=_body({"kind": {"type": "string", "enum": ["feed", "segment"]}, "model": {"type": "object"},
                    "yaml": {"type": "string", "maxLength": 500000}, "body": _ref("DefinitionBody")}, ["kind"]))},
    "/fields/{entity}": {"get": _op(
        "list_fields", "The aggregate's fields with their types and the operators valid for each (the builder's picker)",
        _responses(200, "FieldList", AUTHED, "The fields"), parameters=[ENTITY_PATH])},
    "/fields/{entity}/values": {"get": _op(
        "field_values", "The most frequent values of a field in the latest aggregate",
        _responses(200, "FieldValues", AUTHED, "The values, most frequent first"), parameters=[
            ENTITY_PATH, _query("field", FIELD_PATH, "A field path, e.g. brand or seller.country", required=True)])},
})


def document(routes: Iterable[Any]) -> dict[str, Any]:
    """The document, each operation marked with the permission its route checks."""
    paths = copy.deepcopy(PATHS)
    for r in routes:
        operation = paths.get(r.path, {}).get(r.method.lower())
        if operation is not None:
            operation["x-feedgen-permission"] = r.permission
    return {
        "openapi": "3.0.3",
        "info": {"title": "feedgen console API", "version": "1",
                 "description": "Definitions registry, runs and audit log. Authenticate with an API token "
                                "('Authorization: Bearer <token>', from 'feedgen users token NAME') or with the "
                                "session cookie from POST /login; a change made with the cookie needs the "
                                "X-CSRF-Token header. Errors are {\"error\": sentence}."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token"},
                "session": {"type": "apiKey", "in": "cookie", "name": "feedgen_console",
                            "description": "The session cookie from POST /login (changes need X-CSRF-Token)"},
            },
        },
    }
