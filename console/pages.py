"""The console's HTML pages: the shared skeleton (login, logout, page auth, rendering, errors).

Pages are server-rendered Jinja templates under ``console/templates/console/`` on the
``pages`` blueprint. A page group lives in its own module (``pages_runs.py``,
``pages_editor.py``) that registers its views with :func:`page` and is imported by
``console/app.py`` before the blueprint is registered.

Datasette style: a page and its JSON twin under ``/api/v1`` call the same *data function*
(a plain function returning a dict; bad input raises ``api.ApiError``), so a test of the
API covers what the page shows::

    @page("/runs", "runs.read")
    def runs_page():
        data = rundata.runs(api.query_args(...))
        return render("console/runs.html", "runs", data, api_url="/api/v1/runs")

:func:`page` signs the caller in from the session cookie (or a Bearer token), redirects an
anonymous visitor to ``/login?next=...``, answers 403 with a sentence when the role may
not, checks the form's ``csrf_token`` on POST, and turns any error into an HTML page with a
sentence (and a reference for the server log), never a trace.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, g, redirect, render_template, request, session, url_for
from markupsafe import Markup

from feedgen.console import api, sessions
from feedgen.console.registry import PERMISSIONS, LoginFailed, LoginThrottled, RegistryError
from feedgen.core.errors import BadInput

__all__ = ["SIGNED_IN", "csrf_field", "error_page", "page", "pages", "render"]

log = logging.getLogger("feedgen.console")

SIGNED_IN = api.SIGNED_IN
pages = Blueprint("pages", __name__)
_NEXT = re.compile(r"/(?![/\\])[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,1000}")
NAV = (("definitions", "Definitions", "/definitions"), ("runs", "Runs", "/runs"), ("audit", "Audit", "/audit"))


class PageError(Exception):
    """An answer other than success for a page: status and a sentence shown to the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def page(rule: str, permission: str, *, methods: tuple[str, ...] = ("GET",)) -> Callable:
    """Register an HTML page at ``rule`` that needs ``permission`` (a PERMISSIONS key or SIGNED_IN).

    The view runs with ``g.caller`` set (``sessions.Caller``: ``.actor.name``, ``.actor.role``)
    and returns a response, usually :func:`render`'s.
    """
    if permission != SIGNED_IN and permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")

    def wrap(fn: Callable) -> Callable:
        def view(**kwargs: Any) -> Any:
            try:
                found = _caller()
                if found is None:
                    return redirect(f"{url_for('pages.login')}?next={quote(_here(), safe='/')}")
                g.caller = found
                if permission != SIGNED_IN and not found.actor.can(permission):
                    api.require(found.actor, permission)
                return fn(**kwargs)
            except Exception as err:  # every failure is a page with a sentence
                return _failure(err)

        view.__name__ = fn.__name__
        pages.add_url_rule(rule, fn.__name__, view, methods=list(methods))
        return fn

    return wrap


def _caller() -> sessions.Caller | None:
    form_token = request.form.get("csrf_token") if request.method == "POST" else None
    return sessions.caller(api.registry(), form_csrf=form_token)


def _here() -> str:
    query = request.query_string.decode("ascii", "replace")
    return request.path + (f"?{query}" if query else "")


def _failure(err: Exception) -> Response:
    if isinstance(err, PageError):
        return error_page(err.status, err.message)
    if isinstance(err, api.ApiError):
        return error_page(err.status, err.message)
    if isinstance(err, sessions.Unauthenticated):
        session.clear()
        return redirect(f"{url_for('pages.login')}?next={quote(_here(), safe='/')}")
    if isinstance(err, sessions.CsrfRefused):
        return error_page(403, "this form has expired or came from another site; reload the page and try again")
    if isinstance(err, RegistryError) and err.status < 500:
        return error_page(err.status, str(err).splitlines()[0])
    if isinstance(err, BadInput):
        status = getattr(err, "status", 400)
        return error_page(status if isinstance(status, int) and 400 <= status < 500 else 400, str(err))
    reference = secrets.token_hex(6)
    log.error("console: unexpected error on %s (reference %s): %s", request.path, reference, err,
              exc_info=err, extra={"reference": reference})
    return error_page(500, f"the console failed to show this page (reference {reference}); "
                           "the server log has the details")


def error_page(status: int, message: str) -> Response:
    """An HTML page for an error: the status, a sentence, and where to go from here."""
    titles = {400: "Bad request", 401: "Sign in", 403: "Not allowed", 404: "Not found", 409: "Conflict",
              429: "Too many attempts", 500: "Something went wrong"}
    body = render_template("console/error.html", **_context("error", None),
                           title=titles.get(status, "Error"), status=status, message=message)
    return Response(body, status=status, mimetype="text/html")


def render(template: str, page_class: str, data: dict[str, Any], *, title: str = "",
           api_url: str | None = None, status: int = 200) -> Response:
    """Render ``template`` with ``data`` (the same dict the JSON twin answers) and the layout's context.

    ``page_class`` becomes ``<body class="page-{page_class}">``; ``api_url`` links the JSON twin.
    """
    body = render_template(template, **_context(page_class, api_url), title=title, data=data, **data)
    return Response(body, status=status, mimetype="text/html")


def _context(page_class: str, api_url: str | None) -> dict[str, Any]:
    found = getattr(g, "caller", None)
    return {"page_class": page_class, "nav": NAV, "api_url": api_url,
            "user": found.actor if found else None,
            "csrf_token": (found.csrf_token if found else None) or ""}


def csrf_field() -> Markup:
    """The hidden form field a page's POST form needs (checked by :func:`page`)."""
    found = getattr(g, "caller", None)
    token = (found.csrf_token if found else None) or ""
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(token)


# -- filters for templates ---------------------------------------------------------------

@pages.app_template_filter("number")
def _number(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


@pages.app_template_filter("pct")
def _pct(value: Any) -> str:
    if value is None:
        return "–"
    return f"{float(value) * 100:.1f}%"


@pages.app_template_filter("bytes")
def _bytes(value: Any) -> str:
    if value is None:
        return "–"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return str(value)


@pages.app_template_filter("when")
def _when(value: Any) -> Markup:
    """A time as ``<time>``: UTC in the text and on hover; console.js shows it in the viewer's zone."""
    if not value:
        return Markup("–")
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        utc = parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        iso = utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return Markup("<span>{}</span>").format(text)
    shown = utc.strftime("%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, shown, shown)


@pages.app_context_processor
def _helpers() -> dict[str, Any]:
    return {"csrf_field": csrf_field}


# -- sign in and out ---------------------------------------------------------------------

@pages.route("/")
def home() -> Response:
    return redirect(url_for("pages.runs_page") if "pages.runs_page" in _endpoints() else url_for("pages.login"))


def _endpoints() -> set[str]:
    from flask import current_app

    return set(current_app.view_functions)


@pages.route("/login", methods=["GET", "POST"])
def login() -> Response:
    target = request.args.get("next") or ""
    target = target if _NEXT.fullmatch(target) else "/"
    if request.method == "GET":
        return _login_form(target)
    sent = request.form.get("csrf_token") or ""
    expected = session.get("login_csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        return _login_form(target, "the sign-in form expired; please try again", 403)
    name, password = request.form.get("name") or "", request.form.get("password") or ""
    if not name or len(name) > 200 or len(password) > 1024:
        return _login_form(target, "enter your user name and password", 400, name[:200])
    try:
        actor = api.registry().accounts.login(name, password, request.remote_addr or "-")
    except LoginThrottled as err:
        wait = api.retry_after_seconds(err.retry_after, api.registry().clock())
        response = _login_form(target, f"{err}; that is in {wait} seconds", 429, name)
        response.headers["Retry-After"] = str(wait)
        return response
    except LoginFailed as err:
        return _login_form(target, f"{err}", 401, name)
    sessions.start_session(actor)
    return redirect(target)


def _login_form(target: str, message: str = "", status: int = 200, name: str = "") -> Response:
    token = session.get("login_csrf")
    if not isinstance(token, str):
        token = session["login_csrf"] = secrets.token_urlsafe(32)
    body = render_template("console/login.html", **_context("login", None), title="Sign in",
                           login_csrf=token, next=target, message=message, name=name)
    return Response(body, status=status, mimetype="text/html")


@pages.route("/logout", methods=["POST"])
def logout() -> Response:
    sent = request.form.get("csrf_token") or ""
    expected = session.get("csrf")
    if isinstance(expected, str) and not hmac.compare_digest(sent.encode(), expected.encode()):
        return error_page(403, "this form has expired or came from another site; reload the page and try again")
    session.clear()
    return redirect(url_for("pages.login"))


__all__ += ["PageError", "home", "login", "logout"]
