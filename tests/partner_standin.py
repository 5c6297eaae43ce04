"""A fake partner API on loopback for the connector tests and benchmark.

It speaks just enough of each partner's protocol to accept calls, refuse single items
the way that partner does, and fail on demand: answer 500, 429 with Retry-After, hang
past the client's timeout. It records every call it received.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from tests.support import free_port


@dataclass
class Call:
    """One request the stand-in received, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    at: float
    items: list[dict[str, str]] = field(default_factory=list)  # {key, op} per item in the call


class PartnerStandin:
    """Start with ``.start()``; script faults with ``fail_next``; read ``calls`` / ``accepted_keys()``."""

    def __init__(self, webhook_secret: str | None = None, record_bodies: bool = True) -> None:
        self.port = free_port()
        self.calls: list[Call] = []
        self.faults: list[tuple[str, float]] = []  # ("500"|"429"|"hang"|"400"|"401", arg)
        self.always: tuple[str, float] | None = None
        self.reject: dict[str, str] = {}  # entity key -> reason
        self.webhook_secret = webhook_secret
        self.record_bodies = record_bodies
        self.lock = threading.Lock()
        self.accepted_items = 0
        self.received = 0  # calls that arrived, answered or not yet
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The head and the body go out in two writes: with Nagle on, the body waits for
            # the client's delayed ACK (~40 ms a call), which no real partner API adds.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, body = standin._respond(self.command, self.path, dict(self.headers), raw)
                if status == 0:
                    return  # hung: the client gave up; answering would only fail
                data = orjson.dumps(body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_DELETE = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        # stop() waits for the serving loop's next poll: 0.05 s instead of the default 0.5 s
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PartnerStandin:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, kind: str, times: int = 1, arg: float = 0.0) -> None:
        """Answer the next ``times`` calls with ``kind``: '500', '429' (Retry-After=arg), 'hang' (arg s), 'slow' (200 after arg s), '400', '401'."""
        with self.lock:
            self.faults.extend([(kind, arg)] * times)

    def accepted_keys(self) -> list[str]:
        """Keys of every item taken in a 2xx call (refused items excluded), in arrival order."""
        with self.lock:
            return [it["key"] for c in self.calls if 200 <= c.status < 300
                    for it in c.items if not it.get("rejected")]

    def wait_for(self, n_items: int, timeout: float = 60.0, proc: Any = None) -> None:
        """Wait until ``n_items`` were taken; fail early when ``proc`` (the sender) exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.accepted_items >= n_items:
                return
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"sender exited with {proc.returncode} after {self.accepted_items} items")
            time.sleep(0.05)
        raise TimeoutError(f"stand-in took {self.accepted_items} items, expected {n_items}")

    # --- protocol ----------------------------------------------------------------------

    def _respond(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict, Any]:
        now = time.monotonic()
        with self.lock:
            self.received += 1
        try:
            body = orjson.loads(raw) if raw else None
        except ValueError:
            body = None
        with self.lock:
            fault = self.faults.pop(0) if self.faults else self.always
        kind = _kind(path)
        items = _items(kind, method, body)
        call = Call(method, path, headers, body if self.record_bodies else None, 200, now, items)
        if fault is not None:
            name, arg = fault
            call.status = {"hang": 0}.get(name, int(name) if name.isdigit() else 500)
            with self.lock:
                self.calls.append(call)
            if name == "hang":
                time.sleep(arg)
                return 0, {}, None
            if name == "slow":  # answer normally, but late
                time.sleep(arg)
                with self.lock:
                    self.calls.remove(call)
                call.status = 200
            else:
                extra = {"Retry-After": f"{arg:g}"} if name == "429" else {}
                return call.status, extra, {"error": {"message": f"stand-in fault {name}", "code": call.status}}
        if kind == "webhook" and self.webhook_secret is not None:
            ts = headers.get("X-Feedgen-Timestamp", "")
            want = "sha256=" + hmac.new(self.webhook_secret.encode(), ts.encode() + b"." + raw,
                                        hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, headers.get("X-Feedgen-Signature", "")):
                call.status = 401
                with self.lock:
                    self.calls.append(call)
                return 401, {}, {"error": "bad signature"}
        rejected = {i: self.reject[it["key"]] for i, it in enumerate(items) if it["key"] in self.reject}
        for i in rejected:
            items[i]["rejected"] = "1"
        with self.lock:
            self.calls.append(call)
            self.accepted_items += len(items) - len(rejected)
        return 200, {}, _answer(kind, body, items, rejected)


def _kind(path: str) -> str:
    if path.endswith("/items_batch"):
        return "meta_catalog"
    if path.endswith("/products/batch"):
        return "google"
    if path.endswith("/users"):
        return "meta_audience"
    return "webhook"


def _items(kind: str, method: str, body: Any) -> list[dict[str, str]]:
    if not isinstance(body, dict):
        return []
    if kind == "meta_catalog":
        return [{"key": r["data"]["id"], "op": r["method"]} for r in body.get("requests", [])]
    if kind == "google":
        out = []
        for e in body.get("entries", []):
            key = e["product"]["offerId"] if e["method"] == "insert" else e["productId"].rsplit(":", 1)[1]
            out.append({"key": key, "op": e["method"], "batch_id": e["batchId"]})
        return out
    if kind == "meta_audience":
        schema = body["payload"]["schema"]
        col = schema.index("EXTERN_ID")
        return [{"key": row[col], "op": method} for row in body["payload"]["data"]]
    return [{"key": e["key"], "op": e["op"], "event_id": e["event_id"]} for e in body.get("events", [])]


def _answer(kind: str, body: Any, items: list[dict[str, str]], rejected: dict[int, str]) -> Any:
    if kind == "meta_catalog":
        return {"handles": ["standin-handle"], "validation_status": [
            {"retailer_id": items[i]["key"], "errors": [{"message": why}], "warnings": []}
            for i, why in rejected.items()]}
    if kind == "google":
        entries = []
        for i, it in enumerate(items):
            if i in rejected:
                entries.append({"batchId": it["batch_id"], "errors": {
                    "code": 400, "message": rejected[i],
                    "errors": [{"reason": "invalid", "message": rejected[i]}]}})
            else:
                entries.append({"batchId": it["batch_id"], "kind": "content#productsCustomBatchResponseEntry"})
        return {"kind": "content#productsCustomBatchResponse", "entries": entries}
    if kind == "meta_audience":
        return {"audience_id": "standin", "session_id": body["session"]["session_id"],
                "num_received": len(items), "num_invalid_entries": len(rejected),
                "invalid_entry_samples": {items[i]["key"]: why for i, why in rejected.items()}}
    return {"accepted": len(items) - len(rejected),
            "rejected": [{"event_id": items[i]["event_id"], "reason": why} for i, why in rejected.items()]}


# --- helpers for producing and reading events ----------------------------------------------


def make_event(key: str, op: str = "add", destinations: list[str] | None = None, data: Any = None,
               run_id: str = "20261122T030500Z-aaaaaa", definition_id: str = "feed-1",
               entity: str = "offer") -> dict[str, Any]:
    """A delta event as the emitter writes it (docs/internals.md "Delta events")."""
    if data is None and op not in ("remove", "leave"):
        data = {"title": f"Item {key}", "price": {"amount": 10.5, "currency": "PLN"},
                "availability": "in_stock", "link": f"https://shop.example/{key}"}
    return {
        "schema_version": 1,
        "event_id": hashlib.sha256(f"{run_id}|{definition_id}|{key}|{op}".encode()).hexdigest()[:32],
        "run_id": run_id, "definition_id": definition_id, "destinations": destinations or [],
        "entity": entity, "key": key, "op": op, "changed": ["price"] if op == "update" else [],
        "data": data, "as_of": "2026-11-22T03:05:00Z",
    }


def produce(bootstrap: str, topic: str, events: list[Any]) -> None:
    """Produce events (dicts as JSON with the emitter's headers; bytes as they are)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for ev in events:
        if isinstance(ev, bytes):
            key, value, headers = b"raw", ev, []
        else:
            key, value = ev["key"].encode(), json.dumps(ev).encode()
            headers = [("op", ev["op"].encode()), ("destinations", ",".join(ev["destinations"]).encode()),
                       ("event_id", ev["event_id"].encode())]
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0, "broker did not take every test event"


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The JSON values (with their ``_headers``) of ``expected`` messages of ``topic``, and any beyond.

    Every partition is assigned from its start: no consumer group join to wait for (tansu holds
    a first join for half the session timeout, 3 s a call).
    """
    from tests.snapshot_helpers import consume

    out: list[dict[str, Any]] = []
    for msg in consume(bootstrap, topic, expected, timeout):
        value = json.loads(msg.value())
        value["_headers"] = {k: v.decode() for k, v in (msg.headers() or [])}
        out.append(value)
    return out


def write_config(tmp_path: Any, bootstrap: str, topic: str, connectors: dict[str, Any]) -> Any:
    """A config file with ``kafka`` pointing at the test broker and the given connectors."""
    import yaml

    path = tmp_path / "feedgen.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap": bootstrap, "topic": topic},
                                    "connectors": connectors}), encoding="utf-8")
    return path


def run_connector(connector: Any, until: Any, timeout: float = 60.0) -> dict[str, int]:
    """Run ``connector`` in a thread until ``until(counts)`` is true, then stop it cleanly."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["counts"] = connector.run()
        except BaseException as err:  # surfaced to the test below
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and thread.is_alive() and not until(connector.metrics.counts):
        time.sleep(0.05)
    connector.stop()
    thread.join(60)
    if "error" in result:
        raise result["error"]
    assert until(result["counts"]), f"connector stopped with {result['counts']}"
    return result["counts"]
