"""The definitions registry: versioned definitions, users and tokens, and an append-only audit log
in SQLite or PostgreSQL. The pipeline and the CLI use it without the console's web app."""

from __future__ import annotations

from feedgen.console.registry.auth import PERMISSIONS, ROLES, Actor, can
from feedgen.console.registry.db import DEFAULT_URL, registry_url
from feedgen.console.registry.errors import (
    DefinitionRejected,
    Forbidden,
    LoginFailed,
    LoginThrottled,
    NotFound,
    RegistryError,
    StaleVersion,
    StateConflict,
)
from feedgen.console.registry.service import (
    AuditEntry,
    DefinitionInfo,
    ImportReport,
    PublishedSet,
    Registry,
    VersionInfo,
)

__all__ = [
    "DEFAULT_URL", "PERMISSIONS", "ROLES", "Actor", "AuditEntry", "DefinitionInfo", "DefinitionRejected",
    "Forbidden", "ImportReport", "LoginFailed", "LoginThrottled", "NotFound", "PublishedSet", "Registry",
    "RegistryError", "StaleVersion", "StateConflict", "VersionInfo", "can", "open_registry", "registry_for",
    "registry_url",
]


def open_registry(url: str, clock=None, templates_dir=None) -> Registry:
    """The registry at ``url``, its schema migrated to the latest version first."""
    return Registry.open(url, clock, templates_dir)


def registry_for(config, override: str | None = None, clock=None) -> Registry:
    """The registry ``config`` names (``--registry URL``, else ``registry.url``), validating
    definitions with the user templates of its ``generate.templates_dir``."""
    templates_dir = config.get("generate.templates_dir") if config is not None else None
    return Registry.open(registry_url(config, override), clock, templates_dir)
