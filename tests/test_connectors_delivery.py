"""Each built-in connector against the real broker and the partner stand-in."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from feedgen.connectors.base import Connector, PartnerAuthError, settings_from_config
from feedgen.connectors.webhook import signature
from feedgen.core.config import load_config
from tests.partner_standin import (
    PartnerStandin,
    make_event,
    produce,
    read_topic,
    run_connector,
    write_config,
)

ENV = {"META_TOKEN": "meta-secret", "GOOGLE_TOKEN": "google-secret", "HOOK_SECRET": "hook-secret"}


@pytest.fixture
def standin():
    server = PartnerStandin(webhook_secret="hook-secret").start()
    yield server
    server.stop()


@pytest.fixture
def topic():
    return f"deltas-{uuid.uuid4().hex[:8]}"


def section(kind: str, endpoint: str, **extra):
    base = {"type": kind, "endpoint": endpoint, "group_id": f"g-{uuid.uuid4().hex[:8]}",
            "dead_letter_topic": f"dlq-{uuid.uuid4().hex[:8]}", "linger_ms": 200,
            "backoff": {"initial_s": 0.05, "max_s": 0.2}, "rate_limit_per_s": 0, "timeout_s": 5,
            "session_timeout_ms": 6000}
    specific = {
        "meta_catalog_batch": {"token_env": "META_TOKEN", "catalog_id": "123"},
        "google_merchant_api": {"token_env": "GOOGLE_TOKEN", "merchant_id": "42"},
        "meta_custom_audience": {"token_env": "META_TOKEN", "audience_id": "777"},
        "webhook": {"secret_env": "HOOK_SECRET"},
    }[kind]
    return {**base, **specific, **extra}


ENDPOINTS = {
    "meta_catalog_batch": "/v21.0/{catalog_id}/items_batch",
    "google_merchant_api": "/content/v2.1/products/batch",
    "meta_custom_audience": "/v21.0/{audience_id}/users",
    "webhook": "/hooks/feedgen",
}


def connector_for(tmp_path, bootstrap, topic, standin, kind, name=None, **extra):
    name = name or kind
    cfg = write_config(tmp_path, bootstrap, topic,
                       {name: section(kind, standin.url + ENDPOINTS[kind], **extra)})
    settings = settings_from_config(load_config(cfg, environ={}), name)
    return Connector(settings, environ=ENV, seed=1), settings


def done(n):
    return lambda c: c["delivered"] + c["dead_lettered"] >= n


def test_meta_catalog_batch_sends_create_update_delete_with_idempotency_keys(tmp_path, kafka_bootstrap, topic, standin):
    events = [make_event("o1", "add", ["meta_catalog_batch"]),
              make_event("o2", "update", ["meta_catalog_batch", "google_merchant_api"]),
              make_event("o3", "remove", ["meta_catalog_batch"]),
              make_event("o4", "refresh", ["meta_catalog_batch"]),
              make_event("o5", "add", ["google_merchant_api"])]
    produce(kafka_bootstrap, topic, events)
    connector, _ = connector_for(tmp_path, kafka_bootstrap, topic, standin, "meta_catalog_batch")
    counts = run_connector(connector, done(4))

    assert counts["delivered"] == 4 and counts["skipped"] == 1
    assert sorted(standin.accepted_keys()) == ["o1", "o2", "o3", "o4"]
    call = standin.calls[0]
    assert call.path == "/v21.0/123/items_batch"
    assert call.headers["Authorization"] == "Bearer meta-secret"
    by_key = {r["data"]["id"]: r for c in standin.calls for r in c.body["requests"]}
    assert {k: r["method"] for k, r in by_key.items()} == {"o1": "CREATE", "o2": "UPDATE", "o3": "DELETE", "o4": "UPDATE"}
    assert by_key["o1"]["data"]["price"] == "10.50 PLN" and by_key["o1"]["data"]["availability"] == "in stock"
    assert by_key["o3"]["data"] == {"id": "o3"}
    for c in standin.calls:
        ids = [e["event_id"] for e in events if e["key"] in {r["data"]["id"] for r in c.body["requests"]}]
        assert len(c.headers["Idempotency-Key"]) == 32
        assert ids  # the key is derived from the call's events
    # Offsets were committed: the same group starts after them and sends nothing again.
    again, _ = connector_for(tmp_path, kafka_bootstrap, topic, standin, "meta_catalog_batch",
                             group_id=connector.settings.group_id)
    produce(kafka_bootstrap, topic, [make_event("o6", "add", ["meta_catalog_batch"])])
    run_connector(again, done(1))
    assert sorted(standin.accepted_keys()) == ["o1", "o2", "o3", "o4", "o6"]


def test_google_merchant_api_inserts_and_deletes_with_batch_ids_from_event_ids(tmp_path, kafka_bootstrap, topic, standin):
    events = [make_event("g1", "add", ["google_merchant_api"]), make_event("g2", "remove", ["google_merchant_api"])]
    produce(kafka_bootstrap, topic, events)
    connector, _ = connector_for(tmp_path, kafka_bootstrap, topic, standin, "google_merchant_api")
    run_connector(connector, done(2))

    entries = {e["method"]: e for c in standin.calls for e in c.body["entries"]}
    assert entries["insert"]["batchId"] == int(events[0]["event_id"][:8], 16)
    assert entries["insert"]["merchantId"] == "42"
    product = entries["insert"]["product"]
    assert product["offerId"] == "g1" and product["price"] == {"value": "10.50", "currency": "PLN"}
    assert product["availability"] == "in stock" and product["targetCountry"] == "PL"
    assert entries["delete"]["productId"] == "online:pl:PL:g2"
    assert standin.calls[0].headers["Authorization"] == "Bearer google-secret"


def test_meta_custom_audience_adds_and_removes_hashed_users(tmp_path, kafka_bootstrap, topic, standin):
    events = [make_event("c1", "join", ["meta_custom_audience"], data={"email": " Ann@Example.COM ", "phone": "+48 601 234 567"}, entity="customer"),
              make_event("c2", "leave", ["meta_custom_audience"], entity="customer")]
    produce(kafka_bootstrap, topic, events)
    connector, _ = connector_for(tmp_path, kafka_bootstrap, topic, standin, "meta_custom_audience")
    run_connector(connector, done(2))

    calls = {c.method: c for c in standin.calls}
    assert set(calls) == {"POST", "DELETE"}
    assert calls["POST"].path == "/v21.0/777/users"
    join = calls["POST"].body["payload"]
    assert join["schema"] == ["EXTERN_ID", "EMAIL", "PHONE"]
    assert join["data"] == [["c1", hashlib.sha256(b"ann@example.com").hexdigest(),
                             hashlib.sha256(b"48601234567").hexdigest()]]
    assert calls["DELETE"].body["payload"] == {"schema": ["EXTERN_ID"], "data": [["c2"]]}


def test_webhook_batches_are_signed_with_hmac_sha256(tmp_path, kafka_bootstrap, topic, standin):
    events = [make_event(f"w{i}", "add", ["hook"]) for i in range(3)]
    produce(kafka_bootstrap, topic, events)
    connector, _ = connector_for(tmp_path, kafka_bootstrap, topic, standin, "webhook", name="hook")
    run_connector(connector, done(3))

    call = standin.calls[0]
    assert call.status == 200  # the stand-in checked the HMAC of the raw body
    assert call.headers["X-Feedgen-Signature"].startswith("sha256=")
    assert signature("hook-secret", "1", b"{}") != signature("other", "1", b"{}")
    # Events travel as the emitter wrote them.
    assert sorted((e for c in standin.calls for e in c.body["events"]), key=lambda e: e["key"]) == events


@pytest.mark.parametrize("kind", sorted(ENDPOINTS))
def test_items_the_partner_rejects_go_to_dead_letters_with_its_reason_and_the_rest_is_done(
        tmp_path, kafka_bootstrap, topic, standin, kind):
    ops = ("join", "join") if kind == "meta_custom_audience" else ("add", "update")
    data = {"email": "x@example.com"} if kind == "meta_custom_audience" else None
    events = [make_event(f"k{i}", ops[i % 2], [kind], data=data) for i in range(6)]
    produce(kafka_bootstrap, topic, events)
    standin.reject["k2"] = "price must be positive"
    connector, settings = connector_for(tmp_path, kafka_bootstrap, topic, standin, kind)
    counts = run_connector(connector, done(6))

    assert counts["delivered"] == 5 and counts["dead_lettered"] == 1
    assert len(standin.calls) == 1  # the good items were not sent again
    assert sorted(standin.accepted_keys()) == ["k0", "k1", "k3", "k4", "k5"]
    [dead] = read_topic(kafka_bootstrap, settings.dead_letter_topic, 1)
    assert dead["event"] == events[2]
    assert "price must be positive" in dead["reason"] and dead["attempts"] == 1
    assert dead["connector"] == kind


def test_poison_events_go_to_dead_letters_and_do_not_block_the_rest(tmp_path, kafka_bootstrap, topic, standin):
    no_price = make_event("bad", "add", ["google_merchant_api"], data={"title": "no price"})
    events = [make_event("p1", "add", ["google_merchant_api"]), b"{not json", no_price,
              make_event("p2", "add", ["google_merchant_api"])]
    produce(kafka_bootstrap, topic, events)
    connector, settings = connector_for(tmp_path, kafka_bootstrap, topic, standin, "google_merchant_api")
    counts = run_connector(connector, done(4))

    assert sorted(standin.accepted_keys()) == ["p1", "p2"] and counts["dead_lettered"] == 2
    dead = {d["reason"].split(":")[1].strip(): d for d in read_topic(kafka_bootstrap, settings.dead_letter_topic, 2)}
    assert dead["unparseable event"]["event"] == "{not json"
    assert "data.price is required" in dead["mapping error"]["reason"]
    assert dead["mapping error"]["event"] == no_price


def test_webhook_signed_with_the_wrong_secret_is_refused_and_nothing_is_committed(
        tmp_path, kafka_bootstrap, topic, standin):
    produce(kafka_bootstrap, topic, [make_event("w1", "add", ["hook"])])
    cfg = write_config(tmp_path, kafka_bootstrap, topic, {"hook": section("webhook", standin.url + "/hooks/feedgen")})
    settings = settings_from_config(load_config(cfg, environ={}), "hook")
    connector = Connector(settings, environ={"HOOK_SECRET": "not-the-shared-secret"})
    with pytest.raises(PartnerAuthError, match="HTTP 401"):
        run_connector(connector, done(1))
    assert [c.status for c in standin.calls] == [401] and standin.accepted_keys() == []
