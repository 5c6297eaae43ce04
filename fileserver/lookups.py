"""Segment membership lookups: "which segments is customer X in?" (Blueprint ``lookups``).

``GET /customers/<customer_id>/segments[?type=&store_id=&category=&segment=]`` →
``{customer_id, known, run_id, as_of, segments: [{id, type, store_id, category, params}]}``;
``POST /customers/segments/lookup`` with ``{"customer_ids": [...]}`` (at most 1,000, filters
in the query string or the body) → ``{run_id, as_of, results: [{customer_id, known, segments}]}``.
Filters: each may repeat (any of its values), different filters all apply. An unknown
customer is ``known: false`` with no segments (200); a malformed id, filter or body is 400,
a body over ``MAX_BODY`` bytes (however it is sent, chunked included) is 413 and is not read
past the limit, a JSON object naming a key twice is 400. While the serving store cannot be
read and no index is open, lookups are 503 (an open index keeps answering). Ids and filter values are matched in full (``feedgen.fileserver.params``),
on the fast path and the Flask route alike.

Freshness: ``run_id`` and ``as_of`` of the run answering, ``X-Feedgen-Run``, and ``Age``:
whole seconds since the run's ``as_of`` (the instant its memberships were computed), so
a client sees how old the data is, not how long ago it was published.

The answer comes from the index named by ``current/_membership.json`` in the serving
store (``feedgen.generator.membership``). On a local store every request stats the pointer
(a new pointer is a new file, so its inode changes); on S3 the pointer is re-read at most
every ``server.lookup_pointer_ttl`` seconds and a new index is downloaded once per run to
``server.lookup_cache_dir``. The first request that sees a new pointer opens the new run;
requests arriving meanwhile keep using the old one, and the old one's connections close
only when the last request using them has finished, so no request fails during a switch.

Access: when ``server.lookup_token_sha256`` is set, requests need ``Authorization: Bearer
<token>`` (401 without credentials, 403 with another token); unset, lookups are open
(internal services on a private network).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from feedgen.core.errors import ConfigError
from feedgen.core.store import LocalStore, Store, open_store
from feedgen.fileserver import params
from feedgen.fileserver.auth import hash_token, header_token
from feedgen.fileserver.published import UNAVAILABLE, StoreUnavailable, check_store
from feedgen.generator.membership import FORMAT, POINTER_KEY, decode_segs

__all__ = ["MAX_BATCH", "MembershipReader", "lookups"]

log = logging.getLogger("feedgen.fileserver.lookups")

MAX_BATCH = 1000
MAX_FILTER_VALUES = 50
MAX_BODY = 1 << 20
_CUSTOMER_ID = params.CUSTOMER_ID
_SEGMENT_ID = params.DEFINITION_ID
# Category and type values may be any language; control and line-separator characters are not.
_FILTER_VALUE = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]{1,200}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_RUN_FILE = params.RUN_ID
FILTERS = ("type", "store_id", "category", "segment")
_ID_RULE = "1-128 characters: letters, digits and _ . : @ + -, starting with a letter or digit"
_EXTENSION = "feedgen_lookups"

lookups = Blueprint("lookups", __name__)


class BadRequest(ValueError):
    """A malformed id, filter or body: answered 400 with this message."""


class _Index:
    """One opened run: segment attributes in memory, members in SQLite (a connection pool)."""

    def __init__(self, path: str, pointer: Mapping[str, Any]) -> None:
        self.path = path
        self.uri = f"file:{quote(path)}?mode=ro&immutable=1"
        self.pool: list[sqlite3.Connection] = []
        self.opened: list[sqlite3.Connection] = []
        self.users = 0
        self.retired = False
        conn = self._connect()
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            rows = conn.execute("SELECT seg, id, type, store_id, category, params FROM segments "
                                "ORDER BY seg").fetchall()
        except sqlite3.DatabaseError as err:
            self.close()
            raise ValueError(f"{path}: not a membership index ({err}); republish the run") from err
        if meta.get("format") != FORMAT:
            self.close()
            raise ValueError(f"{path}: index format {meta.get('format')!r}, expected {FORMAT!r}; "
                             "rebuild it with this version of feedgen")
        self.run_id = str(pointer.get("run_id") or meta.get("run_id"))
        if meta.get("run_id") != self.run_id:
            self.close()
            raise ValueError(f"{path}: index of run {meta.get('run_id')}, but the pointer names run "
                             f"{self.run_id}; republish the run")
        self.as_of = str(meta.get("as_of") or pointer.get("as_of") or "")
        self.as_of_epoch = _epoch(self.as_of)
        self.width = int(meta.get("seg_width", 2))
        self.seg_json: list[str] = []
        self.by: dict[str, dict[str, set[int]]] = {name: {} for name in FILTERS}
        for seg, seg_id, seg_type, store_id, category, seg_params in rows:
            item = {"id": seg_id, "type": seg_type, "store_id": store_id, "category": category,
                    "params": json.loads(seg_params)}
            self.seg_json.append(json.dumps(item, separators=(",", ":"), ensure_ascii=False))
            for name, value in (("type", seg_type), ("store_id", store_id), ("category", category),
                                ("segment", seg_id)):
                if value is not None:
                    self.by[name].setdefault(value, set()).add(seg)
        # The part every answer of this run shares, serialised once.
        self.head = (f'"run_id":{json.dumps(self.run_id)},"as_of":{json.dumps(self.as_of)}')
        self.pool.append(conn)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.uri, uri=True, check_same_thread=False, isolation_level=None)
        self.opened.append(conn)
        return conn

    def connection(self) -> sqlite3.Connection:
        try:
            return self.pool.pop()
        except IndexError:
            return self._connect()

    def give_back(self, conn: sqlite3.Connection) -> None:
        self.pool.append(conn)

    def close(self) -> None:
        for conn in self.opened:
            conn.close()
        self.opened.clear()
        self.pool.clear()

    def allowed(self, filters: Mapping[str, list[str]]) -> set[int] | None:
        """Segment numbers passing every filter (None: no filter given)."""
        out: set[int] | None = None
        for name, values in filters.items():
            table = self.by[name]
            these: set[int] = set()
            for value in values:
                these |= table.get(value, set())
            out = these if out is None else out & these
        return out

    def segments_json(self, blob: bytes, allowed: set[int] | None) -> str:
        nums = decode_segs(blob, self.width)
        if allowed is None:
            return ",".join([self.seg_json[n] for n in nums])
        return ",".join([self.seg_json[n] for n in nums if n in allowed])

    def lookup(self, conn: sqlite3.Connection, customer_ids: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(customer_ids))
        for i in range(0, len(unique), 500):
            chunk = unique[i:i + 500]
            if len(chunk) == 1:
                row = conn.execute("SELECT segs FROM members WHERE customer_id = ?", chunk).fetchone()
                if row is not None:
                    found[chunk[0]] = row[0]
                continue
            marks = ",".join("?" * len(chunk))
            found.update(conn.execute(f"SELECT customer_id, segs FROM members WHERE customer_id IN ({marks})",
                                      chunk).fetchall())
        return found


class MembershipReader:
    """Follows ``current/_membership.json`` of a store; hands out the current index per request."""

    def __init__(self, store: Store, *, cache_dir: str | None = None, ttl: float = 1.0) -> None:
        self.store = store
        self.ttl = float(ttl)
        self.local = isinstance(store, LocalStore)
        self.pointer_path = store.path(POINTER_KEY) if isinstance(store, LocalStore) else None
        digest = hashlib.sha256(store.uri.encode()).hexdigest()[:12]
        self.cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / f"feedgen-lookups-{digest}")
        self.current: _Index | None = None
        self._signature: Any = None
        self._checked = -1e9
        self._failed: Any = None
        self.unreachable = False  # the last pointer read failed: the store is down (503, not "unpublished")
        self._lock = threading.Lock()           # the current index and use counts
        self._refresh = threading.Lock()        # one thread opens a new run at a time

    def acquire(self) -> _Index | None:
        """The current index, counted as in use until :meth:`release`; None before any publication."""
        self._maybe_refresh()
        with self._lock:
            index = self.current
            if index is not None:
                index.users += 1
            return index

    def release(self, index: _Index) -> None:
        with self._lock:
            index.users -= 1
            done = index.retired and index.users == 0
        if done:
            index.close()

    def _due(self) -> Any:
        """A new signature when the pointer may have changed, else None."""
        now = time.monotonic()
        if self.local:
            try:
                st = os.stat(self.pointer_path)  # type: ignore[arg-type]
                signature: Any = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                signature = "missing"
            if signature == self._signature:
                return None
            if self._failed == signature and now - self._checked < self.ttl:
                return None  # this pointer's index failed to open a moment ago: retry after the TTL
            return signature
        return now if now - self._checked >= self.ttl else None

    def _maybe_refresh(self) -> None:
        if self._due() is None:
            return
        if self.current is None:
            with self._refresh:  # nothing to answer from yet: wait for the first index
                self._refresh_now()
            return
        # With an index in hand, no request waits for a switch: a background thread opens
        # (on S3: downloads) the new run while requests keep answering from the old one.
        if self._refresh.acquire(blocking=False):
            try:
                threading.Thread(target=self._refresh_in_background, daemon=True,
                                 name="feedgen-lookups-switch").start()
            except BaseException:
                self._refresh.release()
                raise

    def _refresh_in_background(self) -> None:
        try:
            self._refresh_now()
        except Exception:  # noqa: BLE001 - a failed switch keeps the old run; it is logged
            log.exception("membership index switch failed; still answering from run %s",
                          self.current.run_id if self.current else None)
        finally:
            self._refresh.release()

    def _refresh_now(self) -> None:
        signature = self._due()
        if signature is not None:
            self._checked = time.monotonic()
            try:
                self._switch(signature)
            except Exception:
                self.unreachable = True
                raise
            self.unreachable = False

    def _switch(self, signature: Any) -> None:
        try:
            pointer = json.loads(self.store.read_bytes(POINTER_KEY))
        except FileNotFoundError:
            self._signature = signature
            return  # unpublished (or removed): keep serving what is open, if anything
        except (OSError, ValueError) as err:
            log.warning("%s/%s: unreadable membership pointer (%s); keeping run %s", self.store.uri,
                        POINTER_KEY, err, self.current.run_id if self.current else None)
            return
        if self.current is not None and pointer.get("run_id") == self.current.run_id:
            self._signature = signature
            return
        try:
            index = _Index(self._local_file(pointer), pointer)
        except (OSError, ValueError, KeyError, sqlite3.Error) as err:
            log.error("membership index of run %s could not be opened (%s); keeping run %s",
                      pointer.get("run_id"), err, self.current.run_id if self.current else None)
            self._failed = signature
            return  # retried on the next request after the pointer changes or the TTL passes
        idle = False
        with self._lock:
            old, self.current = self.current, index
            if old is not None:
                old.retired = True
                idle = old.users == 0
        self._signature, self._failed = signature, None
        log.info("membership lookups now answer from run %s", index.run_id)
        if old is not None:
            if idle:
                old.close()
            self._prune_cache(keep={old.run_id, index.run_id})

    def _local_file(self, pointer: Mapping[str, Any]) -> str:
        key = str(pointer["index"])
        if isinstance(self.store, LocalStore):
            return str(self.store.path(key))
        run_id = str(pointer["run_id"])
        if not _RUN_FILE.fullmatch(run_id):
            raise ValueError(f"{self.store.uri}/{POINTER_KEY}: run_id {run_id!r} is not a run id")
        expected = str(pointer.get("sha256") or "")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        target = self.cache_dir / f"{run_id}.sqlite"
        # Several gunicorn workers may see the new run at once: one downloads, the others wait.
        with open(self.cache_dir / f".{run_id}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if target.is_file() and target.stat().st_size == int(pointer.get("bytes", -1)):
                return str(target)
            tmp = self.cache_dir / f".{run_id}.{os.getpid()}.{threading.get_ident()}.tmp"
            digest = hashlib.sha256()
            try:
                with open(tmp, "wb") as fh:
                    for chunk in self.store.open_stream(key, 8 << 20):
                        digest.update(chunk)
                        fh.write(chunk)
                if expected and digest.hexdigest() != expected:
                    raise ValueError(f"{self.store.uri}/{key}: sha256 {digest.hexdigest()} differs from the "
                                     f"pointer's {expected}; republish run {run_id}")
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        return str(target)

    def _prune_cache(self, keep: set[str]) -> None:
        if self.local or not self.cache_dir.is_dir():
            return
        oldest_kept = min(keep)
        for path in self.cache_dir.glob("*.sqlite"):
            # Only runs older than both open ones: another worker may still be switching.
            if path.stem < oldest_kept:
                path.unlink(missing_ok=True)
                (self.cache_dir / f".{path.stem}.lock").unlink(missing_ok=True)


def _epoch(text: str) -> float | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.timestamp()


@lookups.record_once
def _setup(state: BlueprintSetupState) -> None:
    app: Flask = state.app
    config = app.config.get("FEEDGEN")
    server = (config.get("server") if config is not None else None) or {}
    shared = app.extensions.get("feedgen") or {}
    store = shared.get("store")
    if store is None:
        from feedgen.fileserver.app import serving_store_uri

        store = open_store(serving_store_uri(config), config)
    label = getattr(config, "source_label", "config")
    digest = server.get("lookup_token_sha256")
    if digest is not None:
        digest = str(digest).strip().lower()
        if not _HEX64.fullmatch(digest):
            raise ConfigError(f"{label}: server.lookup_token_sha256: expected the SHA-256 hex digest of the "
                              "token (64 hex characters); compute it with: printf %s 'TOKEN' | sha256sum")
    ttl = server.get("lookup_pointer_ttl", 1.0)
    try:
        ttl = float(ttl)
    except (TypeError, ValueError):
        raise ConfigError(f"{label}: server.lookup_pointer_ttl must be a number of seconds, got {ttl!r}") from None
    state_ = app.extensions[_EXTENSION] = {
        "reader": MembershipReader(store, cache_dir=server.get("lookup_cache_dir"), ttl=ttl),
        "token": digest,
    }
    state_["fast"] = app.wsgi_app = _FastPath(app.wsgi_app, state_)  # type: ignore[method-assign]


def _state() -> dict[str, Any]:
    return current_app.extensions[_EXTENSION]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": message}) + "\n"
    return Response(body, status=status, mimetype="application/json", headers=headers)


def _denied() -> Response | None:
    expected = _state()["token"]
    if expected is None:
        return None
    token = header_token(request.headers.get("Authorization"))
    if token is None:
        return _error(401, "credentials required: send 'Authorization: Bearer <token>' "
                           "(the token whose sha256 is server.lookup_token_sha256)",
                      {"WWW-Authenticate": 'Bearer realm="feedgen-lookups"'})
    if not _opens(token, expected):
        return _error(403, "this token does not open lookups (server.lookup_token_sha256)")
    return None


def _opens(token: str | None, expected: str) -> bool:
    return params.valid_token(token) and hmac.compare_digest(hash_token(token), expected)  # type: ignore[arg-type]


def _check_customer(customer_id: Any, where: str) -> str:
    if not isinstance(customer_id, str) or not _CUSTOMER_ID.fullmatch(customer_id):
        shown = customer_id if isinstance(customer_id, str) else type(customer_id).__name__
        raise BadRequest(f"{where}: malformed customer id {str(shown)[:140]!r}; ids are {_ID_RULE}")
    return customer_id


def _filters(pairs: Iterable[tuple[str, Any]], where: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        if name not in FILTERS:
            raise BadRequest(f"{where}: unknown filter {name[:40]!r}; use {', '.join(FILTERS)}")
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool):
                v = str(v)
            if not isinstance(v, str) or not _FILTER_VALUE.fullmatch(v):
                raise BadRequest(f"{where}: filter {name}={str(v)[:60]!r} is malformed; give 1-200 "
                                 "printable characters")
            if name == "segment" and not _SEGMENT_ID.fullmatch(v):
                raise BadRequest(f"{where}: segment={v[:60]!r} is not a segment id ([a-z0-9-], 1-128 characters)")
            out.setdefault(name, []).append(v)
        if len(out.get(name, ())) > MAX_FILTER_VALUES:
            raise BadRequest(f"{where}: more than {MAX_FILTER_VALUES} values for filter {name}")
    return out


def _query_filters(query_string: str | None) -> dict[str, list[str]]:
    """The filters of a raw query string; the Flask route and the fast path both call this."""
    try:
        query = params.query(query_string)
    except params.BadParameter as err:
        raise BadRequest(str(err)) from None
    return _filters(((k, v) for k, vs in query.items() for v in vs), "query")


def _request_filters() -> dict[str, list[str]]:
    return _query_filters(request.environ.get("QUERY_STRING"))


def _answer(index: _Index, body: str) -> Response:
    headers = {"X-Feedgen-Run": index.run_id, "Cache-Control": "private, no-cache"}
    if index.as_of_epoch is not None:
        headers["Age"] = str(max(0, int(time.time() - index.as_of_epoch)))
    return Response(body, status=200, mimetype="application/json", headers=headers)


def _not_ready(reader: MembershipReader) -> Response:
    try:
        if reader.unreachable:
            raise StoreUnavailable(reader.store.uri)
        check_store(reader.store)
    except StoreUnavailable as err:
        log.error("membership lookups: serving store %s is unavailable: %s", reader.store.uri, err)
        return _error(503, UNAVAILABLE, {"Retry-After": "30"})
    return _error(503, "no membership index is published yet: publish a run with customer segments "
                       "(generator.membership.publish_membership writes current/_membership.json)",
                  {"Retry-After": "10"})


def _one(index: _Index, customer_id: str, filters: Mapping[str, list[str]]) -> str:
    conn = index.connection()
    try:
        row = conn.execute("SELECT segs FROM members WHERE customer_id = ?", (customer_id,)).fetchone()
    finally:
        index.give_back(conn)
    segs = index.segments_json(row[0], index.allowed(filters)) if row is not None else ""
    return (f'{{"customer_id":{json.dumps(customer_id)},"known":{"true" if row is not None else "false"},'
            f'{index.head},"segments":[{segs}]}}')


@lookups.get("/customers/<customer_id>/segments")
def customer_segments(customer_id: str) -> Response:
    denied = _denied()
    if denied is not None:
        return denied
    try:
        _check_customer(customer_id, "path")
        filters = _request_filters()
    except BadRequest as err:
        return _error(400, str(err))
    reader: MembershipReader = _state()["reader"]
    index = reader.acquire()
    if index is None:
        return _not_ready(reader)
    try:
        return _answer(index, _one(index, customer_id, filters))
    finally:
        reader.release(index)


class _FastPath:
    """WSGI in front of Flask for a well-formed, authorised ``GET /customers/<id>/segments``.

    Flask's request context, routing and response objects cost several times the lookup
    itself (see benchmarks/lookups.py); this answers the common request directly, with the
    same body and headers. Anything else (malformed, unauthorised, nothing published, other
    paths) goes on to Flask, so every error is answered, and worded, in one place.
    """

    def __init__(self, wsgi_app: Any, state: dict[str, Any]) -> None:
        self.wsgi_app = wsgi_app
        self.reader: MembershipReader = state["reader"]
        self.token: str | None = state["token"]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path[:11] == "/customers/" and path[-9:] == "/segments" and environ.get("REQUEST_METHOD") == "GET":
            body = self._answer(environ, path[11:-9])
            if body is not None:
                start_response("200 OK", body[1])
                return [body[0]]
        return self.wsgi_app(environ, start_response)

    def _answer(self, environ: dict[str, Any], customer_id: str) -> tuple[bytes, list] | None:
        if not _CUSTOMER_ID.fullmatch(customer_id):
            return None
        if self.token is not None and not _opens(header_token(environ.get("HTTP_AUTHORIZATION")), self.token):
            return None
        try:
            filters = _query_filters(environ.get("QUERY_STRING"))
        except BadRequest:
            return None
        index = self.reader.acquire()
        if index is None:
            return None
        try:
            data = _one(index, customer_id, filters).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                       ("X-Feedgen-Run", index.run_id), ("Cache-Control", "private, no-cache")]
            if index.as_of_epoch is not None:
                headers.append(("Age", str(max(0, int(time.time() - index.as_of_epoch)))))
            return data, headers
        finally:
            self.reader.release(index)


def _json_body() -> Any:
    """The request's JSON, read through werkzeug's limited stream: a body over MAX_BODY bytes,
    with a Content-Length or chunked, raises RequestEntityTooLarge once MAX_BODY is passed."""
    # One byte past the limit: werkzeug stops a chunked body at the limit without saying
    # whether more was coming, so read one more and look.
    request.max_content_length = MAX_BODY + 1
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY:
        raise RequestEntityTooLarge()
    if not request.is_json:
        raise BadRequest('body: expected a JSON object like {"customer_ids": ["c-1", "c-2"]} '
                         "with Content-Type: application/json")
    try:
        return params.json_loads(raw)
    except params.DuplicateKey as err:
        raise BadRequest(f"body: key {err.key[:40]!r} is given twice in one object; give each key once") from None
    except RecursionError:
        raise BadRequest("body: JSON nested too deeply; send a flat object like "
                         '{"customer_ids": ["c-1"]}') from None
    except ValueError:  # not JSON, not UTF-8, or a number too long to convert
        raise BadRequest('body: not valid JSON; send an object like {"customer_ids": ["c-1", "c-2"]} '
                         "with Content-Type: application/json") from None


@lookups.post("/customers/segments/lookup")
def batch_lookup() -> Response:
    denied = _denied()
    if denied is not None:
        return denied
    try:
        data = _json_body()
    except RequestEntityTooLarge:
        return _error(413, f"body: larger than {MAX_BODY} bytes; send at most {MAX_BATCH} ids per call")
    except ClientDisconnected:  # werkzeug's word for a stream that failed: broken chunks, early end
        return _error(400, "body: could not be read to its end (broken chunked framing, or fewer bytes "
                           "than Content-Length); send the JSON object whole")
    except BadRequest as err:
        return _error(400, str(err))
    try:
        if not isinstance(data, dict):
            raise BadRequest('body: expected a JSON object like {"customer_ids": ["c-1", "c-2"]} '
                             "with Content-Type: application/json")
        ids = data.get("customer_ids")
        if not isinstance(ids, list):
            raise BadRequest('body: customer_ids must be a list of ids, e.g. {"customer_ids": ["c-1"]}')
        if len(ids) > MAX_BATCH:
            raise BadRequest(f"body: {len(ids)} customer_ids; at most {MAX_BATCH} per call, split the list")
        unknown = [k for k in data if k != "customer_ids" and k not in FILTERS]
        if unknown:
            raise BadRequest(f"body: unknown key {unknown[0][:40]!r}; use customer_ids and the filters "
                             f"{', '.join(FILTERS)}")
        for n, customer_id in enumerate(ids):
            _check_customer(customer_id, f"body: customer_ids[{n}]")
        filters = _request_filters()
        for name, values in _filters(((k, v) for k, v in data.items() if k in FILTERS), "body").items():
            filters.setdefault(name, []).extend(values)
    except BadRequest as err:
        return _error(400, str(err))
    reader: MembershipReader = _state()["reader"]
    index = reader.acquire()
    if index is None:
        return _not_ready(reader)
    try:
        conn = index.connection()
        try:
            found = index.lookup(conn, ids)
        finally:
            index.give_back(conn)
        allowed = index.allowed(filters)
        results = []
        for customer_id in ids:
            blob = found.get(customer_id)
            segs = index.segments_json(blob, allowed) if blob is not None else ""
            results.append(f'{{"customer_id":{json.dumps(customer_id)},'
                           f'"known":{"true" if blob is not None else "false"},"segments":[{segs}]}}')
        return _answer(index, f'{{{index.head},"results":[{",".join(results)}]}}')
    finally:
        reader.release(index)
