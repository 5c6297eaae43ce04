"""Users, API tokens and password login with a throttle kept in the database (so it holds
across gunicorn workers and restarts)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from feedgen.console.registry import auth
from feedgen.console.registry.auth import Actor, require
from feedgen.console.registry.errors import LoginFailed, LoginThrottled, NotFound, StateConflict
from feedgen.console.registry.models import LoginFailureRow, TokenRow, UserRow
from feedgen.core.errors import BadInput

if TYPE_CHECKING:
    from feedgen.console.registry.service import Registry

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
_DUMMY_HASH = auth.hash_password("feedgen: equal time for unknown users")
_REFUSED = "unknown user or wrong password"


@dataclass(frozen=True)
class UserInfo:
    name: str
    role: str
    disabled: bool
    created_at: datetime
    created_by: str
    tokens: int

    def as_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "disabled": self.disabled,
                "created_at": self.created_at.isoformat(), "created_by": self.created_by, "tokens": self.tokens}


class Accounts:
    """User administration (admin role) and authentication, on a registry's database."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.db = registry.db

    def add_user(self, actor: Actor, name: str, role: str, password: str) -> UserInfo:
        require(actor, "users.manage")
        if not NAME_PATTERN.fullmatch(name):
            raise BadInput(f"bad user name {name!r}; use letters, digits and . _ @ - (at most 100)")
        auth.check_role(role)
        auth.check_password_strength(password)
        now = self.registry.clock()
        with self.db.write() as s:
            if self._find(s, name) is not None:
                raise StateConflict(f"user {name!r} exists already; pick another name")
            s.add(UserRow(name=name, role=role, password_hash=auth.hash_password(password), disabled=False,
                          created_at=now, created_by=actor.name))
            self.registry.add_audit(s, actor, "add", "user", name, None, {"role": role})
        return self.user(name)

    def set_password(self, actor: Actor, name: str, password: str) -> None:
        require(actor, "users.manage")
        auth.check_password_strength(password)
        with self.db.write() as s:
            self._get(s, name).password_hash = auth.hash_password(password)
            self.registry.add_audit(s, actor, "set_password", "user", name, None, {})

    def set_role(self, actor: Actor, name: str, role: str) -> None:
        require(actor, "users.manage")
        auth.check_role(role)
        with self.db.write() as s:
            user = self._get(s, name)
            old, user.role = user.role, role
            self.registry.add_audit(s, actor, "set_role", "user", name, None, {"from": old, "to": role})

    def disable_user(self, actor: Actor, name: str, reason: str = "") -> None:
        """The user can no longer log in, and none of their tokens works."""
        require(actor, "users.manage")
        with self.db.write() as s:
            self._get(s, name).disabled = True
            self.registry.add_audit(s, actor, "disable", "user", name, None, {"reason": reason})

    def issue_token(self, actor: Actor, name: str, token: str | None = None) -> str:
        """A new API token for ``name``: returned once; only its SHA-256 is stored.

        ``token`` fixes its value (the demo's well-known tokens); leave it None otherwise.
        """
        require(actor, "users.manage")
        token = token or auth.new_token()
        with self.db.write() as s:
            user = self._get(s, name)
            row = TokenRow(user_pk=user.id, token_sha256=auth.token_digest(token), created_at=self.registry.clock(),
                           created_by=actor.name)
            s.add(row)
            s.flush()
            self.registry.add_audit(s, actor, "issue_token", "user", name, None, {"token_id": row.id})
        return token

    def user(self, name: str) -> UserInfo:
        with self.db.read() as s:
            return self._user_info(s, self._get(s, name))

    def list_users(self) -> list[UserInfo]:
        with self.db.read() as s:
            return [self._user_info(s, u) for u in s.scalars(select(UserRow).order_by(UserRow.name))]

    # -- authentication ------------------------------------------------------------------

    def authenticate_token(self, token: str) -> Actor:
        """The user a Bearer token belongs to; LoginFailed for an unknown, revoked or disabled one."""
        with self.db.read() as s:
            row = s.scalars(select(TokenRow).where(TokenRow.token_sha256 == auth.token_digest(token or ""),
                                                   TokenRow.revoked_at.is_(None))).one_or_none()
            if row is None or row.user.disabled:
                raise LoginFailed("unknown or revoked API token; ask an admin for one ('feedgen users token NAME')")
            return Actor(row.user.name, row.user.role)

    def login(self, name: str, password: str, address: str) -> Actor:
        """Check a password. After ``auth.MAX_FAILURES`` failures within ``auth.FAILURE_WINDOW``
        for the user or from the address, every attempt is refused (LoginThrottled) until the
        oldest of them leaves the window. A success clears the user's failures."""
        now = self.registry.clock()
        with self.db.write() as s:
            retry_after = self._throttled(s, name, address, now)
            if retry_after is not None:
                raise LoginThrottled(retry_after)
            user = self._find(s, name)
            ok = auth.verify_password(user.password_hash if user else _DUMMY_HASH, password)
            if ok and user is not None and not user.disabled:
                s.execute(delete(LoginFailureRow).where(LoginFailureRow.user_name == name))
                if auth.needs_rehash(user.password_hash):
                    user.password_hash = auth.hash_password(password)
                return Actor(user.name, user.role)
            s.execute(delete(LoginFailureRow).where(LoginFailureRow.at < now - auth.FAILURE_WINDOW))
            s.add(LoginFailureRow(at=now, user_name=name[:200], address=address[:100]))
        raise LoginFailed(_REFUSED)

    def _throttled(self, s: Session, name: str, address: str, now: datetime) -> datetime | None:
        since = now - auth.FAILURE_WINDOW
        latest = None
        for column, value in ((LoginFailureRow.user_name, name), (LoginFailureRow.address, address)):
            times = s.scalars(select(LoginFailureRow.at).where(column == value, LoginFailureRow.at > since)
                              .order_by(LoginFailureRow.at.desc()).limit(auth.MAX_FAILURES)).all()
            if len(times) >= auth.MAX_FAILURES:
                until = times[-1] + auth.FAILURE_WINDOW
                latest = until if latest is None else max(latest, until)
        return latest

    # -- internals -------------------------------------------------------------------------

    def _find(self, s: Session, name: str) -> UserRow | None:
        return s.scalars(select(UserRow).where(UserRow.name == name)).one_or_none()

    def _get(self, s: Session, name: str) -> UserRow:
        user = self._find(s, name)
        if user is None:
            raise NotFound(f"no user {name!r}; add one with 'feedgen users add {name} --role viewer'")
        return user

    def _user_info(self, s: Session, user: UserRow) -> UserInfo:
        tokens = s.scalar(select(func.count()).select_from(TokenRow)
                          .where(TokenRow.user_pk == user.id, TokenRow.revoked_at.is_(None)))
        return UserInfo(user.name, user.role, user.disabled, user.created_at, user.created_by, int(tokens or 0))
