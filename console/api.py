"""The console's JSON API under ``/api/v1`` (the OpenAPI document is ``console/openapi.py``).

Every route is declared with :func:`route`, naming the permission it needs from
``feedgen.console.registry.auth.PERMISSIONS`` (``PUBLIC``: no credentials; ``SIGNED_IN``:
any user). ``ROUTES`` is the table the OpenAPI document and the role tests are checked
against. Every id, number and date a request carries is matched in full before use
(``feedgen.fileserver.params``); request bodies are JSON objects with known keys only.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from feedgen.console import openapi, rundata, sessions
from feedgen.console.registry import (
    PERMISSIONS,
    DefinitionRejected,
    NotFound,
    Registry,
    StaleVersion,
    VersionInfo,
)
from feedgen.console.registry.auth import require
from feedgen.console.registry.models import STATES
from feedgen.console.registry.service import KINDS
from feedgen.core.errors import BadInput, RunFailed, RunLocked
from feedgen.core.runs import read_run
from feedgen.fileserver import params
from feedgen.jobs import lifecycle

PUBLIC, SIGNED_IN = "public", "signed-in"
DEFINITION_ID = re.compile(r"[A-Za-z0-9_{}-]{1,200}")
NAME = re.compile(r"[A-Za-z0-9._@:-]{1,200}")
OBJECT_ID = re.compile(r"[A-Za-z0-9._@:{}-]{1,200}")
WORD = re.compile(r"[a-z_]{1,64}")
MAX_NUMBER = 2_147_483_647
MAX_DEPTH = 64               # nesting of a request body (a definition is far shallower)
MAX_TEXT = 2000              # messages and reasons
DECISION_WAIT_S = 5.0        # a decision waits this long for another one holding the root's lock

api = Blueprint("api", __name__, url_prefix="/api/v1")


class ApiError(Exception):
    """An answer other than success: status, a sentence, and optional extra fields."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass(frozen=True)
class Route:
    method: str
    path: str                 # as in the OpenAPI document: /definitions/{definition_id}
    permission: str           # a PERMISSIONS key, PUBLIC or SIGNED_IN
    operation_id: str


ROUTES: list[Route] = []


def route(method: str, path: str, permission: str) -> Callable:
    """Register a view under ``/api/v1{path}``; the caller is authenticated and checked first."""
    if permission not in (PUBLIC, SIGNED_IN) and permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")

    def wrap(fn: Callable) -> Callable:
        ROUTES.append(Route(method, path, permission, fn.__name__))

        def view(**kwargs: Any) -> Any:
            if permission != PUBLIC:
                g.caller = _signed_in()
                if permission != SIGNED_IN:
                    require(g.caller.actor, permission)
            return fn(**kwargs)

        api.add_url_rule(re.sub(r"\{(\w+)\}", r"<\1>", path), fn.__name__, view, methods=[method])
        return fn

    return wrap


def _signed_in() -> sessions.Caller:
    found = sessions.caller(registry())
    if found is None:
        raise sessions.Unauthenticated("sign in: send an API token as 'Authorization: Bearer <token>', "
                                       "or log in with POST /api/v1/login")
    return found


def registry() -> Registry:
    return current_app.extensions["feedgen_console"]["registry"]


def config() -> Any:
    return current_app.extensions["feedgen_console"]["config"]


# -- request parsing ---------------------------------------------------------------------

def _query(*allowed: str) -> dict[str, str]:
    """The query parameters, each given at most once; an unknown one is refused."""
    try:
        raw = params.query(request.environ.get("QUERY_STRING"))
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise ApiError(400, f"query: unknown parameter {unknown[0]!r}; use "
                                + (", ".join(allowed) if allowed else "none"))
        return {name: value for name in allowed if (value := params.single(raw, name)) is not None}
    except params.BadParameter as err:
        raise ApiError(400, str(err)) from None


def _number(text: str | None, name: str, *, default: int | None = None, low: int = 1,
            high: int = MAX_NUMBER) -> int:
    if text is None and default is None:
        raise ApiError(400, f"{name}: required; give a whole number from {low} to {high}")
    try:
        return params.number(text, name, default=default if default is not None else low, low=low, high=high)
    except params.BadParameter as err:
        raise ApiError(400, str(err).replace("query: ", "")) from None


def _word(query: dict[str, str], name: str, pattern: re.Pattern = WORD, choices: tuple[str, ...] = ()) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    if choices and value not in choices:
        raise ApiError(400, f"query: {name} must be one of {', '.join(choices)}, got {value[:40]!r}")
    if not pattern.fullmatch(value):
        raise ApiError(400, f"query: {name} {value[:40]!r} is malformed; it must match {pattern.pattern}")
    return value


def _when(query: dict[str, str], name: str) -> datetime | None:
    value = query.get(name)
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9:.]{2,15}(Z|[+-][0-9]{2}:?[0-9]{2})?)?", value):
        raise ApiError(400, f"query: {name} must be an ISO 8601 date or time, e.g. 2026-11-02 or "
                            f"2026-11-02T03:00:00Z, got {value[:40]!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"query: {name} {value[:40]!r} is not a valid date or time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _definition_id(text: str) -> str:
    if not DEFINITION_ID.fullmatch(text):
        raise ApiError(400, "malformed definition id; ids are 1-200 letters, digits, '-', '_' and "
                            "for_each placeholders such as {store_id}")
    return text


def _run_id(text: str) -> str:
    if not params.RUN_ID.fullmatch(text):
        raise ApiError(400, "malformed run id; run ids are 1-80 ASCII letters, digits and '-'; "
                            "list runs with GET /api/v1/runs")
    return text


def _body(required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """The request's JSON object, with exactly the keys allowed."""
    raw = request.get_data(cache=True)
    try:
        data = params.json_loads(raw) if raw else None
    except params.DuplicateKey as err:
        raise ApiError(400, f"body: key {err.key[:40]!r} is given twice in one object; give each key once") from None
    except (ValueError, RecursionError):
        raise ApiError(400, "body: not valid JSON; send a JSON object with Content-Type: application/json") from None
    if not isinstance(data, dict):
        keys = ", ".join((*required, *optional))
        raise ApiError(400, f"body: send a JSON object with the keys {keys}")
    if _too_deep(data):
        raise ApiError(400, f"body: nested more than {MAX_DEPTH} levels deep")
    allowed = (*required, *optional)
    for key in data:
        if key not in allowed:
            raise ApiError(400, f"body: unknown key {key[:40]!r}; the keys are {', '.join(allowed)}")
    for key in required:
        if key not in data:
            raise ApiError(400, f"body: {key!r} is required")
    return data


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def _text(data: dict[str, Any], key: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        need = "a non-empty text" if required else "a text"
        raise ApiError(400, f"body: {key!r} must be {need} (at most {MAX_TEXT} characters)")
    if len(value) > MAX_TEXT:
        raise ApiError(400, f"body: {key!r} is longer than {MAX_TEXT} characters")
    return value


def _version_field(data: dict[str, Any], key: str, *, nullable: bool) -> int | None:
    value = data.get(key)
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not (0 if nullable else 1) <= value <= MAX_NUMBER:
        what = "a version number or null (a new definition)" if nullable else "a version number (1 or more)"
        raise ApiError(400, f"body: {key!r} must be {what}")
    return value or None


def _kind(value: Any) -> str:
    if value not in KINDS:
        raise ApiError(400, f"body: 'kind' must be one of {', '.join(KINDS)}")
    return value


def _definition_body(data: dict[str, Any]) -> dict[str, Any]:
    value = data.get("body")
    if not isinstance(value, dict):
        raise ApiError(400, "body: 'body' must be the definition as a JSON object (id, where, ...)")
    return value


# -- answers -----------------------------------------------------------------------------

def problems_json(problems: list) -> list[dict[str, Any]]:
    """Located problems as the API gives them: the same message and fix as ``feedgen validate``."""
    return [{"definition_id": p.key or None, "pointer": p.pointer, "message": p.message, "fix": p.fix or None}
            for p in problems]


def rejected(err: DefinitionRejected) -> ApiError:
    return ApiError(422, str(err).splitlines()[0].rstrip(":"), errors=problems_json(err.problems))


def stale(err: StaleVersion) -> ApiError:
    def version_or_none(number: int | None) -> dict[str, Any] | None:
        if not number:
            return None
        try:
            return registry().version(err.definition_id, number).as_dict()
        except NotFound:
            return None

    return ApiError(409, str(err), definition_id=err.definition_id,
                    base_version=version_or_none(err.base_version),
                    current_version=version_or_none(err.current_version))


def _created(version: VersionInfo) -> Response:
    response = jsonify(version.as_dict())
    response.status_code = 201
    response.headers["Location"] = f"{request.script_root}/api/v1/definitions/{version.definition_id}/versions/{version.number}"
    return response


def _saving(action: Callable[[], VersionInfo]) -> VersionInfo:
    try:
        return action()
    except DefinitionRejected as err:
        raise rejected(err) from None
    except StaleVersion as err:
        raise stale(err) from None


@route("GET", "/openapi.json", PUBLIC)
def openapi_document() -> Response:
    return jsonify(openapi.document(ROUTES))


# -- session -----------------------------------------------------------------------------

@route("POST", "/login", PUBLIC)
def login() -> Response:
    data = _body(("name", "password"))
    name, password = data["name"], data["password"]
    if not isinstance(name, str) or not isinstance(password, str) or not name or len(name) > 200 \
            or len(password) > 1024:
        raise ApiError(400, "body: 'name' and 'password' must be texts (at most 200 and 1024 characters)")
    actor = registry().accounts.login(name, password, request.remote_addr or "-")
    csrf = sessions.start_session(actor)
    return jsonify({"name": actor.name, "role": actor.role, "csrf_token": csrf})


@route("POST", "/logout", PUBLIC)
def logout() -> Response:
    sessions.end_session()
    return jsonify({"status": "logged out"})


@route("GET", "/me", SIGNED_IN)
def me() -> Response:
    c: sessions.Caller = g.caller
    allowed = sorted(p for p in PERMISSIONS if c.actor.can(p))
    return jsonify({"name": c.actor.name, "role": c.actor.role, "via": c.via, "permissions": allowed,
                    "csrf_token": c.csrf_token})


# -- definitions -------------------------------------------------------------------------

@route("GET", "/definitions", "definitions.read")
def list_definitions() -> Response:
    q = _query("kind", "state", "entity", "template", "destination", "author", "q", "limit", "offset")
    limit = _number(q.get("limit"), "limit", default=50, low=1, high=200)
    offset = _number(q.get("offset"), "offset", default=0, low=0, high=10_000_000)
    search = q.get("q")
    if search is not None and (len(search) > 200 or not search.isprintable()):
        raise ApiError(400, "query: q must be at most 200 printable characters")
    author = _word(q, "author", NAME)
    found = registry().list_definitions(
        kind=_word(q, "kind", choices=KINDS), status=_word(q, "state", choices=STATES), search=search or None,
        entity=_word(q, "entity"), template=_word(q, "template"), destination=_word(q, "destination"),
        author=author, offset=offset, limit=limit + 1)
    more = len(found) > limit
    return jsonify({"definitions": [d.as_dict() for d in found[:limit]], "limit": limit, "offset": offset,
                    "next_offset": offset + limit if more else None})


@route("POST", "/definitions", "definitions.edit")
def create_definition() -> Response:
    data = _body(("kind", "body"), ("message",))
    kind, body, message = _kind(data["kind"]), _definition_body(data), _text(data, "message")
    version = _saving(lambda: registry().save_draft(g.caller.actor, kind, body, base_version=None, message=message))
    return _created(version)


@route("GET", "/definitions/{definition_id}", "definitions.read")
def get_definition(definition_id: str) -> Response:
    _query()
    return jsonify(registry().definition(_definition_id(definition_id)).as_dict())


@route("PUT", "/definitions/{definition_id}/draft", "definitions.edit")
def save_draft(definition_id: str) -> Response:
    definition_id = _definition_id(definition_id)
    data = _body(("body", "base_version"), ("message",))
    body, message = _definition_body(data), _text(data, "message")
    base = _version_field(data, "base_version", nullable=True)
    kind = registry().definition(definition_id).kind
    if body.get("id") != definition_id:
        raise ApiError(422, "the body's id differs from the definition being saved", errors=[{
            "definition_id": definition_id, "pointer": "/id",
            "message": f"id {str(body.get('id'))[:200]!r} is not {definition_id!r}",
            "fix": f"keep id: {definition_id} (to make a new definition, POST /api/v1/definitions)"}])
    version = _saving(lambda: registry().save_draft(g.caller.actor, kind, body, base_version=base, message=message))
    return jsonify(version.as_dict())


@route("GET", "/definitions/{definition_id}/versions", "definitions.read")
def list_versions(definition_id: str) -> Response:
    _query()
    versions = registry().versions(_definition_id(definition_id))
    summaries = [{k: v for k, v in version.as_dict().items() if k != "body"} for version in versions]
    return jsonify({"definition_id": definition_id, "versions": summaries})


@route("GET", "/definitions/{definition_id}/versions/{number}", "definitions.read")
def get_version(definition_id: str, number: str) -> Response:
    _query()
    version = registry().version(_definition_id(definition_id), _number(number, "version number"))
    return jsonify(version.as_dict())


@route("GET", "/definitions/{definition_id}/diff", "definitions.read")
def diff_versions(definition_id: str) -> Response:
    q = _query("a", "b")
    a, b = _number(q.get("a"), "a"), _number(q.get("b"), "b")
    changes = registry().diff(_definition_id(definition_id), a, b)
    return jsonify({"definition_id": definition_id, "a": a, "b": b, "changes": [c.as_dict() for c in changes]})


@route("POST", "/definitions/{definition_id}/publish", "definitions.publish")
def publish(definition_id: str) -> Response:
    definition_id = _definition_id(definition_id)
    data = _body(("version",), ("message",))
    number, message = _version_field(data, "version", nullable=False), _text(data, "message")
    version = _saving(lambda: registry().publish(g.caller.actor, definition_id, number, message=message))
    return jsonify(version.as_dict())


@route("POST", "/definitions/{definition_id}/archive", "definitions.archive")
def archive(definition_id: str) -> Response:
    definition_id = _definition_id(definition_id)
    reason = _text(_body((), ("reason",)), "reason")
    try:
        info = registry().archive(g.caller.actor, definition_id, reason=reason)
    except DefinitionRejected as err:
        raise rejected(err) from None
    return jsonify(info.as_dict())


@route("POST", "/definitions/{definition_id}/restore", "definitions.edit")
def restore(definition_id: str) -> Response:
    definition_id = _definition_id(definition_id)
    data = _body(("version", "base_version"), ("message",))
    number = _version_field(data, "version", nullable=False)
    base = _version_field(data, "base_version", nullable=True)
    message = _text(data, "message")
    version = _saving(lambda: registry().restore(g.caller.actor, definition_id, number, base, message=message))
    return _created(version)


@route("POST", "/validate", "definitions.edit")
def validate() -> Response:
    data = _body(("kind", "body"))
    kind, body = _kind(data["kind"]), _definition_body(data)
    problems = registry().validate(kind, body)
    return jsonify({"valid": not problems, "errors": problems_json(problems)})


# -- runs --------------------------------------------------------------------------------

def _read(run_id: str) -> dict[str, Any] | None:
    try:
        record = read_run(config().root, run_id)
    except (BadInput, ValueError, OSError):
        return None
    return record if isinstance(record, dict) else None


RUNS_QUERY = ("status", "since", "until", "limit", "offset")


@route("GET", "/runs", "runs.read")
def list_runs() -> Response:
    return jsonify(runs_data(_query(*RUNS_QUERY)))


def runs_data(q: dict[str, str]) -> dict[str, Any]:
    """A page of runs, newest first, by status and start time (the runs page and ``GET /api/v1/runs``)."""
    limit = _number(q.get("limit"), "limit", default=50, low=1, high=200)
    offset = _number(q.get("offset"), "offset", default=0, low=0, high=1_000_000)
    return rundata.runs(config().root, status=_word(q, "status"), since=_when(q, "since"),
                        until=_when(q, "until"), limit=limit, offset=offset,
                        refresh_seconds=rundata.refresh_seconds(config()))


@route("GET", "/runs/{run_id}", "runs.read")
def get_run(run_id: str) -> Response:
    _query()
    record = _read(_run_id(run_id))
    if record is None:
        raise ApiError(404, f"run {run_id!r} not found; list runs with GET /api/v1/runs")
    return jsonify(record)


def _decide(run_id: str, action: str) -> Response:
    run_id = _run_id(run_id)
    reason = _text(_body(("reason",)), "reason", required=True)
    if _read(run_id) is None:
        raise ApiError(404, f"run {run_id!r} not found; list runs with GET /api/v1/runs")
    return jsonify(decide_run(run_id, action, g.caller.actor.name, reason))


def decide_run(run_id: str, action: str, by: str, reason: str) -> dict[str, Any]:
    """Approve or reject a held run through ``feedgen.jobs.lifecycle`` (as the CLI does); one
    decision only: a second one, even at the same moment, is refused with who decided first (409)."""
    decide = lifecycle.approve_run if action == "approve" else lifecycle.reject_run
    deadline = time.monotonic() + DECISION_WAIT_S
    while True:
        try:
            decide(config(), run_id, by=by, reason=reason, registry=registry())
            break
        except RunLocked as err:
            # another decision (or a run) holds the root: wait for it briefly, then say who
            if time.monotonic() > deadline:
                raise ApiError(409, str(err)) from None
            time.sleep(0.05)
        except BadInput as err:
            raise ApiError(409, str(err)) from None
        except RunFailed as err:
            raise ApiError(502, f"run {run_id} was approved and published, but its events were not all sent: "
                                f"{err}; send them again with 'feedgen emit {run_id}'") from None
    record = _read(run_id) or {}
    return {"run_id": run_id, "action": action, "status": record.get("status"), "gate": record.get("gate")}


def _found(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return action()
    except rundata.NotFoundError as err:
        raise ApiError(404, str(err)) from None


def run_view_data(run_id: str, q: dict[str, str]) -> dict[str, Any]:
    """The run page's data: per definition counts, deltas, checks; history for the charts."""
    run_id = _run_id(run_id)
    back = _number(q.get("runs"), "runs", default=10, low=2, high=50)
    return _found(lambda: rundata.run_view(config(), run_id, back))


def review_data(run_id: str, q: dict[str, str]) -> dict[str, Any]:
    """The held-run review's data: the evidence per breaching definition, what approving does."""
    run_id = _run_id(run_id)
    samples = _number(q.get("samples"), "samples", default=5, low=1, high=50)
    return _found(lambda: rundata.review_view(config(), run_id, samples))


def diagnostics_data(definition_id: str, q: dict[str, str]) -> dict[str, Any]:
    """A feed's diagnostics: exclusions by reason, trend, samples, warnings."""
    definition_id = _definition_id(definition_id)
    run = _run_id(q["run"]) if "run" in q else None
    back = _number(q.get("runs"), "runs", default=10, low=1, high=50)
    return _found(lambda: rundata.diagnostics_view(config(), definition_id, run, back))


@route("GET", "/runs/{run_id}/details", "runs.read")
def run_details(run_id: str) -> Response:
    return jsonify(run_view_data(run_id, _query("runs")))


@route("GET", "/runs/{run_id}/review", "runs.read")
def run_review(run_id: str) -> Response:
    return jsonify(review_data(run_id, _query("samples")))


@route("GET", "/definitions/{definition_id}/diagnostics", "runs.read")
def definition_diagnostics(definition_id: str) -> Response:
    return jsonify(diagnostics_data(definition_id, _query("run", "runs")))


@route("POST", "/runs/{run_id}/approve", "runs.decide")
def approve_run(run_id: str) -> Response:
    return _decide(run_id, "approve")


@route("POST", "/runs/{run_id}/reject", "runs.decide")
def reject_run(run_id: str) -> Response:
    return _decide(run_id, "reject")


# -- audit -------------------------------------------------------------------------------

AUDIT_QUERY = ("actor", "object_type", "object_id", "action", "since", "until", "before_id", "limit")


@route("GET", "/audit", "audit.read")
def audit() -> Response:
    return jsonify(audit_data(_query(*AUDIT_QUERY)))


def audit_data(q: dict[str, str]) -> dict[str, Any]:
    """A page of the audit log, newest first (the audit page and ``GET /api/v1/audit``)."""
    limit = _number(q.get("limit"), "limit", default=100, low=1, high=500)
    before = _number(q.get("before_id"), "before_id") if "before_id" in q else None
    entries = registry().audit(
        actor=_word(q, "actor", NAME), object_type=_word(q, "object_type"),
        object_id=_word(q, "object_id", OBJECT_ID), action=_word(q, "action", re.compile(r"[a-z_.]{1,64}")),
        since=_when(q, "since"), until=_when(q, "until"), before_id=before, limit=limit)
    more = len(entries) == limit
    return {"entries": [e.as_dict() for e in entries],
            "next_before_id": entries[-1].id if more and entries else None}


def retry_after_seconds(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))
