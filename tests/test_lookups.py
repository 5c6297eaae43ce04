from __future__ import annotations

import csv
import datetime as dt
import io
import secrets
import shutil
import threading
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
import requests

from feedgen.aggregator.schemas import CUSTOMER_AGGREGATE_SCHEMA
from feedgen.core.config import load_config
from feedgen.core.runs import format_ts, new_run_record, write_run
from feedgen.fileserver.app import create_app
from feedgen.fileserver.lookups import lookups
from feedgen.generator.definitions import definitions_from_mapping
from feedgen.generator.generate import generate_entity
from feedgen.generator.membership import build_membership_index, publish_membership
from feedgen.generator.parts import assemble
from feedgen.jobs.publish import publish_run
from tests.fileserver_support import LiveServer, sha

RUN_A = "20261101T000000Z-aaaaaa"
RUN_B = "20261102T000000Z-bbbbbb"
AS_OF = {RUN_A: dt.datetime(2026, 11, 1, tzinfo=dt.UTC), RUN_B: dt.datetime(2026, 11, 2, tzinfo=dt.UTC)}

DEFINITIONS = {"segments": [
    {"id": "store-{store_id}-buyers", "for_each": {"store_id": ["s1", "s2"]},
     "where": {"history": "orders", "where": {"field": "store_id", "eq": "{store_id}"}, "exists": True}},
    {"id": "{category}-fans", "for_each": {"category": ["books", "toys"]},
     "where": {"history": "orders", "where": {"field": "category", "eq": "{category}"}, "count": {"gte": 1}}},
    {"id": "loyal", "where": {"field": "orders_count", "gte": 2}},
    {"id": "never-matches", "where": {"field": "orders_count", "gte": 1000}},
]}
STORE_TYPE = "store-{store_id}-buyers"


def _order(n, store, category):
    return {"order_id": f"o{n}", "store_id": store, "category": category, "amount": Decimal("10.00"),
            "currency": "PLN", "ts": dt.datetime(2026, 10, 1, 12, 0)}


def _customers(run_id):
    orders = {
        "c-1": [_order(1, "s1", "books"), _order(2, "s2", "toys")],
        "c-2": [_order(3, "s1", "books")],
        "c-3": [],
        "c-4": [_order(4, "s2", "toys"), _order(5, "s2", "toys"), _order(6, "s2", "books")],
    }
    if run_id == RUN_B:  # c-2 moves from store s1 to s2; c-3 starts buying
        orders["c-2"] = [_order(7, "s2", "books")]
        orders["c-3"] = [_order(8, "s1", "toys")]
    return [{"customer_id": cid, "email": f"{cid}@example.com", "orders": o, "events": [],
             "orders_count": len(o), "signup_at": dt.datetime(2025, 1, 1)} for cid, o in orders.items()]


def _make_run(spark, config, run_id):
    """A real run: the single-pass generator on a tiny aggregate, the index, publication."""
    definitions = list(definitions_from_mapping(DEFINITIONS))
    df = spark.createDataFrame(_customers(run_id), CUSTOMER_AGGREGATE_SCHEMA)
    root = config.root
    stats = generate_entity(spark, df, definitions, entity="customer", root=root, run_id=run_id,
                            as_of=AS_OF[run_id])
    manifest = build_membership_index(spark, root, run_id, definitions, as_of=format_ts(AS_OF[run_id]),
                                      customers_df=df)
    record = new_run_record(run_id, AS_OF[run_id], "local[2]", status="generating")
    record["definitions"] = stats
    write_run(root, record)
    return manifest


def _publish(config, run_id):
    publish_run(config, run_id)
    return publish_membership(config, run_id)


def _exports(root, run_id):
    """customer id → the segments whose export (ids_csv) lists it."""
    out: dict[str, set[str]] = {}
    for folder in sorted((Path(root) / "runs" / run_id / "segments").iterdir()):
        rows = list(csv.reader(io.StringIO(assemble(folder, 0).decode())))
        assert rows[0] == ["customer_id"]
        for (cid,) in rows[1:]:
            out.setdefault(cid, set()).add(folder.name)
    return out


def _app(config):
    app = create_app(config)
    if "lookups" not in app.blueprints:  # until app.py registers it itself
        app.register_blueprint(lookups)
    return app


@pytest.fixture(scope="module")
def published(spark, tmp_path_factory):
    """Root with runs A and B generated; only A published. Shared: Spark work is the slow part."""
    base = tmp_path_factory.mktemp("lookups")
    config = load_config(None, root=str(base / "root"), environ={})
    manifests = {run_id: _make_run(spark, config, run_id) for run_id in (RUN_A, RUN_B)}
    _publish(config, RUN_A)
    return config, manifests


@pytest.fixture(scope="module")
def live(published):
    config, _ = published
    server = LiveServer(_app(config))
    yield server
    server.stop()


def _segments(live, customer_id, **params):
    r = requests.get(live.url(f"/customers/{customer_id}/segments"), params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _ids(answer):
    return {s["id"] for s in answer["segments"]}


def test_membership_answers_equal_the_segment_exports_of_the_run(live, published):
    config, manifests = published
    exports = _exports(config.root, RUN_A)
    assert manifests[RUN_A]["customers"] == 4 and manifests[RUN_A]["segments"] == 6
    for cid in ("c-1", "c-2", "c-3", "c-4"):
        answer = _segments(live, cid)
        assert answer["known"] is True
        assert answer["run_id"] == RUN_A and answer["as_of"] == "2026-11-01T00:00:00Z"
        assert _ids(answer) == exports.get(cid, set())
    assert exports["c-1"] == {"store-s1-buyers", "store-s2-buyers", "books-fans", "toys-fans", "loyal"}


def test_answer_carries_segment_attributes_and_its_age(live):
    r = requests.get(live.url("/customers/c-2/segments"), timeout=10)
    assert r.headers["X-Feedgen-Run"] == RUN_A
    age = int(r.headers["Age"])
    expected = (dt.datetime.now(dt.UTC) - AS_OF[RUN_A]).total_seconds()
    assert abs(age - expected) < 60
    by_id = {s["id"]: s for s in r.json()["segments"]}
    assert by_id["store-s1-buyers"] == {"id": "store-s1-buyers", "type": STORE_TYPE, "store_id": "s1",
                                        "category": None, "params": {"store_id": "s1"}}
    assert by_id["books-fans"]["category"] == "books" and by_id["books-fans"]["type"] == "{category}-fans"


def test_customer_in_no_segment_is_known_with_an_empty_list(live):
    answer = _segments(live, "c-3")
    assert answer == {"customer_id": "c-3", "known": True, "run_id": RUN_A,
                      "as_of": "2026-11-01T00:00:00Z", "segments": []}


def test_unknown_customer_is_not_an_error(live):
    answer = _segments(live, "nobody-42")
    assert answer["known"] is False and answer["segments"] == [] and answer["run_id"] == RUN_A


@pytest.mark.parametrize(("params", "expected"), [
    ({"store_id": "s1"}, {"store-s1-buyers"}),
    ({"type": STORE_TYPE}, {"store-s1-buyers", "store-s2-buyers"}),
    ({"category": "toys"}, {"toys-fans"}),
    ({"segment": ["loyal", "books-fans", "never-matches"]}, {"loyal", "books-fans"}),
    ({"type": STORE_TYPE, "store_id": ["s2", "s9"]}, {"store-s2-buyers"}),
    ({"type": "loyal", "category": "books"}, set()),
    ({"store_id": "no-such-store"}, set()),
])
def test_filters_keep_only_matching_segments(live, params, expected):
    assert _ids(_segments(live, "c-1", **params)) == expected


def test_batch_lookup_answers_in_request_order_with_filters(live):
    body = {"customer_ids": ["c-4", "nobody", "c-1", "c-4"], "store_id": "s2"}
    r = requests.post(live.url("/customers/segments/lookup"), json=body, timeout=10)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["run_id"] == RUN_A and r.headers["X-Feedgen-Run"] == RUN_A
    assert [x["customer_id"] for x in data["results"]] == body["customer_ids"]
    assert [x["known"] for x in data["results"]] == [True, False, True, True]
    assert [_ids(x) for x in data["results"]] == [{"store-s2-buyers"}, set(), {"store-s2-buyers"},
                                                  {"store-s2-buyers"}]
    # query-string filters work as on GET
    r = requests.post(live.url("/customers/segments/lookup?category=books"), json={"customer_ids": ["c-4"]},
                      timeout=10)
    assert _ids(r.json()["results"][0]) == {"books-fans"}


def test_batch_lookup_takes_a_thousand_ids(live):
    ids = [f"c-{n}" for n in range(1, 1001)]
    r = requests.post(live.url("/customers/segments/lookup"), json={"customer_ids": ids}, timeout=10)
    assert r.status_code == 200
    known = [x["customer_id"] for x in r.json()["results"] if x["known"]]
    assert known == ["c-1", "c-2", "c-3", "c-4"]


@pytest.mark.parametrize(("path", "needle"), [
    ("/customers/bad%20id/segments", "malformed customer id"),
    ("/customers/" + "x" * 129 + "/segments", "malformed customer id"),
    ("/customers/-leading-dash/segments", "malformed customer id"),
    ("/customers/c-1/segments?storeid=s1", "unknown filter 'storeid'"),
    ("/customers/c-1/segments?segment=Not_An_Id", "is not a segment id"),
    ("/customers/c-1/segments?type=", "filter type='' is malformed"),
    ("/customers/c-1/segments?store_id=a%00b", "is malformed"),
])
def test_malformed_ids_and_filters_are_400_with_a_message(live, path, needle):
    r = requests.get(live.url(path), timeout=10)
    assert r.status_code == 400
    assert needle in r.json()["error"]


@pytest.mark.parametrize(("body", "needle"), [
    ({"customer_ids": [f"c-{n}" for n in range(1001)]}, "at most 1000 per call"),
    ({"customer_ids": ["c-1", "bad id"]}, "customer_ids[1]: malformed customer id"),
    ({"customer_ids": ["c-1", 7]}, "customer_ids[1]: malformed customer id"),
    ({"customer_ids": "c-1"}, "customer_ids must be a list"),
    ({"ids": ["c-1"]}, "customer_ids must be a list"),
    ({"customer_ids": ["c-1"], "stores": "s1"}, "unknown key 'stores'"),
    ({"customer_ids": ["c-1"], "segment": ["UPPER"]}, "is not a segment id"),
    ([1, 2], "expected a JSON object"),
])
def test_malformed_batch_bodies_are_400_with_a_message(live, body, needle):
    r = requests.post(live.url("/customers/segments/lookup"), json=body, timeout=10)
    assert r.status_code == 400
    assert needle in r.json()["error"]


def test_lookup_token_is_required_when_configured(published):
    config, _ = published
    guarded = load_config(None, root=config.root, environ={})
    guarded.data["server"]["lookup_token_sha256"] = sha("lookup-secret")
    server = LiveServer(_app(guarded))
    try:
        url = server.url("/customers/c-1/segments")
        assert requests.get(url, timeout=10).status_code == 401
        assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 403
        r = requests.get(url, headers={"Authorization": "Bearer lookup-secret"}, timeout=10)
        assert r.status_code == 200 and r.json()["known"] is True
        assert requests.post(server.url("/customers/segments/lookup"), json={"customer_ids": ["c-1"]},
                             timeout=10).status_code == 401
    finally:
        server.stop()


def test_nothing_published_yet_is_503_with_the_fix(tmp_path):
    (tmp_path / "empty").mkdir()  # (a store folder that does not exist is "unavailable", not "unpublished")
    config = load_config(None, root=str(tmp_path / "empty"), environ={})
    server = LiveServer(_app(config))
    try:
        r = requests.get(server.url("/customers/c-1/segments"), timeout=10)
        assert r.status_code == 503 and "publish" in r.json()["error"]
    finally:
        server.stop()


def test_publish_during_a_stream_of_lookups_loses_no_request(spark, published, live):
    config, _ = published
    expected = {RUN_A: _exports(config.root, RUN_A), RUN_B: _exports(config.root, RUN_B)}
    assert expected[RUN_A]["c-2"] != expected[RUN_B]["c-2"]
    stop = threading.Event()
    seen: list[tuple[int, str | None, bool]] = []
    errors: list[str] = []

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    r = session.get(live.url("/customers/c-2/segments"), timeout=10)
                    answer = r.json() if r.status_code == 200 else {}
                    run_id = answer.get("run_id")
                    consistent = run_id in expected and _ids(answer) == expected[run_id].get("c-2", set())
                    seen.append((r.status_code, run_id, consistent))
                except Exception as err:  # noqa: BLE001 - every failure counts as a lost request
                    errors.append(repr(err))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        while len(seen) < 50:
            stop.wait(0.01)
        _publish(config, RUN_B)
        before = len(seen)
        while len(seen) < before + 100:
            stop.wait(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert errors == []
    assert {status for status, _, _ in seen} == {200}
    assert all(ok for _, _, ok in seen)
    runs = [run_id for _, run_id, _ in seen]
    assert runs[0] == RUN_A and runs[-1] == RUN_B
    # once a request saw run B, later requests never go back to A (per process)
    assert RUN_A not in runs[runs.index(RUN_B) + 8:]
    assert _segments(live, "c-3")["segments"] != []


def test_s3_serving_store_downloads_the_index_once_per_run(published, s3_endpoint, tmp_path):
    config, _ = published
    bucket = f"lookups-{secrets.token_hex(4)}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    s3 = load_config(None, root=str(tmp_path / "root"), environ={})
    s3.data["publish"].update({"store": f"s3://{bucket}/pub", "s3_endpoint": s3_endpoint})
    s3.data["server"].update({"lookup_cache_dir": str(tmp_path / "cache"), "lookup_pointer_ttl": 0.1})
    shutil.copytree(Path(config.root) / "runs", Path(s3.root) / "runs")
    _publish(s3, RUN_A)
    server = LiveServer(_app(s3))
    try:
        assert _ids(_segments(server, "c-2")) == {"store-s1-buyers", "books-fans"}
        assert sorted(p.name for p in (tmp_path / "cache").glob("*.sqlite")) == [f"{RUN_A}.sqlite"]
        _publish(s3, RUN_B)
        deadline = threading.Event()
        answer = _segments(server, "c-2")
        for _ in range(50):
            if answer["run_id"] == RUN_B:
                break
            deadline.wait(0.05)
            answer = _segments(server, "c-2")
        assert answer["run_id"] == RUN_B
        assert _ids(answer) == {"store-s2-buyers", "books-fans"}
        assert sorted(p.name for p in (tmp_path / "cache").glob("*.sqlite")) == [
            f"{RUN_A}.sqlite", f"{RUN_B}.sqlite"]
    finally:
        server.stop()


def test_fast_path_and_flask_route_answer_the_same(published):
    from werkzeug.test import Client

    config, _ = published
    fast = create_app(config).extensions["feedgen_lookups"]["fast"]
    for url in ("/customers/c-1/segments?store_id=s1&type=" + STORE_TYPE.replace("{", "%7B").replace("}", "%7D"),
                "/customers/c-3/segments", "/customers/nobody/segments"):
        via_fast = Client(fast).get(url)
        via_flask = Client(fast.wsgi_app).get(url)  # Flask alone
        assert via_fast.status_code == via_flask.status_code == 200
        assert via_fast.get_json() == via_flask.get_json()
        for header in ("Content-Type", "X-Feedgen-Run", "Cache-Control"):
            assert via_fast.headers[header] == via_flask.headers[header]


def test_old_run_stays_open_until_its_last_request_finishes(published, tmp_path):
    from feedgen.core.store import LocalStore
    from feedgen.fileserver.lookups import MembershipReader

    config, _ = published
    root = load_config(None, root=str(tmp_path / "root"), environ={})
    shutil.copytree(Path(config.root) / "runs", Path(root.root) / "runs")
    _publish(root, RUN_A)
    reader = MembershipReader(LocalStore(root.root))
    held = reader.acquire()  # a request still running on run A
    assert held.run_id == RUN_A
    _publish(root, RUN_B)
    for _ in range(100):  # the switch happens in the background
        index = reader.acquire()
        reader.release(index)
        if index.run_id == RUN_B:
            break
        threading.Event().wait(0.02)
    assert index.run_id == RUN_B
    conn = held.connection()
    assert conn.execute("SELECT count(*) FROM members").fetchone()[0] == 4  # still usable
    held.give_back(conn)
    reader.release(held)
    assert held.opened == []  # closed once its last user left
