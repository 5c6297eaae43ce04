from __future__ import annotations

import gzip
import json
import threading
import time

import pytest
import requests
from lxml import etree

from feedgen.core.config import load_config
from feedgen.core.runs import new_run_record, parse_as_of, read_run, write_run
from feedgen.fileserver.app import create_app
from tests.fileserver_support import (
    ADMIN_TOKEN,
    TOKENS,
    LiveServer,
    expected,
    publish_definition,
    server_section,
    xml_items,
)

RUN_A = "20260101T000000Z-aaaaaa"
RUN_B = "20260102T000000Z-bbbbbb"
BEARER_A = {"Authorization": f"Bearer {TOKENS['feed-a']}"}
IDENTITY = {"Accept-Encoding": "identity"}


@pytest.fixture
def config(tmp_path):
    cfg = load_config(None, root=str(tmp_path / "root"), environ={})
    cfg.data["server"].update(server_section())
    return cfg


@pytest.fixture
def live(config):
    server = LiveServer(create_app(config))
    yield server
    server.stop()


@pytest.fixture
def feed_a(config):
    return publish_definition(config, RUN_A, "feed-a", xml_items("A", 95))


def test_full_download_equals_the_assembled_parts(live, feed_a):
    r = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY})
    assert r.status_code == 200
    assert r.content == expected(feed_a)
    assert int(r.headers["Content-Length"]) == len(expected(feed_a))
    assert r.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert "Content-Encoding" not in r.headers
    assert r.headers["X-Feedgen-Run"] == RUN_A
    assert len(etree.fromstring(r.content).findall("channel/item")) == 95


def test_gz_url_sends_the_stored_members_which_decompress_to_the_same_xml(live, feed_a):
    r = requests.get(live.url("/feeds/feed-a.xml.gz"), headers=BEARER_A)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/gzip"
    assert r.content == expected(feed_a, compressed=True)
    xml = gzip.decompress(r.content)
    assert xml == expected(feed_a)
    assert len(etree.fromstring(xml).findall("channel/item")) == 95
    assert requests.get(live.url("/feeds/feed-a.gz"), headers=BEARER_A).content == r.content


def test_accept_encoding_gzip_passes_members_through_without_recompressing(live, feed_a):
    r = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, "Accept-Encoding": "gzip"},
                     stream=True)
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.headers["Vary"] == "Accept-Encoding"
    wire = r.raw.read(decode_content=False)
    assert wire == expected(feed_a, compressed=True)
    assert int(r.headers["Content-Length"]) == len(wire)
    # a client that decodes transparently gets the document
    assert requests.get(live.url("/feeds/feed-a"), headers=BEARER_A).content == expected(feed_a)


def test_format_suffix_must_match_the_feed_format(live, feed_a):
    assert requests.get(live.url("/feeds/feed-a.xml"), headers=BEARER_A).status_code == 200
    assert requests.get(live.url("/feeds/feed-a.csv"), headers=BEARER_A).status_code == 404
    assert requests.get(live.url("/feeds/feed-a.tsv.gz"), headers=BEARER_A).status_code == 404


def test_split_feed_serves_each_file_by_index(live, config):
    folder = publish_definition(config, RUN_A, "feed-a", xml_items("A", 50), max_file_items=20)
    files = json.loads((folder / "manifest.json").read_text())["files"]
    assert len(files) == 3
    for n in range(3):
        r = requests.get(live.url(f"/feeds/feed-a?file={n}"), headers={**BEARER_A, **IDENTITY})
        assert r.content == expected(folder, n)
        etree.fromstring(r.content)  # every file is a whole document
    for bad in ("3", "-1", "x", "01x", "9999999"):
        assert requests.get(live.url(f"/feeds/feed-a?file={bad}"), headers=BEARER_A).status_code == 404


def test_etag_and_last_modified_revalidate_to_304(live, feed_a, config):
    first = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY})
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert RUN_A in etag
    again = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == etag
    since = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY, "If-Modified-Since": modified})
    assert since.status_code == 304
    # the gzip representation has its own validator
    gz = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, "Accept-Encoding": "gzip",
                                                          "If-None-Match": etag})
    assert gz.status_code == 200 and gz.headers["ETag"] != etag
    # a new run is a new ETag, so the old validator fetches the new document
    publish_definition(config, RUN_B, "feed-a", xml_items("B", 10))
    changed = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY, "If-None-Match": etag})
    assert changed.status_code == 200
    assert b"of B" in changed.content and changed.headers["ETag"] != etag


def test_revalidation_is_answered_304_only_to_authorised_requests_with_the_200s_validators(live, feed_a,
                                                                                       config):
    url = live.url("/feeds/feed-a.xml.gz")
    whole = requests.head(url, headers=BEARER_A)
    etag = whole.headers["ETag"]
    unchanged = requests.get(url, headers={**BEARER_A, "If-None-Match": etag})
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    for name in ("ETag", "Cache-Control", "X-Feedgen-Run", "Accept-Ranges", "Content-Disposition"):
        assert unchanged.headers[name] == whole.headers[name], name
    # any credential form, a weak tag among others, HEAD: all revalidate
    listed = {"If-None-Match": f'"other", W/{etag}'}
    assert requests.get(url, params={"token": TOKENS["feed-a"]}, headers=listed).status_code == 304
    assert requests.get(url, auth=("merchant-center", TOKENS["feed-a"]), headers=listed).status_code == 304
    assert requests.head(url, headers={**BEARER_A, "If-None-Match": etag}).status_code == 304
    # a validator never gets past the credentials: no token 401, a wrong one 404 like an unknown id
    assert requests.get(url, headers={"If-None-Match": etag}).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer nope", "If-None-Match": etag}).status_code == 404
    assert requests.get(live.url("/feeds/feed-b.xml.gz"),
                        headers={**BEARER_A, "If-None-Match": etag}).status_code == 404
    assert requests.get(url, params={"file": "1"}, headers={**BEARER_A, "If-None-Match": etag}).status_code == 404
    assert requests.get(live.url("/feeds/feed-a.csv.gz"),
                        headers={**BEARER_A, "If-None-Match": etag}).status_code == 404
    # exports revalidate too
    publish_definition(config, RUN_A, "seg-a", ["c1\n"], kind="segment", fmt="csv", header="", footer="")
    bearer = {"Authorization": f"Bearer {TOKENS['seg-a']}"}
    export = requests.get(live.url("/segments/seg-a/export.gz"), headers=bearer)
    assert requests.get(live.url("/segments/seg-a/export.gz"),
                        headers={**bearer, "If-None-Match": export.headers["ETag"]}).status_code == 304
    # every answer is counted, the fast ones included
    metrics = requests.get(live.url("/metrics"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
    assert 'feedgen_http_requests_total{method="GET",route="feeds",status="304"} 3.0' in metrics


def test_head_answers_headers_without_a_body(live, feed_a):
    r = requests.head(live.url("/feeds/feed-a.xml.gz"), headers=BEARER_A)
    assert r.status_code == 200
    assert r.content == b""
    assert int(r.headers["Content-Length"]) == len(expected(feed_a, compressed=True))
    assert r.headers["ETag"]


def test_byte_ranges_resume_downloads_on_both_representations(live, feed_a):
    whole_gz = expected(feed_a, compressed=True)
    whole_xml = expected(feed_a)
    gz = requests.get(live.url("/feeds/feed-a.gz"), headers={**BEARER_A, "Range": "bytes=100-499"})
    assert gz.status_code == 206
    assert gz.content == whole_gz[100:500]
    assert gz.headers["Content-Range"] == f"bytes 100-499/{len(whole_gz)}"
    # a resumed download glued to its first half is the whole file
    rest = requests.get(live.url("/feeds/feed-a.gz"), headers={**BEARER_A, "Range": "bytes=500-"})
    assert whole_gz[:500] + rest.content == whole_gz
    # ranges on the decompressed document, across member boundaries
    for header, want in [("bytes=150-2999", whole_xml[150:3000]), ("bytes=-40", whole_xml[-40:]),
                         ("bytes=0-0", whole_xml[:1]), (f"bytes=10-{10**9}", whole_xml[10:])]:
        r = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY, "Range": header})
        assert r.status_code == 206, header
        assert r.content == want, header
    beyond = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY,
                                                             "Range": f"bytes={len(whole_xml)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(whole_xml)}"
    stale = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY, "Range": "bytes=0-9",
                                                            "If-Range": '"some-old-run"'})
    assert stale.status_code == 200 and stale.content == whole_xml


def test_tokens_right_wrong_missing_and_for_another_feed(live, feed_a, config):
    publish_definition(config, RUN_B, "feed-b", xml_items("B", 5))
    url = live.url("/feeds/feed-a")
    assert requests.get(url, headers=BEARER_A).status_code == 200
    assert requests.get(url, auth=("merchant-center", TOKENS["feed-a"])).status_code == 200
    assert requests.get(url, params={"token": TOKENS["feed-a"]}).status_code == 200
    missing = requests.get(url)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Basic")
    wrong = requests.get(url, headers={"Authorization": "Bearer nope"})
    other = requests.get(url, headers={"Authorization": f"Bearer {TOKENS['feed-b']}"})
    basic_wrong = requests.get(url, auth=("u", "nope"))
    query_wrong = requests.get(url, params={"token": TOKENS["feed-b"]})
    unknown = requests.get(live.url("/feeds/no-such-feed"), headers=BEARER_A)
    unknown_anon = requests.get(live.url("/feeds/no-such-feed"))
    for r in (wrong, other, basic_wrong, query_wrong, unknown):
        assert (r.status_code, r.content) == (404, unknown.content)
    # without credentials, an unknown id looks exactly like an existing one
    assert (unknown_anon.status_code, unknown_anon.content) == (missing.status_code, missing.content)
    # a token with a valid digest but for a definition that is not published: still 404
    assert requests.get(live.url("/segments/seg-a/export"),
                        headers={"Authorization": f"Bearer {TOKENS['seg-a']}"}).status_code == 404


def test_public_definitions_need_no_token(config, feed_a):
    config.data["server"]["public"] = ["feed-a"]
    server = LiveServer(create_app(config))
    try:
        r = requests.get(server.url("/feeds/feed-a"), headers=IDENTITY)
        assert r.status_code == 200 and r.content == expected(feed_a)
        again = requests.get(server.url("/feeds/feed-a"), headers={**IDENTITY, "If-None-Match": r.headers["ETag"]})
        assert again.status_code == 304
    finally:
        server.stop()


@pytest.mark.parametrize("target", [
    "/feeds/..", "/feeds/%2e%2e", "/feeds/.%2E", "/feeds/..%2Fcurrent%2Ffeed-a.json",
    "/feeds/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/feeds/feed-a%2F..%2F..%2Frun.json",
    "/feeds/../current/feed-a.json", "/feeds/FEED-A", "/feeds/feed_a", "/feeds/feed-a.json",
    "/feeds/feed-a.xml.zip", "/feeds/feed-a%00", "/feeds/feed-a%20", "/feeds/feed-a/",
    "/feeds/" + "a" * 200, "/segments/..%2Ffeeds/export", "/segments/%2e%2e/export",
    "/feeds/feed-a?file=..%2F..%2Frun.json", "/current/feed-a.json", "/runs/../current/feed-a.json",
])
def test_path_traversal_and_odd_ids_are_404(live, feed_a, target):
    status, body = live.raw(target, BEARER_A)
    assert status == 404, target
    assert b"<channel>" not in body and b"definition_id" not in body


def test_pointer_switch_during_a_download_never_mixes_runs(live, config):
    # members of ~1 MB each: the server cannot have read run A ahead before the switch
    items_a = xml_items("A", 320, payload=24_000, seed=1)
    folder_a = publish_definition(config, RUN_A, "feed-a", items_a, items_per_part=40)
    want_a = expected(folder_a)
    r = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY}, stream=True)
    chunks = r.iter_content(64 * 1024)
    got = [next(chunks) for _ in range(4)]
    folder_b = publish_definition(config, RUN_B, "feed-a", xml_items("B", 30, payload=2_000, seed=2))
    got.extend(chunks)
    assert b"".join(got) == want_a
    assert r.headers["X-Feedgen-Run"] == RUN_A
    after = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY})
    assert after.content == expected(folder_b)
    assert after.headers["X-Feedgen-Run"] == RUN_B


def test_concurrent_downloads_during_switches_each_get_one_whole_run(live, config):
    folder_a = publish_definition(config, RUN_A, "feed-a", xml_items("A", 200, payload=500, seed=3))
    runs = {RUN_A: expected(folder_a)}
    results = []

    def fetch():
        for _ in range(5):
            r = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY})
            results.append((r.headers["X-Feedgen-Run"], r.content))

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    folder_b = publish_definition(config, RUN_B, "feed-a", xml_items("B", 120, payload=500, seed=4))
    runs[RUN_B] = expected(folder_b)
    for t in threads:
        t.join()
    assert len(results) == 20
    assert all(body == runs[run] for run, body in results)


def test_segment_exports_follow_the_same_rules(live, config):
    rows = [f"c{i},2026-01-01\n" for i in range(30)]
    folder = publish_definition(config, RUN_A, "seg-a", rows, kind="segment", fmt="csv",
                                header="customer_id,joined\n", footer="")
    bearer = {"Authorization": f"Bearer {TOKENS['seg-a']}"}
    r = requests.get(live.url("/segments/seg-a/export"), headers={**bearer, **IDENTITY})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.content == expected(folder)
    gz = requests.get(live.url("/segments/seg-a/export.gz"), headers=bearer)
    assert gzip.decompress(gz.content) == expected(folder)
    assert requests.get(live.url("/segments/seg-a/export")).status_code == 401
    assert requests.get(live.url("/segments/seg-a/export"), headers=BEARER_A).status_code == 404
    # a segment is not a feed, even with its own token
    assert requests.get(live.url("/feeds/seg-a"), headers=bearer).status_code == 404


def _held_run(config, run_id: str) -> None:
    record = new_run_record(run_id, parse_as_of("2026-01-03T00:00:00Z"), "local[1]", status="held")
    record["gate"] = {"breaches": [{"definition_id": "feed-a", "check": "removed_share"}]}
    write_run(config.root, record)


def test_runs_endpoints_need_the_admin_token(live, feed_a, config):
    _held_run(config, RUN_B)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert requests.get(live.url("/runs")).status_code == 401
    assert requests.get(live.url("/runs"), headers=BEARER_A).status_code == 403
    assert requests.get(live.url("/runs"), params={"token": ADMIN_TOKEN}).status_code == 401
    listed = requests.get(live.url("/runs"), headers=admin).json()["runs"]
    assert [(r["run_id"], r["status"]) for r in listed] == [(RUN_B, "held"), (RUN_A, "published")]
    detail = requests.get(live.url(f"/runs/{RUN_B}"), auth=("admin", ADMIN_TOKEN)).json()
    assert detail["gate"]["breaches"][0]["check"] == "removed_share"
    assert requests.get(live.url("/runs/20990101T000000Z-ffffff"), headers=admin).status_code == 404
    for action in ("approve", "reject"):
        assert requests.post(live.url(f"/runs/{RUN_B}/{action}")).status_code == 401
        assert requests.post(live.url(f"/runs/{RUN_B}/{action}"), headers=BEARER_A).status_code == 403
    assert read_run(config.root, RUN_B)["status"] == "held"


def test_admin_rejects_a_held_run_and_cannot_approve_a_published_one(live, feed_a, config):
    _held_run(config, RUN_B)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = requests.post(live.url(f"/runs/{RUN_B}/reject"), headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected"
    assert read_run(config.root, RUN_B)["status"] == "rejected"
    refused = requests.post(live.url(f"/runs/{RUN_A}/approve"), headers=admin)
    assert refused.status_code == 409
    assert "not 'held'" in refused.json()["error"]
    assert requests.post(live.url("/runs/20990101T000000Z-ffffff/approve"), headers=admin).status_code == 404
    assert requests.post(live.url(f"/runs/{RUN_A}/delete"), headers=admin).status_code == 404


def test_healthz_and_metrics(live, feed_a):
    assert requests.get(live.url("/healthz")).json()["status"] == "ok"
    for _ in range(3):
        requests.get(live.url("/feeds/feed-a"), headers=BEARER_A)
    requests.get(live.url("/feeds/feed-a"))
    wanted = ('feedgen_http_requests_total{method="GET",route="feeds",status="200"} 3.0',
              'feedgen_http_requests_total{method="GET",route="feeds",status="401"} 1.0')
    # A request is counted when the server closes its body, which can come a moment after
    # the client has read the response: scrape until both are in, for up to 5 s.
    deadline = time.monotonic() + 5
    while True:
        text = requests.get(live.url("/metrics"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
        if all(w in text for w in wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert wanted[0] in text
    assert wanted[1] in text
    assert 'feedgen_http_response_bytes_total{route="feeds"}' in text
    assert 'feedgen_http_request_duration_seconds_bucket{le="0.005",route="feeds"}' in text
    age = [line for line in text.splitlines() if line.startswith("feedgen_current_age_seconds{")]
    assert len(age) == 1 and 'definition_id="feed-a"' in age[0] and float(age[0].split()[-1]) >= 0
