"""Who is asking: a Bearer API token or a session cookie, and the CSRF check for cookies.

A request may carry ``Authorization: Bearer <token>`` (automation; no CSRF token needed,
a browser never adds that header by itself) or the session cookie set by ``POST
/api/v1/login``. A state change made with the cookie must also send ``X-CSRF-Token`` equal
to the token given at login (and by ``GET /api/v1/me``): another site can make a browser
send the cookie, but cannot read that token. The session cookie is signed with
``console.secret_key``, or with a key generated once into ``{root}/console-secret`` (0600).
Role and disabled state are read from the registry on every request, so a role change or
``feedgen users disable`` takes effect at once.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import request, session

from feedgen.console.registry import Actor, LoginFailed, NotFound, Registry
from feedgen.core.errors import ConfigError
from feedgen.fileserver import params

SECRET_FILE = "console-secret"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class Unauthenticated(Exception):
    """No usable credentials (401); the message says what to send."""


class CsrfRefused(Exception):
    """A state change with the session cookie but without the matching X-CSRF-Token (403)."""


@dataclass(frozen=True)
class Caller:
    actor: Actor
    via: str                    # "token" or "session"
    csrf_token: str | None = None


def caller(registry: Registry, form_csrf: str | None = None) -> Caller | None:
    """The authenticated caller of the current request; None when it sent no credentials.

    Unauthenticated when credentials were sent but do not hold (unknown token, expired or
    forged cookie, disabled user); CsrfRefused for a cookie state change without the token
    (sent as the X-CSRF-Token header, or as ``form_csrf``: an HTML form's hidden field).
    """
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not params.valid_token(token):
            raise Unauthenticated("send an API token as 'Authorization: Bearer <token>' "
                                  "(get one with 'feedgen users token NAME')")
        try:
            return Caller(registry.accounts.authenticate_token(token), "token")
        except LoginFailed as err:
            raise Unauthenticated(str(err)) from None
    name = session.get("user")
    if not isinstance(name, str):
        return None
    try:
        user = registry.accounts.user(name)
    except NotFound:
        user = None
    if user is None or user.disabled:
        session.clear()
        raise Unauthenticated("your session has ended (the user was disabled or removed); log in again")
    csrf = session.get("csrf")
    sent = form_csrf if form_csrf is not None else request.headers.get(CSRF_HEADER)
    if request.method not in SAFE_METHODS and not _same(sent, csrf):
        raise CsrfRefused(f"a change made with the session cookie needs the header {CSRF_HEADER} "
                          "with the csrf_token from POST /api/v1/login or GET /api/v1/me")
    return Caller(Actor(user.name, user.role), "session", csrf if isinstance(csrf, str) else None)


def start_session(actor: Actor) -> str:
    """Log ``actor`` in on this response's cookie; returns the new CSRF token."""
    session.clear()
    session.permanent = True
    session["user"] = actor.name
    session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def end_session() -> None:
    """Log out. A cookie state change needs the CSRF token, so another site cannot log a user out."""
    if isinstance(session.get("user"), str) and not _same(request.headers.get(CSRF_HEADER), session.get("csrf")):
        raise CsrfRefused(f"logging out with the session cookie needs the header {CSRF_HEADER} "
                          "with the csrf_token from POST /api/v1/login or GET /api/v1/me")
    session.clear()


def _same(sent: Any, expected: Any) -> bool:
    if not isinstance(sent, str) or not isinstance(expected, str) or not sent:
        return False
    return hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def secret_key(config: Any) -> str:
    """``console.secret_key``, else the key in ``{root}/console-secret``, created (0600) on first use."""
    configured = config.get("console.secret_key")
    if configured:
        return str(configured)
    root = config.root
    if "://" in root:
        raise ConfigError(f"console.secret_key: the data root {root} is not a local folder, so no key can be "
                          "kept there; set console.secret_key (at least 32 random characters) in the config")
    path = Path(root) / SECRET_FILE
    if not path.exists():
        _create_secret(path)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise ConfigError(f"{path}: the console's secret key is shorter than 32 characters; delete the file "
                          "(a new one is made; everyone logs in again) or set console.secret_key")
    return key


def _create_secret(path: Path) -> None:
    # Written in full to a private file, then hard-linked into place: two workers starting at
    # once agree on one key, and neither ever reads a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):  # another worker made it first: use theirs
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
