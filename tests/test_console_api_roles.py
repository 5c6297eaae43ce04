"""Every role against every endpoint, generated from the OpenAPI document and the permission table:
allowed calls succeed, the others are 403, and anonymous calls are 401."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from feedgen.console import api
from feedgen.console.registry import ROLES, can
from tests.console_support import Console, start_console
from tests.registry_support import ADMIN, BUYERS, body

_n = itertools.count(1)
# operationId -> (console -> (method, path, json body or None)); a fresh situation per call,
# so that each allowed call can succeed.
Request = tuple[str, str, Any]


def _fresh(console: Console, prefix: str, publish: bool) -> str:
    definition_id = f"{prefix}-{next(_n)}"
    draft = console.registry.save_draft(ADMIN, "segment", body(BUYERS, id=definition_id), None, "setup")
    if publish:
        console.registry.publish(ADMIN, definition_id, draft.number)
    return definition_id


def _save_draft(c: Console) -> Request:
    head = c.registry.definition("buyers").latest_version
    return "PUT", "/definitions/buyers/draft", {"body": body(BUYERS, description=f"edit {next(_n)}"),
                                                 "base_version": head}


REQUESTS: dict[str, Callable[[Console], Request]] = {
    "openapi_document": lambda c: ("GET", "/openapi.json", None),
    "login": lambda c: ("POST", "/login", {"name": "viewer", "password": "password-viewer"}),
    "logout": lambda c: ("POST", "/logout", None),
    "me": lambda c: ("GET", "/me", None),
    "list_definitions": lambda c: ("GET", "/definitions?state=published&limit=5", None),
    "create_definition": lambda c: ("POST", "/definitions", {
        "kind": "segment", "body": body(BUYERS, id=f"new-{next(_n)}"), "message": "first"}),
    "get_definition": lambda c: ("GET", "/definitions/buyers", None),
    "save_draft": _save_draft,
    "list_versions": lambda c: ("GET", "/definitions/buyers/versions", None),
    "get_version": lambda c: ("GET", "/definitions/buyers/versions/1", None),
    "diff_versions": lambda c: ("GET", "/definitions/buyers/diff?a=1&b=1", None),
    "publish": lambda c: ("POST", f"/definitions/{_fresh(c, 'pub', False)}/publish", {"version": 1}),
    "archive": lambda c: ("POST", f"/definitions/{_fresh(c, 'arc', True)}/archive", {"reason": "done"}),
    "restore": lambda c: ("POST", f"/definitions/{_fresh(c, 'res', True)}/restore",
                          {"version": 1, "base_version": 1}),
    "validate": lambda c: ("POST", "/validate", {"kind": "segment", "body": BUYERS}),
    "list_runs": lambda c: ("GET", "/runs", None),
    "get_run": lambda c: ("GET", f"/runs/{c.held_run('show')}", None),
    "approve_run": lambda c: ("POST", f"/runs/{c.held_run('approve')}/approve", {"reason": "checked"}),
    "reject_run": lambda c: ("POST", f"/runs/{c.held_run('reject')}/reject", {"reason": "bad data"}),
    "audit": lambda c: ("GET", "/audit?limit=10", None),
    "run_details": lambda c: ("GET", f"/runs/{c.held_run('details')}/details", None),
    "run_review": lambda c: ("GET", f"/runs/{c.held_run('review')}/review", None),
    "definition_diagnostics": lambda c: ("GET", f"/definitions/feed-x/diagnostics?run={c.held_run('diag')}", None),
    # no aggregate under this root: the preview answers with a note, without starting Spark
    "preview": lambda c: ("POST", "/preview", {"kind": "segment", "body": BUYERS, "sections": ["count"]}),
    "explain_definition": lambda c: ("GET", "/explain/buyers/c-1", None),
    "explain_draft": lambda c: ("POST", "/explain", {"kind": "segment", "body": BUYERS, "key": "c-1"}),
    "inspect_entity": lambda c: ("GET", "/inspect/customer/c-1", None),
    "list_fields": lambda c: ("GET", "/fields/offer", None),
    "field_values": lambda c: ("GET", "/fields/offer/values?field=brand", None),
    "builder_convert": lambda c: ("POST", "/builder", {"kind": "segment", "yaml": "id: buyers\nwhere: {field: city, eq: X}\n"}),
}


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    live = start_console(tmp_path_factory.mktemp("roles"))
    draft = live.registry.save_draft(ADMIN, "segment", BUYERS, None, "setup")
    live.registry.publish(ADMIN, "buyers", draft.number)
    yield live
    live.stop()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in document["paths"].items() for method, op in item.items()]


def _expected(permission: str, role: str | None) -> str:
    if permission == api.PUBLIC:
        return "ok"
    if role is None:
        return "401"
    return "ok" if permission == api.SIGNED_IN or can(role, permission) else "403"


def test_the_document_the_routes_and_the_server_name_the_same_operations(console):
    document = console.call("GET", "/openapi.json").json()
    documented = {(m, p, op["operationId"], op["x-feedgen-permission"]) for m, p, op in _operations(document)}
    declared = {(r.method, r.path, r.operation_id, r.permission) for r in api.ROUTES}
    assert documented == declared
    served = {(m, rule.rule) for rule in console.server.server.app.url_map.iter_rules()
              if rule.rule.startswith("/api/v1/") for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == {(m, "/api/v1" + p.replace("{", "<").replace("}", ">")) for m, p, _o, _p in documented}
    assert set(REQUESTS) == {op["operationId"] for _m, _p, op in _operations(document)}, \
        "every operation needs a sample request in REQUESTS"


def test_every_role_against_every_endpoint(console):
    document = console.call("GET", "/openapi.json").json()
    wrong = []
    for _method, _path, op in _operations(document):
        permission = op["x-feedgen-permission"]
        for role in (None, *ROLES):
            method, path, json_body = REQUESTS[op["operationId"]](console)
            r = console.call(method, path, role, json=json_body)
            expected = _expected(permission, role)
            got = "ok" if 200 <= r.status_code < 300 else str(r.status_code)
            if got != expected:
                wrong.append(f"{role or 'anonymous'} {method} {path}: expected {expected}, got {r.status_code} "
                             f"{r.text[:200]}")
                continue
            if got in ("401", "403"):
                assert r.headers["Content-Type"] == "application/json" and r.json()["error"]
            if got == "403":
                assert permission.replace(".", " ") in r.json()["error"]
    assert not wrong, "\n".join(wrong)
