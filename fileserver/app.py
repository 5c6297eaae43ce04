"""The file server ad platforms fetch feeds from: ``create_app(config)``.

Endpoints (docs/internals.md, "File server"):
``GET|HEAD /feeds/<id>[.xml|.csv|.tsv][.gz]?file=N``, ``GET|HEAD /segments/<id>/export[.gz]``,
``GET /runs``, ``GET /runs/<run_id>``, ``POST /runs/<run_id>/approve|reject``,
``GET /healthz``, ``GET /metrics``.

Access: feed and export URLs need the definition's token (see ``feedgen.fileserver.auth``).
Without credentials every valid-looking id answers 401; with credentials that do not open
the id, or for an id that is not published, the answer is the same 404. An id that does not
match ``[a-z0-9-]+`` is 404 before anything else. Ids are matched against a strict pattern
and only ever used to build ``current/<id>.json``; every other path comes from the pointer
and manifest the publisher wrote.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask, Response, abort, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date, parse_accept_header, parse_date, remove_entity_headers

from feedgen.fileserver.auth import TokenTable, header_token, request_token
from feedgen.fileserver.lookups import lookups
from feedgen.fileserver.metrics import Metrics
from feedgen.fileserver.published import (
    CHUNK,
    Document,
    ManifestCache,
    NotPublished,
    gzip_stream,
    identity_stream,
    resolve,
)
from feedgen.jobs.config import DEFAULTS, Config
from feedgen.jobs.errors import FeedgenError
from feedgen.jobs.store import open_store

__all__ = ["create_app"]

log = logging.getLogger("feedgen.fileserver")

_FEED_NAME = re.compile(r"^(?P<id>[a-z0-9-]{1,128})(?:\.(?P<fmt>xml|csv|tsv))?(?P<gz>\.gz)?$")
_ID = re.compile(r"^[a-z0-9-]{1,128}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9-]{1,80}$")
_FILE_INDEX = re.compile(r"^[0-9]{1,6}$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_NOT_FOUND = b"not found\n"


def _as_config(config: Config | dict | None) -> Config:
    if isinstance(config, Config):
        return config
    from feedgen.jobs.config import load_config

    if config is None:
        return load_config()
    data = _merge(DEFAULTS, config)
    root = str(data["root"]).rstrip("/") or "/"
    data["root"] = root
    return Config(data=_substitute(data, root))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def _substitute(node: Any, root: str) -> Any:
    if isinstance(node, str):
        return node.replace("{root}", root)
    if isinstance(node, dict):
        return {k: _substitute(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, root) for v in node]
    return node


def serving_store_uri(config: Config) -> str:
    """Where published feeds are read: ``server.store``, else ``publish.store``, else the root."""
    return str(config.get("server.store") or config.get("publish.store") or config.root)


def create_app(config: Config | dict | None = None) -> Flask:
    """The Flask app serving published feeds, exports, runs, health and metrics."""
    config = _as_config(config)
    server = config.get("server") or {}
    tokens = TokenTable(server, config.source_label)
    store = open_store(serving_store_uri(config), config)
    data_store = open_store(config.root, config)
    manifests = ManifestCache(store)
    metrics = Metrics(store)

    app = Flask("feedgen.fileserver")
    app.config["FEEDGEN"] = config
    app.extensions["feedgen"] = {"store": store, "data_store": data_store, "metrics": metrics}

    @app.errorhandler(404)
    @app.errorhandler(405)
    def _not_found(_err: HTTPException) -> Response:
        # One body for every miss, whatever the reason, so misses cannot be told apart.
        return Response(_NOT_FOUND, status=404, mimetype="text/plain")

    @app.get("/healthz")
    def healthz() -> Response:
        try:
            store.exists("current/.healthz")
        except Exception as err:  # noqa: BLE001 - any backend failure means unhealthy
            return jsonify({"status": "unavailable", "store": store.uri, "error": str(err)}), 503
        return jsonify({"status": "ok", "store": store.uri})

    @app.get("/metrics")
    def metrics_view() -> Response:
        body, ctype = metrics.render()
        return Response(body, mimetype=None, content_type=ctype)

    @app.route("/feeds/<name>", methods=["GET", "HEAD"])
    def feed(name: str) -> Response:
        m = _FEED_NAME.match(name)
        if not m:
            abort(404)
        return _serve(m["id"], "feed", m["fmt"], bool(m["gz"]))

    @app.route("/segments/<segment_id>/export", methods=["GET", "HEAD"])
    def segment_export(segment_id: str) -> Response:
        return _serve(segment_id, "segment", None, False)

    @app.route("/segments/<segment_id>/export.gz", methods=["GET", "HEAD"])
    def segment_export_gz(segment_id: str) -> Response:
        return _serve(segment_id, "segment", None, True)

    def _serve(definition_id: str, kind: str, fmt: str | None, gz_url: bool) -> Response:
        if not _ID.match(definition_id):
            abort(404)
        token = request_token(request.headers.get("Authorization"), request.args.get("token"))
        if not tokens.opens(definition_id, token):
            if token is None:
                return _unauthorized()
            abort(404)
        doc = _find_document(store, manifests, definition_id, kind, fmt, request.args.get("file", "0"))
        if doc is None:
            abort(404)
        return _document_response(doc, gz_url)

    def _document_response(doc: Document, gz_url: bool) -> Response:
        accepts_gzip = request.accept_encodings.quality("gzip") > 0
        rep, length, content_type, etag, headers = representation(doc, gz_url, accepts_gzip)
        if not_modified(request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since"),
                        etag, doc.published_at):
            return Response(status=304, headers=headers)
        status, start, end = 200, 0, length - 1
        byte_range = _requested_range(length, etag, doc.published_at)
        if byte_range == "unsatisfiable":
            return Response(status=416, headers={**headers, "Content-Range": f"bytes */{length}"})
        if byte_range is not None:
            status, (start, end) = 206, byte_range
            headers["Content-Range"] = f"bytes {start}-{end}/{length}"
        headers["Content-Length"] = str(end - start + 1)
        body: Iterator[bytes] | list[bytes]
        if request.method == "HEAD" or end < start:
            body = []
        elif rep == "gz":
            body = gzip_stream(store, doc, start, end, CHUNK)
        else:
            body = identity_stream(store, doc, start, end, CHUNK)
        response = Response(body, status=status, headers=headers, content_type=content_type,
                            direct_passthrough=True)
        return response

    def _admin() -> Response | None:
        token = header_token(request.headers.get("Authorization"))
        if token is None:
            return _unauthorized(realm="feedgen-admin")
        if not tokens.is_admin(token):
            return _json_error(403, "this token is not the admin token (server.admin_token_sha256)")
        return None

    @app.get("/runs")
    def runs() -> Response:
        denied = _admin()
        if denied is not None:
            return denied
        limit_text = request.args.get("limit", "100")
        limit = int(limit_text) if limit_text.isdigit() else 100
        out = []
        for run_id in sorted(data_store.subdirs("runs/"), reverse=True)[:limit]:
            record = _read_run(run_id)
            if record is not None:
                out.append({k: record.get(k) for k in ("run_id", "status", "as_of", "created_at")})
        return jsonify({"runs": out})

    @app.get("/runs/<run_id>")
    def run_detail(run_id: str) -> Response:
        denied = _admin()
        if denied is not None:
            return denied
        record = _read_run(run_id) if _RUN_ID.match(run_id) else None
        if record is None:
            return _json_error(404, f"run {run_id!r} not found; list runs with GET /runs")
        return jsonify(record)

    @app.post("/runs/<run_id>/<action>")
    def run_decision(run_id: str, action: str) -> Response:
        denied = _admin()
        if denied is not None:
            return denied
        if action not in ("approve", "reject"):
            abort(404)
        if not _RUN_ID.match(run_id) or _read_run(run_id) is None:
            return _json_error(404, f"run {run_id!r} not found; list runs with GET /runs")
        try:
            from feedgen.jobs import lifecycle
        except ImportError:
            return _json_error(503, "approvals are not available: feedgen.jobs.lifecycle is missing")
        decide = lifecycle.approve_run if action == "approve" else lifecycle.reject_run
        try:
            result = decide(config, run_id, by="http admin")
        except FeedgenError as err:
            return _json_error(409, str(err))
        record = _read_run(run_id) or {}
        payload: dict[str, Any] = {"run_id": run_id, "action": action, "status": record.get("status")}
        if isinstance(result, dict | list | str | int | float | bool):
            payload["result"] = result
        return jsonify(payload)

    def _read_run(run_id: str) -> dict | None:
        try:
            return json.loads(data_store.read_bytes(f"runs/{run_id}/run.json"))
        except (FileNotFoundError, ValueError):
            return None

    app.register_blueprint(lookups)  # GET /customers/<id>/segments, POST /customers/segments/lookup
    app.wsgi_app = _Revalidation(app.wsgi_app, store, manifests, tokens)  # type: ignore[method-assign]
    app.wsgi_app = metrics.wrap(app.wsgi_app)  # type: ignore[method-assign]
    return app


class _Revalidation:
    """WSGI in front of Flask: a conditional GET/HEAD whose answer is 304, answered directly.

    Ad platforms re-fetch every feed on a schedule, and most fetches revalidate a feed that
    has not changed. Flask's request context, routing and response objects cost several
    times the check itself (benchmarks/serve.py), so a well-formed, authorised request whose
    ``If-None-Match`` / ``If-Modified-Since`` match the current document gets its 304 here,
    with the same headers Flask would send. The pointer is still read on every request, so
    a new run is seen at once. Anything else (no validator, a changed document, an odd id,
    missing or wrong credentials, nothing published) goes on to Flask, so every other
    answer is made, and worded, in one place.
    """

    def __init__(self, wsgi_app: Any, store: Any, manifests: ManifestCache, tokens: TokenTable) -> None:
        self.wsgi_app = wsgi_app
        self.store = store
        self.manifests = manifests
        self.tokens = tokens
        # Accept-Encoding header → gzip acceptable (fetchers send the same few headers), and
        # the last 304 headers per (document, representation); both bounded.
        self._gzip_ok: dict[str | None, bool] = {}
        self._answers: dict[tuple, tuple[Document, str, list[tuple[str, str]]]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if ((environ.get("HTTP_IF_NONE_MATCH") is not None or environ.get("HTTP_IF_MODIFIED_SINCE"))
                and environ.get("REQUEST_METHOD") in ("GET", "HEAD")):
            headers = self._unchanged(environ)
            if headers is not None:
                start_response("304 NOT MODIFIED", headers)
                return []
        return self.wsgi_app(environ, start_response)

    def _unchanged(self, environ: dict[str, Any]) -> list[tuple[str, str]] | None:
        path = environ.get("PATH_INFO", "")
        fmt: str | None = None
        if path.startswith("/feeds/"):
            m = _FEED_NAME.match(path[7:])
            if not m:
                return None
            definition_id, kind, fmt, gz_url = m["id"], "feed", m["fmt"], bool(m["gz"])
        elif path.startswith("/segments/") and path.endswith(("/export", "/export.gz")):
            gz_url = path.endswith(".gz")
            definition_id, kind = path[10:-10 if gz_url else -7], "segment"
            if not _ID.match(definition_id):
                return None
        else:
            return None
        query_string = environ.get("QUERY_STRING")
        query = dict(parse_qsl(query_string, keep_blank_values=True)) if query_string else {}
        token = request_token(environ.get("HTTP_AUTHORIZATION"), query.get("token"))
        if not self.tokens.opens(definition_id, token):
            return None
        doc = _find_document(self.store, self.manifests, definition_id, kind, fmt, query.get("file", "0"))
        if doc is None:
            return None
        accept = environ.get("HTTP_ACCEPT_ENCODING")
        accepts_gzip = self._gzip_ok.get(accept)
        if accepts_gzip is None:
            accepts_gzip = parse_accept_header(accept).quality("gzip") > 0
            if len(self._gzip_ok) < 256:
                self._gzip_ok[accept] = accepts_gzip
        where = (definition_id, kind, doc.file_index, gz_url, accepts_gzip)
        known = self._answers.get(where)
        if known is None or known[0] is not doc:
            _rep, _length, _ctype, etag, headers = representation(doc, gz_url, accepts_gzip)
            answer = list(headers.items())
            remove_entity_headers(answer)  # as werkzeug does for Flask's own 304s
            known = (doc, etag, answer)
            if len(self._answers) >= 4096:
                self._answers.clear()
            self._answers[where] = known
        _doc, etag, answer = known
        if not not_modified(environ.get("HTTP_IF_NONE_MATCH"), environ.get("HTTP_IF_MODIFIED_SINCE"),
                            etag, doc.published_at):
            return None
        return answer


def _find_document(store: Any, manifests: ManifestCache, definition_id: str, kind: str,
                   fmt: str | None, index_text: str) -> Document | None:
    """The published document a request names (its id checked, access granted), else None."""
    if not _FILE_INDEX.match(index_text):
        return None
    try:
        doc = resolve(store, manifests, definition_id, kind, int(index_text))
    except (NotPublished, FileNotFoundError):
        return None
    return None if fmt is not None and fmt != doc.fmt else doc


def _unauthorized(realm: str = "feedgen") -> Response:
    return Response(
        b"credentials required: send the token as 'Authorization: Bearer <token>', "
        b"as the basic-auth password, or as ?token=<token>\n",
        status=401, mimetype="text/plain",
        headers={"WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'},
    )


def _json_error(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


def representation(doc: Document, gz_url: bool, accepts_gzip: bool
                   ) -> tuple[str, int, str, str, dict[str, str]]:
    """(rep, length, content type, ETag, headers) of ``doc`` as this request gets it.

    ``rep`` is "gz" (the stored members, as a ``.gz`` file or with ``Content-Encoding:
    gzip``) or "raw" (decompressed while streaming); each has its own ETag.
    """
    if gz_url:
        rep, length, content_type, encoding = "gz", doc.gz_length, "application/gzip", None
    elif accepts_gzip:
        rep, length, content_type, encoding = "gz", doc.gz_length, doc.content_type, "gzip"
    else:
        rep, length, content_type, encoding = "raw", doc.raw_length, doc.content_type, None
    etag = f'"{doc.run_id}-{doc.checksum[:16]}-{doc.file_index}-{rep}"'
    suffix = f".{doc.fmt}" + (".gz" if gz_url else "")
    headers = {
        "ETag": etag,
        "Last-Modified": http_date(doc.published_at),
        "Cache-Control": "private, no-cache",
        "Accept-Ranges": "bytes",
        "X-Feedgen-Run": doc.run_id,
        "Content-Disposition": f'inline; filename="{doc.definition_id}{suffix}"',
    }
    if not gz_url:
        headers["Vary"] = "Accept-Encoding"
    if encoding:
        headers["Content-Encoding"] = encoding
    return rep, length, content_type, etag, headers


def not_modified(if_none_match: str | None, if_modified_since: str | None, etag: str,
                 last_modified: datetime) -> bool:
    """True when the request's validators say the client holds this representation."""
    if if_none_match is not None:
        # Weak comparison (RFC 9110 13.1.2): a W/ prefix does not matter for GET/HEAD.
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    ims = parse_date(if_modified_since)
    return ims is not None and last_modified <= ims


def _requested_range(length: int, etag: str, last_modified: datetime) -> tuple[int, int] | str | None:
    header = request.headers.get("Range")
    if not header:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None:
        if if_range.startswith(('"', "W/")):
            if if_range.strip() != etag:
                return None
        elif parse_date(if_range) != last_modified:
            return None
    m = _RANGE.match(header.strip())
    if not m or (not m[1] and not m[2]):
        return None  # several ranges or bad syntax: send the whole representation
    if m[1]:
        start = int(m[1])
        if m[2] and int(m[2]) < start:
            return None  # invalid: ignore the header
        if start >= length:
            return "unsatisfiable"
        end = int(m[2]) if m[2] else length - 1
        return start, min(end, length - 1)
    suffix = int(m[2])
    if suffix == 0 or length == 0:
        return "unsatisfiable"
    return max(0, length - suffix), length - 1

