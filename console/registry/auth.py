"""Roles and what each may do, password hashing, API tokens and the login throttle's limits.

The permission table here is the one place the CLI, the service and the HTTP API ask.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from feedgen.console.registry.errors import Forbidden
from feedgen.core.errors import BadInput

ROLES = ("viewer", "editor", "publisher", "approver", "admin")

# permission -> the roles that have it (admin has every permission)
PERMISSIONS: dict[str, frozenset[str]] = {
    "definitions.read": frozenset(ROLES),
    "definitions.edit": frozenset({"editor", "publisher", "admin"}),       # drafts, restore, validate, preview
    "definitions.publish": frozenset({"publisher", "admin"}),
    "definitions.archive": frozenset({"publisher", "admin"}),
    "definitions.import": frozenset({"publisher", "admin"}),
    "runs.read": frozenset(ROLES),
    "runs.decide": frozenset({"approver", "admin"}),                        # approve / reject held runs
    "audit.read": frozenset(ROLES),
    "users.manage": frozenset({"admin"}),                                   # users and their tokens
}

# Login throttle: this many failures within the window refuse further attempts (right or
# wrong) for the user, or from the address, until the window has passed the oldest of them.
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)

TOKEN_PREFIX = "fgt_"
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


@dataclass(frozen=True)
class Actor:
    """Who is acting: a registry user, or the OS user behind the CLI (``os:NAME``, admin)."""

    name: str
    role: str

    def can(self, permission: str) -> bool:
        return can(self.role, permission)


def can(role: str, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return role == "admin" or role in PERMISSIONS[permission]


def require(actor: Actor, permission: str) -> None:
    """Forbidden naming the roles that may do it, unless ``actor`` may."""
    if not actor.can(permission):
        allowed = ", ".join(r for r in ROLES if can(r, permission))
        raise Forbidden(f"{actor.name} ({actor.role}) may not {permission.replace('.', ' ')}; "
                        f"that needs one of the roles: {allowed}")


def check_role(role: str) -> str:
    if role not in ROLES:
        raise BadInput(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")
    return role


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def new_token() -> str:
    """A new API token: 32 random bytes, URL-safe; show it once, store ``token_digest`` of it."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_password_strength(password: str) -> None:
    if len(password) < 8:
        raise BadInput("the password is too short; use at least 8 characters")
