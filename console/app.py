"""The marketers' console: ``create_app(config)``, served by ``feedgen console``.

A separate app from the file server (the file server may face ad platforms; the console
stays inside), on the same data root. It serves the JSON API under ``/api/v1``
(``console/api.py``, documented at ``/api/v1/openapi.json``) on the definitions registry
that ``registry.url`` names. Every answer is JSON; an error is ``{"error": sentence}``
(plus ``errors: [{pointer, message, fix}]`` for definitions), never a trace: an
unexpected failure is logged with a reference the answer gives.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from feedgen.console import (
    api,
    api_preview,  # noqa: F401  (preview, explain and field routes register on api)
    pages,
    pages_editor,  # noqa: F401  (the marketers' pages register on pages.pages)
    pages_runs,  # noqa: F401  (page modules register on pages.pages when imported)
    sessions,
)
from feedgen.console.registry import (
    DefinitionRejected,
    LoginThrottled,
    Registry,
    RegistryError,
    StaleVersion,
    registry_for,
)
from feedgen.core.config import Config, load_config
from feedgen.core.errors import BadInput, FeedgenError

__all__ = ["MAX_BODY", "create_app"]

log = logging.getLogger("feedgen.console")

MAX_BODY = 2 << 20  # a request body; definitions are a few KB, a for_each list at most ~100 KB
_WWW_AUTHENTICATE = 'Bearer realm="feedgen-console", charset="UTF-8"'


def create_app(config: Config | None = None, *, registry: Registry | None = None, preview: Any = None) -> Flask:
    """The console app on ``config``'s root and registry (``registry`` overrides ``registry.url``);
    ``preview`` is the warm engine to use (default: one made on the first preview)."""
    if config is None:
        config = load_config()
    registry = registry or registry_for(config)
    console = config.get("console") or {}

    app = Flask("feedgen.console")
    app.config.update(
        SECRET_KEY=sessions.secret_key(config),
        MAX_CONTENT_LENGTH=MAX_BODY,
        SESSION_COOKIE_NAME="feedgen_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(console.get("secure_cookies", False)),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=float(console.get("session_hours") or 12)),
        FEEDGEN=config,
    )
    app.extensions["feedgen_console"] = {"config": config, "registry": registry, "preview": preview}
    app.register_blueprint(api.api)
    app.register_blueprint(pages.pages)
    _error_handlers(app, registry)
    proxies = int(console.get("proxy_count") or 0)
    if proxies:
        # the login throttle counts per client address: behind nginx, that is X-Forwarded-For
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)  # type: ignore[method-assign]
    return app


def _json(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    response = jsonify({"error": message, **extra})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _error_handlers(app: Flask, registry: Registry) -> None:
    @app.errorhandler(api.ApiError)
    def _api_error(err: api.ApiError) -> Response:
        return _json(err.status, err.message, **err.extra)

    @app.errorhandler(sessions.Unauthenticated)
    def _unauthenticated(err: sessions.Unauthenticated) -> Response:
        return _json(401, str(err), {"WWW-Authenticate": _WWW_AUTHENTICATE})

    @app.errorhandler(sessions.CsrfRefused)
    def _csrf(err: sessions.CsrfRefused) -> Response:
        return _json(403, str(err))

    @app.errorhandler(FeedgenError)
    def _feedgen_error(err: FeedgenError) -> Response:
        # one handler: the registry's errors are also BadInput, and their status decides
        if isinstance(err, LoginThrottled):
            wait = api.retry_after_seconds(err.retry_after, registry.clock())
            return _json(429, str(err), {"Retry-After": str(wait)})
        if isinstance(err, StaleVersion):
            return _api_error(api.stale(err))
        if isinstance(err, DefinitionRejected):
            return _api_error(api.rejected(err))
        if isinstance(err, RegistryError) and err.status < 500:
            headers = {"WWW-Authenticate": _WWW_AUTHENTICATE} if err.status == 401 else None
            return _json(err.status, str(err), headers)
        if isinstance(err, BadInput):
            return _json(400, str(err))
        return _internal(err)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        status = err.code or 500
        if not request.path.startswith("/api/"):  # a page: an HTML answer with a sentence
            return pages.error_page(status, "no such page" if status == 404 else f"{err.name}: {err.description}")
        if status == 404:
            return _json(404, "no such endpoint; the API is described at /api/v1/openapi.json")
        if status == 405:
            return _json(405, "this endpoint does not take that method; see /api/v1/openapi.json",
                         {"Allow": ", ".join(err.valid_methods or [])} if getattr(err, "valid_methods", None) else None)
        if status == 413:
            return _json(413, f"body: larger than {MAX_BODY} bytes")
        if status >= 500:
            return _internal(err)
        return _json(status, f"{err.name}: {err.description}")

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        return _internal(err)


def _internal(err: BaseException) -> Response:
    reference = secrets.token_hex(6)
    log.error("console: unexpected error (reference %s): %s", reference, err, exc_info=err,
              extra={"reference": reference})
    return _json(500, f"the console failed to answer (reference {reference}); the server log has the details")
