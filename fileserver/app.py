"""The file server ad platforms fetch feeds from: ``create_app(config)``.

Endpoints (docs/internals.md, "File server"):
``GET|HEAD /feeds/<id>[.xml|.csv|.tsv][.gz]?file=N``, ``GET|HEAD /segments/<id>/export[.gz]``,
``GET /runs``, ``GET /runs/<run_id>``, ``POST /runs/<run_id>/approve|reject``,
``GET /healthz``, ``GET /metrics``.

Access: feed and export URLs need the definition's token (see ``feedgen.fileserver.auth``).
Without credentials every valid-looking id answers 401; with credentials that do not open
the id, or for an id that is not published, the answer is the same 404. An id that does not
match ``[a-z0-9-]{1,128}`` in full is 404 before anything else. Ids are matched against a
strict pattern and only ever used to build ``current/<id>.json``; every other path comes
from the pointer and manifest the publisher wrote. Every id, number, token and date a
request carries is parsed by ``feedgen.fileserver.params`` (the same functions on the
Flask routes and the 304 fast path); a repeated ``file``/``token``/``limit`` is 400.

A path with an empty segment (``//feeds/x``, ``/segments/x%2F/export``) is the same 404,
never a redirect. A serving store that cannot be read (its folder missing, its S3 endpoint
down) is 503 with one line on every path (``/healthz`` included), the cause in the log only.
Admin and metrics answers, 401 included, are JSON ``{"error": ...}``; feed answers are text.

What strangers see: ``/healthz`` says only ``{"status": ...}``; ``/metrics`` needs the
metrics token (``server.metrics_token_sha256``) or the admin token, because its
per-definition series name every published definition.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import Flask, Response, abort, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date, parse_accept_header, remove_entity_headers

from feedgen.core.config import DEFAULTS, Config, load_config
from feedgen.core.errors import FeedgenError
from feedgen.core.store import open_store
from feedgen.fileserver import params
from feedgen.fileserver.auth import TokenTable, header_token, request_token
from feedgen.fileserver.lookups import MAX_BODY, lookups
from feedgen.fileserver.metrics import Metrics
from feedgen.fileserver.published import (
    CHUNK,
    STORE_ERRORS,
    UNAVAILABLE,
    Document,
    ManifestCache,
    NotPublished,
    check_store,
    gzip_stream,
    identity_stream,
    resolve,
)
from feedgen.jobs import lifecycle

__all__ = ["create_app"]

log = logging.getLogger("feedgen.fileserver")

_NOT_FOUND = b"not found\n"
_RUN_ID_RULE = "run ids are 1-80 ASCII letters, digits and '-'; list runs with GET /runs"
MAX_RUNS = 1000


def _as_config(config: Config | dict | None) -> Config:
    if isinstance(config, Config):
        return config
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
    # "/customers/0%2F/segments" must not be redirected to "/customers/0/segments": an id
    # is taken as sent or refused, never corrected into another one.
    app.url_map.merge_slashes = False
    app.config["FEEDGEN"] = config
    # Every request body, chunked ones included (werkzeug's limited stream), stops here.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["feedgen"] = {"store": store, "data_store": data_store, "metrics": metrics}

    @app.errorhandler(404)
    @app.errorhandler(405)
    def _not_found(_err: HTTPException) -> Response:
        # One body for every miss, whatever the reason, so misses cannot be told apart.
        return Response(_NOT_FOUND, status=404, mimetype="text/plain")

    @app.errorhandler(413)
    def _too_large(_err: HTTPException) -> Response:
        return _json_error(413, f"body: larger than {MAX_BODY} bytes")

    for error in STORE_ERRORS:
        app.register_error_handler(error, lambda err: unavailable(request.path, err, store.uri))

    @app.get("/healthz")
    def healthz() -> Response:
        # Only a status: where the store is and why it failed go to the log, not to strangers.
        try:
            check_store(store)
        except Exception as err:  # noqa: BLE001 - any backend failure means unhealthy
            log.error("healthz: serving store %s is unavailable: %s", store.uri, err)
            return jsonify({"status": "unavailable"}), 503
        return jsonify({"status": "ok"})

    @app.get("/metrics")
    def metrics_view() -> Response:
        token = header_token(request.headers.get("Authorization"))
        if token is None:
            return _unauthorized(_METRICS_401, realm="feedgen-metrics")
        if not tokens.opens_metrics(token):
            return _json_error(403, "this token opens no metrics: send the token whose sha256 is "
                                    "server.metrics_token_sha256 (or the admin token)")
        body, ctype = metrics.render()
        return Response(body, mimetype=None, content_type=ctype)

    @app.route("/feeds/<name>", methods=["GET", "HEAD"])
    def feed(name: str) -> Response:
        m = params.FEED_NAME.fullmatch(name)
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
        if not params.DEFINITION_ID.fullmatch(definition_id):
            abort(404)
        try:
            query = params.query(request.environ.get("QUERY_STRING"))
            query_token, index_text = params.single(query, "token"), params.single(query, "file")
        except params.BadParameter as err:
            return _text_error(400, str(err))
        token = request_token(request.headers.get("Authorization"), query_token)
        if not tokens.opens(definition_id, token):
            if token is None:
                return _unauthorized(_FEED_401)
            abort(404)
        doc = _find_document(store, manifests, definition_id, kind, fmt, index_text)
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
        try:
            byte_range = _requested_range(length, etag, doc.published_at)
        except params.BadRange:
            return Response(f"range not satisfiable: send one 'Range: bytes=FIRST-LAST' (ASCII digits, "
                            f"FIRST below {length}) or no Range for the whole {length}-byte file\n",
                            status=416, mimetype="text/plain",
                            headers={**headers, "Content-Range": f"bytes */{length}"})
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
            return _unauthorized(_ADMIN_401, realm="feedgen-admin")
        if tokens.admin is None:
            return _json_error(403, "admin endpoints are off: set server.admin_token_sha256 to the sha256 "
                                    "of an admin token and restart the server")
        if not tokens.is_admin(token):
            return _json_error(403, "this token is not the admin token: send the token whose sha256 is "
                                    "server.admin_token_sha256 as 'Authorization: Bearer <token>'")
        return None

    @app.get("/runs")
    def runs() -> Response:
        denied = _admin()
        if denied is not None:
            return denied
        try:
            query = params.query(request.environ.get("QUERY_STRING"))
            limit = params.number(params.single(query, "limit"), "limit", default=100, low=1, high=MAX_RUNS)
        except params.BadParameter as err:
            return _json_error(400, str(err))
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
        if not params.RUN_ID.fullmatch(run_id):
            return _json_error(400, f"malformed run id; {_RUN_ID_RULE}")
        record = _read_run(run_id)
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
        if not params.RUN_ID.fullmatch(run_id):
            return _json_error(400, f"malformed run id; {_RUN_ID_RULE}")
        if _read_run(run_id) is None:
            return _json_error(404, f"run {run_id!r} not found; list runs with GET /runs")
        decide = lifecycle.approve_run if action == "approve" else lifecycle.reject_run
        try:
            # audited in the registry as "admin-token" (unaudited, with a warning, if it cannot open)
            result = decide(config, run_id, by="admin-token")
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
    app.wsgi_app = _Guard(app.wsgi_app, store.uri)  # type: ignore[method-assign]
    app.wsgi_app = metrics.wrap(app.wsgi_app)  # type: ignore[method-assign]
    return app


def unavailable(path: str, err: BaseException, where: str) -> Response:
    """503 for a store that cannot be read: plain text on feed and export URLs (as their other
    errors), JSON elsewhere; the store's address and the cause go to the log only."""
    log.error("serving store %s is unavailable: %s: %s", where, type(err).__name__, err)
    feedish = path.startswith(("/feeds/", "/segments/"))
    response = _text_error(503, UNAVAILABLE) if feedish else _json_error(503, UNAVAILABLE)
    response.headers["Retry-After"] = "30"
    return response


class _Guard:
    """WSGI, outermost but for the metrics: what every path answers the same way.

    A path with an empty segment (``//feeds/x``, ``/feeds//x``, ``/segments/x%2F/export``)
    names no resource: the same 404 as any miss, before any route or fast path could read
    it as another id (or a redirect could repeat its ``?token=`` in a Location). A store
    that cannot be read while a fast path answers (they run outside Flask) is the same 503
    the Flask routes give.
    """

    def __init__(self, wsgi_app: Any, where: str) -> None:
        self.wsgi_app = wsgi_app
        self.where = where

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        # (PATH_INFO is percent-decoded, so %2F counts; gunicorn passes a leading "//" on,
        # while Python's http.server, under werkzeug's development server, collapses it)
        if "//" in path:
            start_response("404 NOT FOUND", [("Content-Type", "text/plain; charset=utf-8"),
                                             ("Content-Length", str(len(_NOT_FOUND)))])
            return [_NOT_FOUND]
        try:
            return self.wsgi_app(environ, start_response)
        except STORE_ERRORS as err:
            return unavailable(path, err, self.where)(environ, start_response)


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
            m = params.FEED_NAME.fullmatch(path[7:])
            if not m:
                return None
            definition_id, kind, fmt, gz_url = m["id"], "feed", m["fmt"], bool(m["gz"])
        elif path.startswith("/segments/") and path.endswith(("/export", "/export.gz")):
            gz_url = path.endswith(".gz")
            definition_id, kind = path[10:-10 if gz_url else -7], "segment"
            if not params.DEFINITION_ID.fullmatch(definition_id):
                return None
        else:
            return None
        try:  # read exactly as Flask's route reads it; a refusal is left to Flask to word
            query = params.query(environ.get("QUERY_STRING"))
            query_token, index_text = params.single(query, "token"), params.single(query, "file")
        except params.BadParameter:
            return None
        token = request_token(environ.get("HTTP_AUTHORIZATION"), query_token)
        if not self.tokens.opens(definition_id, token):
            return None
        doc = _find_document(self.store, self.manifests, definition_id, kind, fmt, index_text)
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
                   fmt: str | None, index_text: str | None) -> Document | None:
    """The published document a request names (its id checked, access granted), else None."""
    index_text = "0" if index_text is None else index_text
    if not params.FILE_INDEX.fullmatch(index_text):
        return None
    try:
        doc = resolve(store, manifests, definition_id, kind, int(index_text))
    except (NotPublished, FileNotFoundError):
        return None
    return None if fmt is not None and fmt != doc.fmt else doc


_FEED_401 = ("credentials required: send the feed's token as 'Authorization: Bearer <token>', "
             "as the basic-auth password, or as ?token=<token>")
_ADMIN_401 = ("credentials required: send the admin token as 'Authorization: Bearer <token>' "
              "(or as the basic-auth password); admin endpoints refuse ?token= so that the token "
              "never lands in access logs")
_METRICS_401 = ("credentials required: send the metrics token (server.metrics_token_sha256) or the "
                "admin token as 'Authorization: Bearer <token>'; ?token= is refused")


def _unauthorized(message: str, realm: str = "feedgen") -> Response:
    # Feeds offer basic auth (what Merchant Center's fetcher speaks) and answer in plain text,
    # as every feed error; the admin and metrics endpoints ask for Bearer and answer JSON, as
    # their 400/403/404 do.
    if realm == "feedgen":
        response = _text_error(401, message)
        scheme = "Basic"
    else:
        response = _json_error(401, message)
        scheme = "Bearer"
    response.headers["WWW-Authenticate"] = f'{scheme} realm="{realm}", charset="UTF-8"'
    return response


def _text_error(status: int, message: str) -> Response:
    return Response(f"{message}\n", status=status, mimetype="text/plain")


def _json_error(status: int, message: str) -> Response:
    # (built without jsonify: the WSGI guard answers outside any Flask app context)
    body = json.dumps({"error": message}, separators=(",", ":")) + "\n"
    return Response(body, status=status, mimetype="application/json")


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
    # (an If-Modified-Since that is not a valid HTTP-date is ignored, RFC 9110 13.1.3)
    ims = params.http_date(if_modified_since)
    return ims is not None and last_modified <= ims


def _requested_range(length: int, etag: str, last_modified: datetime) -> tuple[int, int] | None:
    """The range to send (None: the whole representation); ``params.BadRange`` → 416."""
    header = request.headers.get("Range")
    if not header:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None:
        # If-Range is checked first: a stale validator means "send it all", whatever the Range says.
        if if_range.strip().startswith(('"', "W/")):
            if if_range.strip() != etag:
                return None
        elif params.http_date(if_range) != last_modified:
            return None
    return params.byte_range(header, length)

