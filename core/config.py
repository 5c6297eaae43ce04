"""YAML configuration with embedded defaults and environment overrides.

Precedence (lowest first): embedded defaults, the YAML file, ``FEEDGEN__A__B=value``
environment variables (``FEEDGEN__SPARK__MASTER=spark://h:7077`` sets ``spark.master``),
then command-line options. ``{root}`` in any string is replaced by the data root.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from feedgen.core.config_schema import SOURCE_NAMES, check_config
from feedgen.core.errors import ConfigError

ENV_PREFIX = "FEEDGEN__"

DEFAULTS: dict[str, Any] = {
    "root": "./var",
    "definitions": "examples/definitions",
    "spark": {
        "master": "local[*]",
        "shuffle_partitions": 8,
        "driver_memory": "4g",
        "conf": {},
    },
    "sources": {
        name: {"path": "{root}/sample/" + name, "format": "parquet"} for name in SOURCE_NAMES
    },
    "aggregate": {
        "quarantine_tolerance": 0.05,
        "currencies": ["PLN", "EUR", "USD", "GBP", "CZK"],
        "allow_stale_aggregate": False,
    },
    "generate": {"templates_dir": None, "part_max_raw_bytes": 64 << 20, "jvm_render": True},
    "gates": {
        # a run differing more than this from the last published one is held (per definition;
        # a definition's `gates:` mapping overrides any of them, `enabled: false` turns them off)
        "enabled": True,
        "max_count_change": 0.2,  # |items - previous items| / previous items
        "max_share_removed": 0.1,  # removed / previous items
        "max_share_changed": 0.3,  # updated / previous items
        "allow_empty": False,  # an empty output after a non-empty one
        "max_null_rate": 0.05,  # share of items missing a required field
        "min_base_items": 50,  # count and share gates only judge definitions that had this many
        "refresh_after": "28d",  # resend unchanged items last sent this long ago
        "max_template_error_rate": 0.0,  # share of candidates a user template may fail on (any run)
    },
    # a run no pointer names stays this long more (a duration: 30m, 1h, 2d; or seconds), so a
    # download started before the switch can finish
    "publish": {"store": None, "retention": 5, "retention_grace": "1h", "s3_endpoint": None},
    "kafka": {
        "bootstrap": None, "topic": "feedgen.deltas",
        "delivery_timeout_ms": 60000,  # a delivery report not back by then is a failure
        "producer": {},  # extra confluent-kafka producer settings
    },
    "server": {
        "host": "127.0.0.1", "port": 8080, "workers": 2, "threads": 4,
        "store": None,  # where published feeds are read; default publish.store, else root
        "tokens": {},  # definition_id -> sha256 hex of its access token
        "public": [],  # definition ids served without a token
        "admin_token_sha256": None,  # for /runs and approve/reject (and /metrics)
        "metrics_token_sha256": None,  # for /metrics (Prometheus bearer token); the admin token works too
        # Membership lookups (fileserver/lookups.py): optional Bearer token digest; how often
        # an S3 pointer is re-read; where an S3 index is downloaded (default: a temp folder).
        "lookup_token_sha256": None, "lookup_pointer_ttl": 1.0, "lookup_cache_dir": None,
    },
    # One entry per connector name; unset keys come from feedgen.connectors.base.SETTING_DEFAULTS
    # (batch_size, linger_ms, rate_limit_per_s, max_retries, backoff, timeout_s,
    # circuit_breaker, dead_letter_topic, group_id). Credentials are env var names.
    "connectors": {
        "meta_catalog_batch": {
            "type": "meta_catalog_batch", "token_env": "META_TOKEN", "catalog_id": None,
            "endpoint": "https://graph.facebook.com/v21.0/{catalog_id}/items_batch",
            "batch_size": 3000, "rate_limit_per_s": 10,
        },
        "google_merchant_api": {
            "type": "google_merchant_api", "token_env": "GOOGLE_CONTENT_TOKEN", "merchant_id": None,
            "endpoint": "https://shoppingcontent.googleapis.com/content/v2.1/products/batch",
            "content_language": "pl", "target_country": "PL", "batch_size": 1000, "rate_limit_per_s": 10,
        },
        "meta_custom_audience": {
            "type": "meta_custom_audience", "token_env": "META_TOKEN", "audience_id": None,
            "endpoint": "https://graph.facebook.com/v21.0/{audience_id}/users",
            "batch_size": 10000, "rate_limit_per_s": 10,
        },
        "webhook": {"type": "webhook", "endpoint": None, "secret_env": "FEEDGEN_WEBHOOK_SECRET"},
    },
    # The definitions registry (feedgen.console.registry): a SQLAlchemy URL; PostgreSQL
    # (postgresql+psycopg://user@host/db) for a shared deployment.
    "registry": {"url": "sqlite:///{root}/feedgen.db"},
    # The console (`feedgen console`, console/app.py): marketers' API and pages, kept inside.
    "console": {
        "host": "127.0.0.1", "port": 8090, "workers": 2, "threads": 4,
        # signs session cookies; default: generated once into {root}/console-secret (mode 0600)
        "secret_key": None,
        "session_hours": 12,  # a login lasts this long
        "secure_cookies": False,  # true when the console is reached over HTTPS
        "proxy_count": 0,  # proxies in front whose X-Forwarded-For names the client (login throttle)
        "public_url": None,  # how people reach the console (https://feeds.example.com); alerts link to it
        "refresh_seconds": 5,  # the runs pages reload themselves this often while a run is in progress
    },
    # Alerts (jobs/alerts.py): JSON POSTs a Slack-compatible incoming webhook accepts. Each
    # webhook: {url, events: [held, failed, published, near_threshold]}; retried with backoff,
    # then a dead-letter record in the run folder; never stops a run.
    "alerts": {
        "webhooks": [],
        "retries": 3,  # tries after the first
        "backoff_seconds": 2.0,  # doubled after each failed try
        "timeout_seconds": 10.0,
        "near_threshold": 0.8,  # a gate value at this share of its threshold or more is "near"
    },
}


@dataclass
class Config:
    """Resolved configuration: a nested dict plus where it came from."""

    data: dict[str, Any]
    path: Path | None = None
    overrides: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def root(self) -> str:
        return str(self.data["root"])

    @property
    def source_label(self) -> str:
        return str(self.path) if self.path else "<embedded defaults>"


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parse_env_value(raw: str) -> Any:
    # An env value stays text for the schema to coerce ("8" -> 8 where a count is expected,
    # "no" stays "no" where text is); "", "null" and "~" unset a key; "[a, b]" is a list.
    text = raw.strip()
    if text in ("", "null", "~"):
        return None
    if text[:1] in ("[", "{"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return raw
    return raw


def _env_overrides(environ: dict[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """The ``FEEDGEN__A__B`` overrides as a tree, and which variable set each key path."""
    tree: dict[str, Any] = {}
    names: dict[tuple[str, ...], str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if not parts:
            continue
        node = tree
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part, {}), dict):
                raise ConfigError(f"environment variable {name}: {'.'.join(parts[:i + 1])} is set by "
                                  f"{names.get(tuple(parts[:i + 1]), 'another variable')} too; unset one")
            node = node.setdefault(part, {})
        node[parts[-1]] = _parse_env_value(raw)
        names[tuple(parts)] = name
    if "KAFKA_BOOTSTRAP" in environ and "FEEDGEN__KAFKA__BOOTSTRAP" not in environ:
        tree.setdefault("kafka", {})["bootstrap"] = environ["KAFKA_BOOTSTRAP"]
        names[("kafka", "bootstrap")] = "KAFKA_BOOTSTRAP"
    return tree, names


def _substitute_root(node: Any, root: str) -> Any:
    if isinstance(node, str):
        return node.replace("{root}", root)
    if isinstance(node, dict):
        return {k: _substitute_root(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_root(v, root) for v in node]
    return node


def _has_path(tree: Any, loc: tuple[Any, ...]) -> bool:
    for part in loc:
        in_dict = isinstance(tree, dict) and part in tree
        if in_dict or (isinstance(tree, list) and isinstance(part, int) and part < len(tree)):
            tree = tree[part]
        else:
            return False
    return True


def _origins(label: str, loaded: dict[str, Any], env_names: dict[tuple[str, ...], str],
             cli: dict[str, str]):
    """``origin(loc)``: where the value at a key path came from; ``hint``: the env var to use."""

    def env_path(loc: tuple[Any, ...]) -> tuple[str, ...] | None:
        # the variable that set this key, or one below it (FEEDGEN__SORCES__OFFERS__PATH)
        for path in env_names:
            if tuple(loc[:len(path)]) == path or path[:len(loc)] == tuple(loc):
                return path
        return None

    def env_var(loc: tuple[Any, ...]) -> str | None:
        path = env_path(loc)
        return env_names[path] if path else None

    def origin(loc: tuple[Any, ...]) -> str:
        name = env_var(loc)
        if name:
            return f"environment variable {name}"
        if loc and loc[0] in cli:
            return cli[loc[0]]
        # a missing key is reported where its section was written
        written = any(_has_path(loaded, loc[:n]) for n in range(len(loc), 0, -1))
        return label if written else "<embedded defaults>"

    def hint(bad: tuple[Any, ...], good: tuple[Any, ...]) -> str:
        path = env_path(bad)
        if path is None or not all(isinstance(p, str) for p in good):
            return ""
        fixed = (*good, *path[len(bad):])
        return f" ({ENV_PREFIX}{'__'.join(p.upper() for p in fixed)})"

    return origin, hint


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    root: str | None = None,
    definitions: str | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Load the config file (or only defaults), apply env overrides and CLI options."""
    environ = dict(os.environ if environ is None else environ)
    data = copy.deepcopy(DEFAULTS)
    cfg_path = Path(path) if path else None
    loaded: dict[str, Any] = {}
    if cfg_path is not None:
        label = str(cfg_path)
        if not cfg_path.is_file():
            raise ConfigError(f"{label}: config file not found; pass an existing file with --config")
        try:
            loaded = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err)
            raise ConfigError(f"{label}{where}: malformed YAML: {problem}; fix the syntax at that line") from err
        if not isinstance(loaded, dict):
            raise ConfigError(f"{label}: the config must be a mapping of keys (root, sources, spark, ...), got {type(loaded).__name__}")
        data = _deep_merge(data, loaded)
    env_tree, env_names = _env_overrides(environ)
    data = _deep_merge(data, env_tree)
    if root:
        data["root"] = root
    if definitions:
        data["definitions"] = definitions
    if isinstance(data["root"], str):
        data["root"] = data["root"].rstrip("/") or "/"
        data = _substitute_root(data, data["root"])
    cli = {k: f"--{k} {v}" for k, v in (("root", root), ("definitions", definitions)) if v}
    origin, hint = _origins(str(cfg_path) if cfg_path else "<embedded defaults>", loaded, env_names, cli)
    # every section and key is checked here, before any command starts work (or Spark)
    data = check_config(data, defaults=DEFAULTS, origin=origin, hint=hint)
    return Config(data=data, path=cfg_path, overrides=list(env_names.values()))

