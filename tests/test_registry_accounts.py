"""Users, passwords, API tokens, roles and the login throttle, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from feedgen.console.registry import (
    PERMISSIONS,
    ROLES,
    Forbidden,
    LoginFailed,
    LoginThrottled,
    Registry,
    can,
)
from feedgen.console.registry.models import TokenRow, UserRow
from tests.registry_support import ADMIN, EDITOR, Clock


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def registry(registry_url, clock):
    reg = Registry.open(registry_url, clock)
    yield reg
    reg.close()


def test_a_user_logs_in_with_the_password_which_is_stored_only_as_an_argon2id_hash(registry):
    registry.accounts.add_user(ADMIN, "ola", "editor", "correct horse")
    actor = registry.accounts.login("ola", "correct horse", "10.0.0.1")
    assert (actor.name, actor.role) == ("ola", "editor")
    with pytest.raises(LoginFailed, match="unknown user or wrong password"):
        registry.accounts.login("ola", "wrong horse", "10.0.0.1")
    with pytest.raises(LoginFailed, match="unknown user or wrong password"):
        registry.accounts.login("nobody", "correct horse", "10.0.0.1")
    with registry.db.read() as s:
        stored = s.scalars(select(UserRow.password_hash)).one()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored


def test_an_api_token_is_shown_once_stored_as_a_hash_and_dies_with_a_disabled_user(registry):
    registry.accounts.add_user(ADMIN, "bot", "publisher", "long enough")
    token = registry.accounts.issue_token(ADMIN, "bot")
    assert registry.accounts.authenticate_token(token).name == "bot"
    with registry.db.read() as s:
        digests = s.scalars(select(TokenRow.token_sha256)).all()
    assert token not in digests and len(digests[0]) == 64
    with pytest.raises(LoginFailed):
        registry.accounts.authenticate_token(token[:-1] + "x")

    registry.accounts.disable_user(ADMIN, "bot", reason="left")
    with pytest.raises(LoginFailed):
        registry.accounts.authenticate_token(token)
    with pytest.raises(LoginFailed):
        registry.accounts.login("bot", "long enough", "10.0.0.1")
    assert [(u.name, u.disabled, u.tokens) for u in registry.accounts.list_users()] == [("bot", True, 1)]
    assert [e.action for e in reversed(registry.audit(object_id="bot"))] == [
        "user.add", "user.issue_token", "user.disable"]


def test_five_failures_lock_the_user_out_even_with_the_right_password_until_the_window_passes(registry, clock):
    registry.accounts.add_user(ADMIN, "ola", "editor", "correct horse")
    for i in range(5):
        with pytest.raises(LoginFailed):
            registry.accounts.login("ola", f"guess {i}", f"10.0.0.{i}")
        clock.advance(minutes=1)
    with pytest.raises(LoginThrottled) as err:
        registry.accounts.login("ola", "correct horse", "10.9.9.9")
    assert err.value.retry_after == clock.now + timedelta(minutes=10)  # the first failure + 15 minutes
    clock.advance(minutes=11)  # the first failure is now more than 15 minutes old
    assert registry.accounts.login("ola", "correct horse", "10.9.9.9").name == "ola"


def test_failures_from_one_address_throttle_it_for_every_user_across_workers(registry_url, clock):
    first, second = Registry.open(registry_url, clock), Registry.open(registry_url, clock)
    try:
        first.accounts.add_user(ADMIN, "kasia", "approver", "correct horse")
        for i in range(5):
            worker = (first, second)[i % 2]
            with pytest.raises(LoginFailed):
                worker.accounts.login(f"someone-{i}", "guess", "203.0.113.7")
        with pytest.raises(LoginThrottled):
            second.accounts.login("kasia", "correct horse", "203.0.113.7")
        assert first.accounts.login("kasia", "correct horse", "198.51.100.1").name == "kasia"
    finally:
        first.close()
        second.close()


def test_only_an_admin_manages_users(registry):
    with pytest.raises(Forbidden, match="admin"):
        registry.accounts.add_user(EDITOR, "mallory", "admin", "long enough")
    registry.accounts.add_user(ADMIN, "mallory", "viewer", "long enough")
    with pytest.raises(Forbidden):
        registry.accounts.issue_token(EDITOR, "mallory")


@pytest.mark.parametrize("role", ROLES)
def test_the_permission_table_gives_each_role_its_documented_rights(role):
    rights = {p for p in PERMISSIONS if can(role, p)}
    expected = {
        "viewer": {"definitions.read", "runs.read", "audit.read"},
        "editor": {"definitions.read", "runs.read", "audit.read", "definitions.edit"},
        "publisher": {"definitions.read", "runs.read", "audit.read", "definitions.edit", "definitions.publish",
                      "definitions.archive", "definitions.import"},
        "approver": {"definitions.read", "runs.read", "audit.read", "runs.decide"},
        "admin": set(PERMISSIONS),
    }
    assert rights == expected[role]
