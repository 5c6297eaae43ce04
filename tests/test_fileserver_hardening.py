"""Hostile requests against the file server on a loopback port: strict ids and numbers, bounded
bodies (chunked included, under werkzeug and gunicorn), and what the server tells strangers."""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedgen.core.config import load_config
from feedgen.core.runs import run_dir
from feedgen.fileserver import params
from feedgen.fileserver.app import create_app
from feedgen.generator.membership import FOLDER, publish_membership, write_index
from tests.fileserver_support import (
    ADMIN_TOKEN,
    TOKENS,
    LiveServer,
    expected,
    publish_definition,
    server_section,
    sha,
    xml_items,
)
from tests.support import free_port, wait_for_port

RUN_A = "20260101T000000Z-aaaaaa"
METRICS_TOKEN = "metrics-secret"
BEARER_A = {"Authorization": f"Bearer {TOKENS['feed-a']}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
IDENTITY = {"Accept-Encoding": "identity"}
LOOKUP = "/customers/segments/lookup"
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _publish_membership(config) -> None:
    write_index(run_dir(config.root, RUN_A) / FOLDER, run_id=RUN_A, as_of="2026-01-01T00:00:00Z",
                segments=[{"id": "loyal", "type": "loyal", "params": {}}],
                members=[("c-1", ["loyal"]), ("c-2", [])])
    publish_membership(config, RUN_A)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One published feed, export and membership index behind a live server (read-only tests)."""
    config = load_config(None, root=str(tmp_path_factory.mktemp("hardening") / "root"), environ={})
    config.data["server"].update(server_section(metrics_token_sha256=sha(METRICS_TOKEN)))
    folder = publish_definition(config, RUN_A, "feed-a", xml_items("A", 40))
    publish_definition(config, RUN_A, "seg-a", [f"c{i}\n" for i in range(5)], kind="segment", fmt="csv",
                       header="customer_id\n", footer="")
    _publish_membership(config)
    server = LiveServer(create_app(config))
    yield config, server, folder
    server.stop()


@pytest.fixture
def unchanged(served):
    """Asserts after the test that no file under the root was written, removed or replaced."""
    config = served[0]
    before = _tree(config.root)
    yield
    assert _tree(config.root) == before


def _tree(root: str) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in Path(root).rglob("*") if p.is_file()}


def _one_line(text: str) -> str:
    assert text.endswith("\n") and text.count("\n") == 1, text
    return text


def _error(r: requests.Response) -> str:
    """The message of a JSON error answer, which is one line."""
    _one_line(r.text if r.text.endswith("\n") else r.text + "\n")
    return r.json()["error"]


# -- 2. Numbers and ids are parsed strictly ---------------------------------------------------------

@pytest.mark.parametrize("target", [
    "/feeds/feed-a%0a", "/feeds/feed-a.xml%0a", "/feeds/feed-a.gz%0A", "/feeds/feed-a%0d",
    "/segments/seg-a%0a/export", "/feeds/feed-a?file=0%0a", "/feeds/feed-a?file=%D9%A3",
    "/feeds/feed-a?file=%C2%B2", "/feeds/feed-a?file=+0", "/feeds/feed-a?file=" + "9" * 5000,
])
def test_an_id_or_file_number_with_anything_around_it_is_the_same_404(served, unchanged, target):
    _config, live, _folder = served
    etag = requests.head(live.url("/feeds/feed-a"), headers=BEARER_A).headers["ETag"]
    for headers in (BEARER_A, {**BEARER_A, "If-None-Match": etag}):  # Flask, and the 304 fast path
        status, body = live.raw(target, headers)
        assert (status, body) == (404, b"not found\n"), (target, headers)


@pytest.mark.parametrize(("target", "needle"), [
    ("/customers/c-1%0a/segments", "malformed customer id"),
    ("/customers/c-%D9%A1/segments", "malformed customer id"),
    ("/customers/c-1/segments?segment=loyal%0a", "is malformed"),
    ("/customers/c-1/segments?segment=Loyal", "is not a segment id"),
    ("/customers/c-1/segments?store_id=s1%0a", "is malformed"),
    ("/customers/c-1/segments?category=%E2%80%A8", "is malformed"),
    ("/customers/c-1/segments?type=%FF", "does not decode as UTF-8"),
])
def test_a_customer_id_or_filter_with_anything_around_it_is_400(served, unchanged, target, needle):
    _config, live, _folder = served
    status, body = live.raw(target)
    assert status == 400, target
    assert needle in json.loads(_one_line(body.decode()))["error"]


def test_a_run_id_with_a_trailing_newline_is_400_not_another_run(served, unchanged):
    _config, live, _folder = served
    assert live.raw(f"/runs/{RUN_A}", ADMIN)[0] == 200
    status, body = live.raw(f"/runs/{RUN_A}%0a", ADMIN)
    assert status == 400
    assert "malformed run id" in json.loads(body)["error"]


@pytest.mark.parametrize("target", ["/customers/0%2F/segments", "/customers/0%2F%2F/segments",
                                    f"/runs/{RUN_A}%2F", "/feeds/feed-a%2F", "/customers//segments"])
def test_an_id_with_an_encoded_slash_is_refused_not_redirected_to_another_id(served, unchanged, target):
    _config, live, _folder = served
    status, _body = live.raw(target, ADMIN)
    assert status in (400, 401, 404), (target, status)
    assert status != 308


@pytest.mark.parametrize("limit", ["\u00b2", "\u0663", "9" * 5000, "0", "1001", "-1", "1.5", "", " 1"])
def test_runs_limit_must_be_ascii_digits_from_1_to_1000(served, unchanged, limit):
    _config, live, _folder = served
    r = requests.get(live.url("/runs"), params={"limit": limit}, headers=ADMIN)
    assert r.status_code == 400
    assert _error(r).startswith("query: limit must be a whole number from 1 to 1000 in ASCII digits")
    good = requests.get(live.url("/runs"), params={"limit": "1"}, headers=ADMIN)
    assert good.status_code == 200 and len(good.json()["runs"]) == 1


@pytest.mark.parametrize("query", ["file=0&file=0", "file=0&file=1", "token=token-a&token=token-a",
                                   "token=nope&token=token-a"])
def test_a_repeated_parameter_is_400_on_the_fast_path_and_in_flask_alike(served, unchanged, query):
    _config, live, _folder = served
    etag = requests.head(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY}).headers["ETag"]
    for headers in ({**BEARER_A, **IDENTITY}, {**BEARER_A, **IDENTITY, "If-None-Match": etag}):
        status, body = live.raw(f"/feeds/feed-a?{query}", headers)
        assert status == 400, headers
        name = query.split("=", 1)[0]
        assert _one_line(body.decode()) == f"query: parameter {name!r} is given 2 times; give it once\n"
    r = requests.get(live.url("/runs?limit=1&limit=2"), headers=ADMIN)
    assert r.status_code == 400 and "'limit' is given 2 times" in _error(r)


@pytest.mark.parametrize("header", [
    "bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 19, "bytes=\u0663-",
    "bytes=0-\u0669", "bytes=-0", "bytes=9-2", "bytes=", "bytes=a-b", "bytes=1-2;3", "bytes=0-1,x",
    "bytes=100000-",
])
def test_a_malformed_or_unsatisfiable_range_is_416_with_the_fix(served, unchanged, header):
    _config, live, folder = served
    length = len(expected(folder))
    r = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY, "Range": header.encode()})
    assert r.status_code == 416, header
    assert r.headers["Content-Range"] == f"bytes */{length}"
    assert _one_line(r.text).startswith("range not satisfiable: send one 'Range: bytes=FIRST-LAST'")


@pytest.mark.parametrize(("header", "status", "part"), [
    ("bytes=0-9", 206, slice(0, 10)), ("bytes=10-", 206, slice(10, None)), ("bytes=-5", 206, slice(-5, None)),
    ("bytes=0-" + "9" * 18, 206, slice(0, None)), ("BYTES = 0-9", 206, slice(0, 10)),
    ("bytes=0-9, 20-29", 200, slice(None)), ("items=0-9", 200, slice(None)),
])
def test_valid_ranges_are_served_and_several_ranges_get_the_whole_file(served, header, status, part):
    _config, live, folder = served
    r = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY, "Range": header})
    assert r.status_code == status, header
    assert r.content == expected(folder)[part]


@pytest.mark.parametrize("date", [
    "Mon, 01 Jan 99999999999999999999 00:00:00 GMT", "Mon, 01 Jan 9999999999 00:00:00 GMT",
    "Mon, 31 Feb 2030 00:00:00 GMT", "Mon, 01 Jan 2030 25:00:00 GMT", "Mon, 01 Jan 2030 00:00:00 +99999999999",
    "\u0663", "9" * 60,
])
def test_a_validator_date_that_is_not_an_http_date_is_ignored(served, unchanged, date):
    _config, live, folder = served
    for headers in ({"If-Modified-Since": date.encode()}, {"If-Range": date.encode(), "Range": "bytes=0-9"}):
        r = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY, **headers})
        assert r.status_code == 200, headers
        assert r.content == expected(folder)


def test_the_three_http_date_forms_revalidate(served):
    _config, live, _folder = served
    for date in ("Sun, 06 Nov 2039 08:49:37 GMT", "Sunday, 06-Nov-39 08:49:37 GMT", "Sun Nov  6 08:49:37 2039"):
        r = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, "If-Modified-Since": date})
        assert r.status_code == 304, date


_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80)
_DIGITS = st.text(st.characters(categories=["Nd"]), min_size=1, max_size=30)
_NUMBERS = st.one_of(_DIGITS, st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
                     st.text(st.sampled_from("0123456789"), min_size=1, max_size=5000), _HEADER_TEXT)


@PROPERTY
@given(name=st.one_of(st.text(max_size=40), st.sampled_from(["feed-a", "feed-a.xml", "feed-a.gz"])
                      .flatmap(lambda n: st.text(max_size=3).map(lambda s: n + s))))
def test_property_any_feed_name_is_served_only_when_it_matches_in_full(served, name):
    _config, live, _folder = served
    status, _body = live.raw("/feeds/" + quote(name, safe=""), BEARER_A)
    m = params.FEED_NAME.fullmatch(name)
    ok = bool(m) and m["id"] == "feed-a" and m["fmt"] in (None, "xml")
    assert status == (200 if ok else 404), name


@PROPERTY
@given(value=_NUMBERS)
def test_property_any_file_number_is_200_or_the_same_404(served, value):
    _config, live, _folder = served
    etag = requests.head(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY}).headers["ETag"]
    want = 200 if params.FILE_INDEX.fullmatch(value) and int(value) == 0 else 404
    target = "/feeds/feed-a?file=" + quote(value, safe="")
    assert live.raw(target, {**BEARER_A, **IDENTITY})[0] == want
    assert live.raw(target, {**BEARER_A, **IDENTITY, "If-None-Match": etag})[0] == (304 if want == 200 else 404)


@PROPERTY
@given(value=_NUMBERS)
def test_property_any_limit_is_200_or_400_with_the_rule(served, value):
    _config, live, _folder = served
    r = requests.get(live.url("/runs?limit=" + quote(value, safe="")), headers=ADMIN)
    valid = value.isascii() and value.isdigit() and len(value) <= 4 and 1 <= int(value) <= 1000
    assert r.status_code == (200 if valid else 400), value
    if not valid:
        assert "limit must be a whole number from 1 to 1000" in r.json()["error"]


@PROPERTY
@given(spec=st.one_of(
    st.tuples(_NUMBERS, _NUMBERS).map(lambda t: f"bytes={t[0]}-{t[1]}"),
    _NUMBERS.map(lambda n: f"bytes=-{n}"), _HEADER_TEXT.map(lambda t: "bytes=" + t), _HEADER_TEXT,
))
def test_property_any_range_header_is_206_200_or_416_never_500(served, spec):
    _config, live, folder = served
    whole = expected(folder)
    spec = spec.strip()
    r = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY, "Range": spec.encode()})
    assert r.status_code in (200, 206, 416), spec
    if r.status_code == 206:
        first, last = (int(x) for x in r.headers["Content-Range"].split()[1].split("/")[0].split("-"))
        assert r.content == whole[first:last + 1]
    if r.status_code == 200:
        assert r.content == whole


@PROPERTY
@given(customer_id=st.text(min_size=1, max_size=140), segment=st.text(max_size=20))
def test_property_any_customer_id_or_filter_is_200_or_400(served, customer_id, segment):
    _config, live, _folder = served
    target = f"/customers/{quote(customer_id, safe='')}/segments?segment={quote(segment, safe='')}"
    status, body = live.raw(target)
    if "/" in customer_id or customer_id in (".", ".."):
        assert status in (400, 404)  # not this route any more
        return
    ok = params.CUSTOMER_ID.fullmatch(customer_id) and params.DEFINITION_ID.fullmatch(segment)
    assert status == (200 if ok else 400), (customer_id, segment, body)


@PROPERTY
@given(authorization=_HEADER_TEXT, since=_HEADER_TEXT, match=_HEADER_TEXT)
def test_property_any_credentials_and_validators_are_answered_never_500(served, authorization, since, match):
    _config, live, _folder = served
    headers = {"Authorization": authorization.strip().encode("latin-1"),
               "If-Modified-Since": since.strip().encode("latin-1"), "If-None-Match": match.strip().encode("latin-1")}
    for target in ("/feeds/feed-a", "/segments/seg-a/export.gz", "/runs", "/metrics", "/customers/c-1/segments"):
        status, _body = live.raw(target, headers)
        assert status in (200, 304, 401, 403, 404), (target, headers)


# -- 3. Request bodies are bounded however they arrive ------------------------------------------------

def _post_streaming(port: int, head: bytes, total: int, chunked: bool) -> tuple[int, dict, bytes, int]:
    """POST ``total`` body bytes (chunked or not) until the server answers; (status, headers, body, sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sent = 0
    piece = b"[" * (64 * 1024)
    try:
        sock.sendall(head)
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # answered while we were still sending
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            sent += len(piece)
        return (*_read_answer(sock), sent)
    finally:
        sock.close()


def _read_answer(sock: socket.socket) -> tuple[int, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"connection closed before an answer: {data!r}"
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return int(lines[0].split()[1]), headers, body


def _chunked_head(port: int) -> bytes:
    return (f"POST {LOOKUP} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()


def test_a_chunked_body_over_the_limit_is_413_before_it_is_read_whole(served, unchanged):
    _config, live, _folder = served
    started = time.monotonic()
    status, _headers, body, sent = _post_streaming(live.port, _chunked_head(live.port), 300 << 20, chunked=True)
    assert status == 413
    assert json.loads(_one_line(body.decode()))["error"] == (
        "body: larger than 1048576 bytes; send at most 1000 ids per call")
    assert sent < 48 << 20, f"the client sent {sent} bytes before the answer"
    assert time.monotonic() - started < 20


def test_a_declared_length_over_the_limit_is_413_without_reading_the_body(served, unchanged):
    _config, live, _folder = served
    head = (f"POST {LOOKUP} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {300 << 20}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
    try:
        sock.sendall(head)
        status, _headers, body = _read_answer(sock)
    finally:
        sock.close()
    assert status == 413 and "larger than 1048576 bytes" in json.loads(body)["error"]


@pytest.mark.parametrize(("body", "needle"), [
    ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
    ('{"customer_ids": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"customer_ids": [' + "1" * 5000 + "]}", "not valid JSON"),
    ('{"customer_ids": ["c-1"]', "not valid JSON"),
    ('{"customer_ids": ["c-1\\n"]}', "customer_ids[0]: malformed customer id"),
    (b'{"customer_ids": ["\xff"]}', "not valid JSON"),
])
def test_a_hostile_json_body_is_400_with_a_message(served, unchanged, body, needle):
    _config, live, _folder = served
    r = requests.post(live.url(LOOKUP), data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400
    assert needle in _error(r)


def test_a_small_chunked_body_is_still_answered(served):
    _config, live, _folder = served
    r = requests.post(live.url(LOOKUP), data=iter([b'{"customer_ids": ', b'["c-1", "nobody"]}']),
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text
    assert [x["known"] for x in r.json()["results"]] == [True, False]


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_under_gunicorn_a_chunked_body_over_the_limit_is_413_and_the_worker_stays_small(tmp_path):
    root = tmp_path / "root"
    cfg_path = tmp_path / "feedgen.yaml"
    cfg_path.write_text(yaml.safe_dump({"root": str(root), "server": {**server_section(), "workers": 1}}))
    _publish_membership(load_config(cfg_path, environ={}))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "feedgen.jobs.cli", "serve", "--config", str(cfg_path),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}{LOOKUP}"
        assert requests.post(url, json={"customer_ids": ["c-1"]}, timeout=10).status_code == 200
        (worker,) = _children(proc.pid)
        before = _peak_rss_kb(worker)
        status, _headers, body, sent = _post_streaming(port, _chunked_head(port), 300 << 20, chunked=True)
        assert status == 413
        assert "larger than 1048576 bytes" in json.loads(body)["error"]
        assert sent < 48 << 20
        # the worker did not hold the body: its peak memory grew by far less than 300 MB
        assert _peak_rss_kb(worker) - before < 64 * 1024
        deep = requests.post(url, data="[" * 200_000, headers={"Content-Type": "application/json"}, timeout=10)
        assert deep.status_code == 400 and "nested too deeply" in deep.json()["error"]
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            sock.sendall(_chunked_head(port) + b"zz\r\n{}\r\n0\r\n\r\n")
            status, _headers, body = _read_answer(sock)
        finally:
            sock.close()
        assert status == 400 and "body: could not be read to its end" in json.loads(body)["error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


# -- 10. What the server tells strangers --------------------------------------------------------------

def test_metrics_need_the_metrics_or_admin_token_and_name_no_definition_without_it(served, unchanged):
    _config, live, _folder = served
    anonymous = requests.get(live.url("/metrics"))
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert "'Authorization: Bearer <token>'" in _one_line(anonymous.text)
    for denied in (requests.get(live.url("/metrics"), params={"token": METRICS_TOKEN}),
                   requests.get(live.url("/metrics"), params={"token": ADMIN_TOKEN})):
        assert denied.status_code == 401
    wrong = requests.get(live.url("/metrics"), headers=BEARER_A)
    assert wrong.status_code == 403 and "server.metrics_token_sha256" in _error(wrong)
    for response in (anonymous, wrong):
        for definition_id in ("feed-a", "seg-a", "_membership"):
            assert definition_id not in response.text
    for token in (METRICS_TOKEN, ADMIN_TOKEN):
        text = requests.get(live.url("/metrics"), headers={"Authorization": f"Bearer {token}"}).text
        assert 'feedgen_current_age_seconds{definition_id="feed-a",kind="feed"}' in text


def test_healthz_says_only_a_status(served, unchanged):
    config, live, _folder = served
    r = requests.get(live.url("/healthz"))
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert config.root not in r.text and "/" not in r.text


def test_an_unavailable_store_is_503_without_its_address_or_error(tmp_path, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    config = load_config(None, root=str(tmp_path / "root"), environ={})
    config.data["server"].update(server_section(store="s3://secret-bucket/secret-prefix"))
    config.data["publish"]["s3_endpoint"] = dead
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = LiveServer(create_app(config))
    try:
        r = requests.get(server.url("/healthz"), timeout=60)
    finally:
        server.stop()
    assert (r.status_code, r.json()) == (503, {"status": "unavailable"})


def test_invented_methods_and_paths_do_not_create_metric_series(served):
    _config, live, _folder = served
    for n in range(300):
        conn = socket.create_connection(("127.0.0.1", live.port), timeout=10)
        try:
            conn.sendall(f"FOO{n} /feeds/x{n}/y{n}?z={n} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n".encode())
            status, _headers, _body = _read_answer(conn)
        finally:
            conn.close()
        assert status == 404
    deadline = time.monotonic() + 5
    while True:  # a request is counted when its body is closed, a moment after the answer
        text = requests.get(live.url("/metrics"), headers=ADMIN).text
        series = [line for line in text.splitlines() if line.startswith("feedgen_http_requests_total{")]
        if any('method="other"' in s for s in series) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    labels = {label for s in series for label in s.split("{", 1)[1].split("}", 1)[0].split(",")}
    methods = {label for label in labels if label.startswith("method=")}
    assert methods <= {f'method="{m}"' for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
                                                  "other")}
    assert 'method="other"' in methods
    assert len(series) < 40
    assert not any("FOO" in line or "x1" in line for line in text.splitlines() if not line.startswith("#"))


@pytest.mark.parametrize("target", ["/runs", f"/runs/{RUN_A}"])
def test_the_admin_401_says_what_works_and_it_works(served, target):
    _config, live, _folder = served
    refused = requests.get(live.url(target), params={"token": ADMIN_TOKEN})
    assert refused.status_code == 401
    message = _one_line(refused.text)
    assert "send the admin token as 'Authorization: Bearer <token>'" in message
    assert "refuse ?token=" in message
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.get(live.url(target), headers=ADMIN).status_code == 200
    assert requests.get(live.url(target), auth=("admin", ADMIN_TOKEN)).status_code == 200
    wrong = requests.get(live.url(target), headers=BEARER_A)
    assert wrong.status_code == 403
    assert "server.admin_token_sha256 as 'Authorization: Bearer <token>'" in _error(wrong)


def test_every_feed_401_advice_works(served):
    _config, live, folder = served
    missing = requests.get(live.url("/feeds/feed-a"), headers=IDENTITY)
    assert missing.status_code == 401
    assert _one_line(missing.text) == (
        "credentials required: send the feed's token as 'Authorization: Bearer <token>', "
        "as the basic-auth password, or as ?token=<token>\n")
    token = TOKENS["feed-a"]
    for kwargs in ({"headers": {**BEARER_A, **IDENTITY}}, {"auth": ("any", token), "headers": IDENTITY},
                   {"params": {"token": token}, "headers": IDENTITY}):
        r = requests.get(live.url("/feeds/feed-a"), **kwargs)
        assert r.status_code == 200 and r.content == expected(folder)


def test_admin_endpoints_switched_off_say_so(tmp_path):
    config = load_config(None, root=str(tmp_path / "root"), environ={})
    config.data["server"].update({"tokens": server_section()["tokens"]})
    server = LiveServer(create_app(config))
    try:
        r = requests.get(server.url("/runs"), headers=ADMIN)
    finally:
        server.stop()
    assert r.status_code == 403
    assert _error(r) == ("admin endpoints are off: set server.admin_token_sha256 to the sha256 of an admin "
                         "token and restart the server")


@pytest.mark.parametrize(("framing", "statuses"), [
    (b"zz\r\n{}\r\n0\r\n\r\n", {400}), (b"2\r\n{}XX0\r\n\r\n", {400}), (b"\xd9\xa3\r\n{}\r\n0\r\n\r\n", {400}),
    # a chunk announced as 16**5000 bytes: werkzeug's dev server counts it past the limit
    (b"%s\r\n{}\r\n0\r\n\r\n" % (b"f" * 5000), {400, 413}),
])
def test_broken_chunked_framing_is_4xx_with_a_message(served, unchanged, framing, statuses):
    _config, live, _folder = served
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
    try:
        sock.sendall(_chunked_head(live.port) + framing)
        sock.shutdown(socket.SHUT_WR)
        status, _headers, body = _read_answer(sock)
    finally:
        sock.close()
    assert status in statuses
    message = json.loads(body)["error"]
    assert message.startswith("body: could not be read to its end" if status == 400 else "body: larger than")


@pytest.mark.parametrize("length", ["\u0663".encode(), b"9" * 5000, b"-1", b"1e3", b" 7"])
def test_a_hostile_content_length_is_answered_4xx(served, unchanged, length):
    _config, live, _folder = served
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
    try:
        sock.sendall(f"POST {LOOKUP} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
                     + b"Content-Length: " + length + b"\r\n\r\n{}")
        sock.shutdown(socket.SHUT_WR)
        status, _headers, body = _read_answer(sock)
    finally:
        sock.close()
    assert status in (400, 413), body
    assert json.loads(body)["error"].startswith("body: ")


# -- 2. Paths with an empty segment, range lists ------------------------------------------------------

EMPTY_SEGMENT_TARGETS = [
    "/feeds//feed-a?token=token-a", "/feeds/feed-a%2F?token=token-a", "/segments/seg-a%2f/export?token=token-s",
    "/segments/seg-a%2F/export.gz?token=token-s", "/segments//seg-a/export?token=token-s",
    "/customers//c-1/segments", "/customers/c-1//segments", "/customers/c-1%2f/segments",
]


@pytest.mark.parametrize("target", EMPTY_SEGMENT_TARGETS)
def test_a_path_with_an_empty_segment_is_the_same_404_never_a_redirect(served, unchanged, target):
    _config, live, _folder = served
    etag = requests.head(live.url("/feeds/feed-a"), headers=BEARER_A).headers["ETag"]
    for headers in ({}, {"If-None-Match": etag}):  # Flask, and the 304 and lookup fast paths
        assert live.raw(target, headers) == (404, b"not found\n"), (target, headers)


def test_under_gunicorn_a_leading_double_slash_is_the_same_404_and_counted(tmp_path):
    # werkzeug's development server (like http.server) rewrites "//x" to "/x" before the app
    # sees it; gunicorn passes it on, so the real server is the one to check
    root = tmp_path / "root"
    cfg_path = tmp_path / "feedgen.yaml"
    cfg_path.write_text(yaml.safe_dump({"root": str(root), "server": {**server_section(), "workers": 1}}))
    config = load_config(cfg_path, environ={})
    publish_definition(config, RUN_A, "feed-a", xml_items("A", 5))
    publish_definition(config, RUN_A, "seg-a", ["c1\n"], kind="segment", fmt="csv", header="customer_id\n",
                       footer="")
    _publish_membership(config)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "feedgen.jobs.cli", "serve", "--config", str(cfg_path),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        etag = requests.head(f"http://127.0.0.1:{port}/feeds/feed-a", headers=BEARER_A).headers["ETag"]
        targets = ["//feeds/feed-a?token=token-a", "//segments/seg-a/export?token=token-s",
                   "//customers/c-1/segments", "//healthz", *EMPTY_SEGMENT_TARGETS]
        for target in targets:
            for headers in ({}, {"If-None-Match": etag}):
                status, response_headers, body = _raw_request(port, target, headers)
                assert (status, body) == (404, b"not found\n"), (target, headers)
                assert "location" not in response_headers
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", headers=ADMIN).text
        assert 'feedgen_http_requests_total{method="GET",route="feeds",status="404"}' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def _raw_request(port: int, target: str, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
                 *(f"{k}: {v}" for k, v in headers.items())]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return _read_answer(sock)
    finally:
        sock.close()


@pytest.mark.parametrize(("header", "status", "part"), [
    ("bytes=0-0,", 206, slice(0, 1)), ("bytes=0-0, ", 206, slice(0, 1)), ("bytes=,0-9", 206, slice(0, 10)),
    ("bytes= , 5-9 ,, ", 206, slice(5, 10)), ("bytes=-5,", 206, slice(-5, None)),
    ("bytes=0-0,2-2", 200, slice(None)),
    ("bytes=" + ",".join(f"{i}-{i}" for i in range(params.MAX_RANGES)), 200, slice(None)),
    ("bytes=" + ",".join(f"{i}-{i}" for i in range(params.MAX_RANGES + 1)), 200, slice(None)),
    ("bytes=" + ",".join(f"{i}-{i}" for i in range(5000)), 200, slice(None)),
    ("bytes=" + ",".join(["x"] * (params.MAX_RANGES + 1)), 200, slice(None)),
])
def test_a_range_list_with_empty_elements_or_many_ranges_is_served(served, header, status, part):
    _config, live, folder = served
    r = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY, "Range": header})
    assert r.status_code == status, header
    assert r.content == expected(folder)[part]


@pytest.mark.parametrize("header", ["bytes=,", "bytes= , ,", "bytes=0-0,x", "bytes=" + ",".join(["x"] * 64)])
def test_a_range_list_that_names_no_valid_range_is_416(served, unchanged, header):
    _config, live, _folder = served
    r = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY, "Range": header})
    assert r.status_code == 416, header


# -- 3. Duplicate keys in a JSON body -----------------------------------------------------------------

@pytest.mark.parametrize("body", [
    '{"customer_ids": ["c-1"], "customer_ids": ["c-2"]}',
    '{"customer_ids": ["c-1"], "segment": "loyal", "segment": "other"}',
    '{"customer_ids": ["c-1"], "store_id": {"a": 1, "a": 2}}',
])
def test_a_json_body_naming_a_key_twice_is_400_naming_the_key(served, unchanged, body):
    _config, live, _folder = served
    r = requests.post(live.url(LOOKUP), data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400, r.text
    key = "customer_ids" if "customer_ids\": [\"c-2" in body else ("segment" if "other" in body else "a")
    assert _error(r) == f"body: key {key!r} is given twice in one object; give each key once"


def test_the_console_api_refuses_a_json_body_naming_a_key_twice(tmp_path):
    from tests.console_support import start_console

    console = start_console(tmp_path / "root")
    try:
        r = console.call("POST", "/definitions", "admin",
                         data='{"kind": "segment", "kind": "feed", "body": {"id": "x"}}',
                         headers={"Content-Type": "application/json"})
    finally:
        console.stop()
    assert r.status_code == 400
    assert r.json()["error"] == "body: key 'kind' is given twice in one object; give each key once"


# -- 10. Admin answers are JSON; a store outage is 503 everywhere -------------------------------------

@pytest.mark.parametrize(("target", "realm"), [("/runs", "feedgen-admin"), (f"/runs/{RUN_A}", "feedgen-admin"),
                                               ("/metrics", "feedgen-metrics")])
def test_admin_and_metrics_401_are_json_with_the_advice_and_the_challenge(served, unchanged, target, realm):
    _config, live, _folder = served
    for kwargs in ({}, {"params": {"token": ADMIN_TOKEN}}):
        r = requests.get(live.url(target), **kwargs)
        assert r.status_code == 401
        assert r.headers["Content-Type"] == "application/json"
        assert r.headers["WWW-Authenticate"] == f'Bearer realm="{realm}", charset="UTF-8"'
        assert "'Authorization: Bearer <token>'" in _error(r) and "?token=" in _error(r)
    for wrong in (requests.get(live.url(target), headers=BEARER_A),
                  requests.get(live.url("/runs/x%0a"), headers=ADMIN),
                  requests.get(live.url("/runs/20990101T000000Z-nope"), headers=ADMIN)):
        assert wrong.status_code in (400, 403, 404)
        assert wrong.headers["Content-Type"] == "application/json" and _error(wrong)


def _store_down_targets(etag: str) -> list[tuple[str, dict[str, str], str]]:
    """(target, headers, body kind) for every path that reads the serving store."""
    return [("/feeds/feed-a", BEARER_A, "text"), ("/feeds/feed-a", {**BEARER_A, "If-None-Match": etag}, "text"),
            ("/segments/seg-a/export.gz", {"Authorization": f"Bearer {TOKENS['seg-a']}"}, "text"),
            ("/customers/c-1/segments", {}, "json"), ("/customers/c-1/segments?segment=loyal", {}, "json")]


def _assert_unavailable(live: LiveServer, etag: str, secret: str) -> None:
    assert live.raw("/healthz") == (503, b'{"status":"unavailable"}\n')
    for target, headers, kind in _store_down_targets(etag):
        status, body = live.raw(target, headers)
        assert status == 503, (target, headers, body)
        text = _one_line(body.decode())
        assert secret not in text
        message = json.loads(text)["error"] if kind == "json" else text.rstrip("\n")
        assert message == "the serving store is unavailable; try again later", (target, body)
    r = requests.post(live.url(LOOKUP), json={"customer_ids": ["c-1"]}, timeout=60)
    assert r.status_code == 503 and _error(r) == "the serving store is unavailable; try again later"
    metrics = requests.get(live.url("/metrics"), headers=ADMIN, timeout=60)
    assert metrics.status_code == 200
    for route in ("feeds", "segments", "customers", "healthz"):
        assert f'route="{route}",status="503"' in metrics.text, route


def test_a_store_folder_that_does_not_exist_is_503_on_every_path(tmp_path):
    config = load_config(None, root=str(tmp_path / "root"), environ={})
    secret = str(tmp_path / "gone")
    config.data["server"].update(server_section(store=secret))
    live = LiveServer(create_app(config))
    try:
        _assert_unavailable(live, '"x"', secret)
    finally:
        live.stop()


def test_an_s3_store_whose_endpoint_is_down_is_503_on_every_path(tmp_path, s3_endpoint):
    import boto3

    from tests.support import MotoS3

    moto = MotoS3().start()
    bucket = "secret-bucket"
    boto3.client("s3", endpoint_url=moto.endpoint).create_bucket(Bucket=bucket)
    config = load_config(None, root=str(tmp_path / "root"), environ={})
    config.data["publish"].update({"store": f"s3://{bucket}/published", "s3_endpoint": moto.endpoint})
    config.data["server"].update(server_section())
    publish_definition(config, RUN_A, "feed-a", xml_items("A", 5))
    publish_definition(config, RUN_A, "seg-a", ["c1\n"], kind="segment", fmt="csv", header="customer_id\n",
                       footer="")
    _publish_membership(config)
    live = LiveServer(create_app(config))
    try:
        etag = requests.head(live.url("/feeds/feed-a"), headers=BEARER_A).headers["ETag"]
        moto.stop()
        _assert_unavailable(live, etag, bucket)
    finally:
        live.stop()
