"""Access tokens: stored only as SHA-256 hex digests, compared in constant time.

A feed token may arrive as ``Authorization: Bearer <token>``, as the password of HTTP
basic auth (Google Merchant Center's fetch supports a user and password; the user name
is ignored) or as ``?token=<token>``. The admin and metrics tokens are accepted only in the
``Authorization`` header, so they never land in access logs. A token is 1-512 visible ASCII
characters (``feedgen.fileserver.params.TOKEN``); anything else opens nothing.

What a client learns (the same for every syntactically valid id, existing or not):
no credentials → 401; credentials that do not open this id → 404, exactly as for a
definition that does not exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from feedgen.core.errors import ConfigError
from feedgen.fileserver.params import valid_token

__all__ = ["TokenTable", "hash_token", "header_token", "request_token"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Compared against when an id has no token, so a miss costs the same as a hit.
_NO_TOKEN = "0" * 64


def hash_token(token: str) -> str:
    """The SHA-256 hex digest to put in ``server.tokens`` for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def header_token(authorization: str | None) -> str | None:
    """The token carried by an Authorization header (Bearer, or the basic-auth password)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return value
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


def request_token(authorization: str | None, query_token: str | None) -> str | None:
    """The feed token of a request: the Authorization header wins over ``?token=``."""
    return header_token(authorization) or (query_token or None)


def _check_digest(value: Any, where: str) -> str:
    text = str(value).strip().lower() if value is not None else ""
    if not _HEX64.match(text):
        raise ConfigError(
            f"{where}: expected the SHA-256 hex digest of the token (64 hex characters), "
            "not the token itself; compute it with: printf %s 'TOKEN' | sha256sum"
        )
    return text


class TokenTable:
    """Per-definition token digests, the public ids and the admin digest from ``server``."""

    def __init__(self, server: Mapping[str, Any], label: str = "config") -> None:
        tokens = server.get("tokens") or {}
        if not isinstance(tokens, Mapping):
            raise ConfigError(f"{label}: server.tokens must map definition id to a sha256 hex digest")
        self.digests = {str(k): _check_digest(v, f"{label}: server.tokens.{k}") for k, v in tokens.items()}
        public = server.get("public") or []
        if isinstance(public, str) or not isinstance(public, list | tuple):
            raise ConfigError(f"{label}: server.public must be a list of definition ids")
        self.public = frozenset(str(p) for p in public)
        admin = server.get("admin_token_sha256")
        self.admin = _check_digest(admin, f"{label}: server.admin_token_sha256") if admin else None
        metrics = server.get("metrics_token_sha256")
        self.metrics = _check_digest(metrics, f"{label}: server.metrics_token_sha256") if metrics else None

    def opens(self, definition_id: str, token: str | None) -> bool:
        """True when ``token`` gives access to ``definition_id``."""
        if definition_id in self.public:
            return True
        return _matches(token, self.digests.get(definition_id))

    def is_admin(self, token: str | None) -> bool:
        return _matches(token, self.admin)

    def opens_metrics(self, token: str | None) -> bool:
        """True for the metrics token (``server.metrics_token_sha256``) or the admin token."""
        return _matches(token, self.metrics) or _matches(token, self.admin)


def _matches(token: str | None, expected: str | None) -> bool:
    if not valid_token(token):
        return False
    match = hmac.compare_digest(hash_token(token), expected or _NO_TOKEN)  # type: ignore[arg-type]
    return match and expected is not None
