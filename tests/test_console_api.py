"""The console's HTTP API on a loopback port: drafts and publishing on both databases, sessions
and CSRF, the login throttle, run decisions with reasons, and strict parsing of what a request sends."""

from __future__ import annotations

import json
import threading

import pytest
import requests

from feedgen.console.registry import Registry
from tests.console_support import start_console
from tests.registry_support import ADMIN, BUYERS, LAPSED, PER_STORE, body


@pytest.fixture
def console(tmp_path, registry_url):
    live = start_console(tmp_path / "root", registry_url)
    yield live
    live.stop()


@pytest.fixture
def sqlite_console(tmp_path):
    live = start_console(tmp_path / "root")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def shared_console(tmp_path_factory):
    """One console for the tests that do not depend on what the others did (logins excepted)."""
    live = start_console(tmp_path_factory.mktemp("shared") / "root")
    live.registry.save_draft(ADMIN, "segment", BUYERS, None, "seed")
    yield live
    live.stop()


def _at_once(*calls):
    """Run the calls in threads released together; their responses in call order."""
    barrier = threading.Barrier(len(calls))
    out: list = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        out[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


# -- definitions ---------------------------------------------------------------------------

def test_two_editors_saving_on_the_same_version_get_one_save_and_one_409_with_both_versions(console):
    created = console.call("POST", "/definitions", "editor", json={"kind": "segment", "body": BUYERS})
    assert created.status_code == 201
    assert created.headers["Location"].endswith("/api/v1/definitions/buyers/versions/1")

    def save(description):
        return lambda: console.call("PUT", "/definitions/buyers/draft", "editor", json={
            "body": body(BUYERS, description=description), "base_version": 1, "message": description})

    answers = _at_once(save("mine"), save("theirs"))
    assert sorted(r.status_code for r in answers) == [200, 409]
    won = next(r for r in answers if r.status_code == 200).json()
    lost = next(r for r in answers if r.status_code == 409).json()
    assert won["number"] == 2 and won["base_version"] == 1
    assert "based on version 1" in lost["error"] and "now has version 2" in lost["error"]
    # both versions are in the answer, to compare before saving again
    assert lost["base_version"]["number"] == 1 and lost["base_version"]["body"] == BUYERS
    assert lost["current_version"]["number"] == 2
    assert lost["current_version"]["body"]["description"] == won["body"]["description"]
    assert lost["current_version"]["body"]["description"] != json.loads(
        next(r for r in answers if r.status_code == 409).request.body)["body"]["description"]
    # nothing was lost: the loser saves again on the latest
    again = console.call("PUT", "/definitions/buyers/draft", "editor", json={
        "body": body(BUYERS, description="merged"), "base_version": 2})
    assert again.status_code == 200 and again.json()["number"] == 3
    diff = console.call("GET", "/definitions/buyers/diff?a=2&b=3", "viewer").json()
    assert diff["changes"] == [{"op": "changed", "pointer": "/description",
                                "old": won["body"]["description"], "new": "merged"}]


def test_publish_that_breaks_an_in_segment_reference_is_refused_with_422_and_located_errors(console):
    for template in (BUYERS, LAPSED):
        draft = console.call("POST", "/definitions", "editor", json={"kind": "segment", "body": template}).json()
        published = console.call("POST", f"/definitions/{template['id']}/publish", "publisher",
                                 json={"version": draft["number"], "message": "go"})
        assert published.status_code == 200, published.text
    # 'vip' exists only as a draft: a draft may name it, the published set may not
    vip = {"id": "vip", "where": {"field": "orders_total", "gte": 1000}, "exports": ["ids_csv"]}
    assert console.call("POST", "/definitions", "editor", json={"kind": "segment", "body": vip}).status_code == 201
    to_vip = body(LAPSED, where={"all": [{"in_segment": "vip"}, {"field": "orders_total", "gte": 100}]})
    saved = console.call("PUT", "/definitions/lapsed-buyers/draft", "editor", json={"body": to_vip, "base_version": 1})
    assert saved.status_code == 200, saved.text
    refused = console.call("POST", "/definitions/lapsed-buyers/publish", "publisher", json={"version": 2})
    assert refused.status_code == 422
    assert refused.json()["error"].startswith("publishing lapsed-buyers refused: 1 problem")
    [problem] = refused.json()["errors"]
    assert (problem["definition_id"], problem["pointer"], problem["message"]) == \
        ("lapsed-buyers", "/where/all/0/in_segment", "unknown segment 'vip'")
    assert console.call("GET", "/definitions/lapsed-buyers", "viewer").json()["published_version"] == 1
    # archiving what a published definition refers to is refused the same way
    archived = console.call("POST", "/definitions/buyers/archive", "publisher", json={"reason": "gone"})
    assert archived.status_code == 422
    [problem] = archived.json()["errors"]
    assert problem["definition_id"] == "lapsed-buyers" and problem["pointer"] == "/where/all/0/in_segment"
    assert "no longer be published" in problem["message"] and problem["fix"]
    # a draft naming a segment that exists nowhere is refused at save
    nowhere = body(LAPSED, where={"all": [{"in_segment": "buyerz"}, {"field": "orders_total", "gte": 100}]})
    saved = console.call("PUT", "/definitions/lapsed-buyers/draft", "editor",
                         json={"body": nowhere, "base_version": 2})
    assert saved.status_code == 422
    assert saved.json()["errors"] == [{"definition_id": "lapsed-buyers", "pointer": "/where/all/0/in_segment",
                                       "message": "unknown segment 'buyerz'", "fix": "did you mean 'buyers'?"}]
    # the id in the body must stay the URL's
    renamed = console.call("PUT", "/definitions/lapsed-buyers/draft", "editor",
                           json={"body": body(LAPSED, id="other"), "base_version": 2})
    assert renamed.status_code == 422 and renamed.json()["errors"][0]["pointer"] == "/id"


def test_validate_returns_every_problem_located_with_the_messages_of_feedgen_validate(shared_console):
    bad = {"id": "Bad Id", "where": {"all": [{"field": "orders_totl", "gte": 1}, {"in_segment": "nobody"}]},
           "exports": ["ids_csv"]}
    r = shared_console.call("POST", "/validate", "editor", json={"kind": "segment", "body": bad})
    assert r.status_code == 200
    found = {e["pointer"]: e for e in r.json()["errors"]}
    assert r.json()["valid"] is False
    assert found["/id"]["message"] == "bad id 'Bad Id'"
    assert found["/where/all/0/field"]["message"] == "unknown field 'orders_totl'"
    assert found["/where/all/0/field"]["fix"] == "did you mean 'orders_total'?"
    assert found["/where/all/1/in_segment"]["message"] == "unknown segment 'nobody'"
    assert shared_console.call("GET", "/definitions?q=Bad", "viewer").json()["definitions"] == []  # nothing stored
    ok = shared_console.call("POST", "/validate", "editor", json={"kind": "segment", "body": PER_STORE})
    assert ok.json() == {"valid": True, "errors": []}


def test_list_filters_and_pages(console):
    reg: Registry = console.registry
    feeds = [{"id": f"feed-{i}", "template": "google_merchant_rss" if i % 2 else "generic_csv",
              "where": {"field": "price.amount", "gt": i},
              **({} if i % 2 else {"options": {"fields": ["offer_id", "title"]}}),
              "delivery": {"events": True, "destinations": ["meta_catalog_batch"] if i == 3 else []}}
             for i in range(5)]
    for f in feeds:
        reg.save_draft(ADMIN, "feed", f, None, "seed")
    reg.publish(ADMIN, "feed-1", 1)
    reg.save_draft(ADMIN, "segment", BUYERS, None, "seed")
    from feedgen.console.registry import Actor

    reg.save_draft(Actor("ola", "editor"), "feed", body(feeds[4], description="ola's"), 1, "edit")

    def ids(query):
        r = console.call("GET", f"/definitions?{query}", "viewer")
        assert r.status_code == 200, r.text
        return [d["definition_id"] for d in r.json()["definitions"]]

    assert ids("kind=segment") == ["buyers"]
    assert ids("entity=customer") == ["buyers"]
    assert ids("entity=offer") == [f"feed-{i}" for i in range(5)]
    assert ids("template=google_merchant_rss") == ["feed-1", "feed-3"]
    assert ids("destination=meta_catalog_batch") == ["feed-3"]
    assert ids("state=published") == ["feed-1"]
    assert ids("state=draft&kind=feed&template=generic_csv") == ["feed-0", "feed-2", "feed-4"]
    assert ids("author=ola") == ["feed-4"]
    assert ids("q=ed-") == [f"feed-{i}" for i in range(5)]
    first = console.call("GET", "/definitions?limit=4", "viewer").json()
    assert [d["definition_id"] for d in first["definitions"]] == ["buyers", "feed-0", "feed-1", "feed-2"]
    second = console.call("GET", f"/definitions?limit=4&offset={first['next_offset']}", "viewer").json()
    assert [d["definition_id"] for d in second["definitions"]] == ["feed-3", "feed-4"]
    assert second["next_offset"] is None


def test_restore_makes_an_old_version_the_new_draft_and_versions_list_them(shared_console):
    c, first = shared_console, body(BUYERS, id="restored")
    c.call("POST", "/definitions", "editor", json={"kind": "segment", "body": first})
    c.call("PUT", "/definitions/restored/draft", "editor", json={"body": body(first, description="v2"),
                                                                  "base_version": 1})
    r = c.call("POST", "/definitions/restored/restore", "editor", json={"version": 1, "base_version": 2})
    assert r.status_code == 201 and r.json()["number"] == 3 and r.json()["body"] == first
    versions = c.call("GET", "/definitions/restored/versions", "viewer").json()["versions"]
    assert [(v["number"], v["state"]) for v in versions] == [(1, "archived"), (2, "archived"), (3, "draft")]
    assert "body" not in versions[0]
    assert c.call("GET", "/definitions/restored/versions/2", "viewer").json()["body"]["description"] == "v2"
    [entry, *_] = c.call("GET", "/audit?object_id=restored&limit=1", "viewer").json()["entries"]
    assert (entry["action"], entry["actor"], entry["detail"]["restored_from"]) == ("definition.restore", "editor", 1)


# -- sessions, CSRF, throttle ------------------------------------------------------------

def test_a_cookie_change_needs_the_csrf_token_and_a_bearer_one_does_not(sqlite_console):
    c = sqlite_console
    browser = requests.Session()
    login = browser.post(c.url("/login"), json={"name": "editor", "password": "password-editor"})
    assert login.status_code == 200 and login.json()["role"] == "editor"
    csrf = login.json()["csrf_token"]
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert browser.get(c.url("/me")).json()["csrf_token"] == csrf  # reads need no token
    create = {"kind": "segment", "body": BUYERS}
    refused = browser.post(c.url("/definitions"), json=create)
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["error"]
    assert browser.post(c.url("/definitions"), json=create, headers={"X-CSRF-Token": "guess"}).status_code == 403
    assert c.call("GET", "/definitions", "viewer").json()["definitions"] == []
    assert browser.post(c.url("/definitions"), json=create, headers={"X-CSRF-Token": csrf}).status_code == 201
    # automation with a token sends no CSRF token
    assert c.call("POST", "/validate", "editor", json=create).status_code == 200
    # another site cannot log the user out either
    assert browser.post(c.url("/logout")).status_code == 403
    assert browser.post(c.url("/logout"), headers={"X-CSRF-Token": csrf}).status_code == 200
    assert browser.get(c.url("/me")).status_code == 401


def test_a_disabled_user_loses_the_session_and_the_token_at_once(sqlite_console):
    c = sqlite_console
    browser = requests.Session()
    assert browser.post(c.url("/login"), json={"name": "viewer", "password": "password-viewer"}).status_code == 200
    c.registry.accounts.disable_user(ADMIN, "viewer", "left")
    assert browser.get(c.url("/me")).status_code == 401
    r = c.call("GET", "/me", "viewer")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")


def test_failed_logins_are_throttled_with_429_and_retry_after(sqlite_console):
    c = sqlite_console
    for _ in range(5):
        r = requests.post(c.url("/login"), json={"name": "admin", "password": "wrong-password"})
        assert r.status_code == 401 and r.json()["error"] == "unknown user or wrong password"
    # throttled: even the right password is refused until the window has passed
    r = requests.post(c.url("/login"), json={"name": "admin", "password": "password-admin"})
    assert r.status_code == 429
    assert 800 < int(r.headers["Retry-After"]) <= 900
    assert "too many failed logins" in r.json()["error"]
    assert "Set-Cookie" not in r.headers
    # the same address is throttled for other users too; tokens still work
    assert requests.post(c.url("/login"), json={"name": "editor", "password": "password-editor"}).status_code == 429
    assert c.call("GET", "/me", "admin").status_code == 200


# -- runs ----------------------------------------------------------------------------------

def test_approve_records_the_reason_in_run_json_and_the_audit_log_and_a_second_decision_is_refused(console):
    run_id = console.held_run()
    r = console.call("POST", f"/runs/{run_id}/approve", "approver", json={"reason": "sale week: expected"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "emitted"
    gate = console.run_record(run_id)["gate"]
    assert (gate["decision"], gate["decided_by"], gate["reason"]) == ("approved", "approver", "sale week: expected")
    [entry] = console.call("GET", f"/audit?object_type=run&object_id={run_id}", "viewer").json()["entries"]
    assert (entry["actor"], entry["action"], entry["detail"]["reason"]) == \
        ("approver", "run.approve", "sale week: expected")
    again = console.call("POST", f"/runs/{run_id}/reject", "approver", json={"reason": "changed my mind"})
    assert again.status_code == 409
    assert f"run {run_id} has status 'emitted', not 'held': it was already approved by approver" in again.json()["error"]
    shown = console.call("GET", f"/runs/{run_id}", "viewer").json()
    assert shown["gate"]["reason"] == "sale week: expected"
    [summary] = console.call("GET", "/runs?status=emitted", "viewer").json()["runs"]
    assert summary["gate"]["decided_by"] == "approver"


def test_a_decision_needs_a_reason(shared_console):
    run_id = shared_console.held_run("reasonless")
    for payload in ({}, {"reason": ""}, {"reason": "   "}, {"reason": 5}):
        r = shared_console.call("POST", f"/runs/{run_id}/reject", "approver", json=payload)
        assert r.status_code == 400 and "reason" in r.json()["error"]
    assert shared_console.run_record(run_id)["status"] == "held"


def test_two_approvers_deciding_at_once_get_one_decision_and_one_refusal(sqlite_console):
    c = sqlite_console
    run_id = c.held_run()
    answers = _at_once(
        lambda: c.call("POST", f"/runs/{run_id}/approve", "approver", json={"reason": "looks fine"}),
        lambda: c.call("POST", f"/runs/{run_id}/reject", "admin", json={"reason": "looks wrong"}))
    assert sorted(r.status_code for r in answers) == [200, 409]
    won, lost = sorted(answers, key=lambda r: r.status_code)
    decision = "approved" if won.json()["action"] == "approve" else "rejected"
    assert c.run_record(run_id)["gate"]["decision"] == decision
    assert f"it was already {decision} by" in lost.json()["error"]
    entries = c.call("GET", f"/audit?object_id={run_id}", "viewer").json()["entries"]
    assert len(entries) == 1 and entries[0]["action"] == f"run.{won.json()['action']}"


# -- strict parsing ------------------------------------------------------------------------

def _deep(levels: int) -> dict:
    return {"not": _deep(levels - 1)} if levels else {"field": "orders_total", "eq": 1}


@pytest.mark.parametrize(("method", "path", "payload", "status"), [
    ("GET", "/definitions/buyers/versions/\u0661", None, 400),          # an Arabic-Indic digit
    ("GET", "/definitions/buyers/versions/99999999999999999999", None, 400),
    ("GET", "/definitions/buyers/versions/0", None, 400),
    ("GET", "/definitions?limit=0", None, 400),
    ("GET", "/definitions?limit=1&limit=2", None, 400),
    ("GET", "/definitions?state=gone", None, 400),
    ("GET", "/definitions?colour=red", None, 400),
    ("GET", "/definitions/buyers/diff?a=1", None, 400),
    ("GET", "/definitions/b%20uyers", None, 400),
    ("GET", "/runs/..%2f..%2fetc", None, 404),                          # never a path outside runs/
    ("GET", "/runs/x.json", None, 400),
    ("GET", "/audit?since=yesterday", None, 400),
    ("GET", "/audit?since=2026-02-30", None, 400),
    ("POST", "/definitions", "{not json", 400),
    ("POST", "/definitions", "[1, 2]", 400),
    ("POST", "/definitions", json.dumps({"kind": "segment", "body": BUYERS, "extra": 1}), 400),
    ("POST", "/definitions", json.dumps({"kind": "view", "body": BUYERS}), 400),
    ("POST", "/definitions", "[" * 50_000 + "]" * 50_000, 400),
    ("POST", "/definitions", json.dumps({"kind": "segment", "body": {"id": "x", "where": _deep(70)}}), 400),
    ("POST", "/definitions", json.dumps({"kind": "segment", "body": {"id": 5}}), 422),
    ("POST", "/definitions", "x" * (3 << 20), 413),
    ("PUT", "/definitions/buyers/draft", json.dumps({"body": BUYERS, "base_version": "1"}), 400),
    ("POST", "/definitions/nobody/publish", json.dumps({"version": 1}), 404),
    ("DELETE", "/definitions/buyers", None, 405),
    ("GET", "/nowhere", None, 404),
])
def test_odd_requests_get_a_json_refusal_never_a_500(shared_console, method, path, payload, status):
    r = shared_console.call(method, path, "admin", data=payload,
                            headers={"Content-Type": "application/json"} if payload else {})
    assert r.status_code == status, r.text[:300]
    assert r.headers["Content-Type"] == "application/json" and r.json()["error"]
