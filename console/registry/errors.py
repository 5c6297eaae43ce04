"""The registry's errors: each says what was refused and why; the API maps them to HTTP statuses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from feedgen.core.errors import BadInput, DefinitionError, FeedgenError


class RegistryError(FeedgenError):
    """Root of the registry's errors; ``status`` is the HTTP status the API answers with."""

    status = 500


class NotFound(BadInput, RegistryError):
    """No such definition, version or user (404)."""

    status = 404


class StaleVersion(BadInput, RegistryError):
    """A save or publish named a version that is no longer the latest: nothing was written (409).

    ``base_version`` is what the caller worked from, ``current_version`` what the registry has
    now; both stay readable so the two can be compared.
    """

    status = 409

    def __init__(self, definition_id: str, base_version: int | None, current_version: int | None) -> None:
        self.definition_id = definition_id
        self.base_version = base_version
        self.current_version = current_version
        base = f"version {base_version}" if base_version else "no version (a new definition)"
        now = f"version {current_version}" if current_version else "no version"
        super().__init__(f"definition {definition_id!r}: your change is based on {base}, but the registry "
                         f"now has {now}; compare the two (diff {base_version or 0} {current_version or 0}), "
                         "then save again based on the latest")


class StateConflict(BadInput, RegistryError):
    """The object is not in a state that allows the action, e.g. publishing an archived version (409)."""

    status = 409


class DefinitionRejected(DefinitionError, RegistryError):
    """A draft, publish, archive or import would leave invalid definitions: nothing was written (422).

    ``problems`` are ``LocatedProblem``s: each names its definition and a JSON pointer into it.
    """

    status = 422

    def __init__(self, action: str, problems: Sequence) -> None:
        self.action = action
        super().__init__(problems)
        count = len(self.problems)
        self.args = (f"{action} refused: {count} problem{'s' if count != 1 else ''}:\n"
                     + "\n".join(f"  {p}" for p in self.problems),)

    def __str__(self) -> str:
        return str(self.args[0])


class Forbidden(RegistryError):
    """The actor's role does not allow the action (403)."""

    status = 403
    exit_code = 2


class LoginFailed(RegistryError):
    """Unknown user, wrong password, disabled user or unknown token: one message for all (401)."""

    status = 401
    exit_code = 2


class LoginThrottled(LoginFailed):
    """Too many failed logins for this user or address: refused until ``retry_after`` (429)."""

    status = 429

    def __init__(self, retry_after: datetime) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed logins; try again after {retry_after.isoformat(timespec='seconds')}")
