"""The typed schema of the config: every section and key, checked at load, before any work.

``check_config(data, origin)`` validates the merged config (defaults < file < environment
< command line) with pydantic and returns it with values coerced to their types (so
``FEEDGEN__SPARK__SHUFFLE_PARTITIONS=16`` becomes the int 16), or raises ConfigError whose
lines each name where the value came from (the file or the environment variable), the key
path, what is wrong and the fix: ``feedgen.yaml: gates.enabeld: unknown key; did you mean
'enabled'?``. Free-form maps are only where the value goes to another program as is:
``spark.conf`` (Spark properties), ``kafka.producer`` (librdkafka properties) and
``server.tokens`` (definition id -> digest).
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from feedgen.core.errors import ConfigError

SOURCE_NAMES = ("offers", "sellers", "products", "campaigns", "ratings", "customers", "orders", "events")
# feedgen.connectors.base.partner_types() (connectors sit above config in the layers)
CONNECTOR_TYPES = ("google_merchant_api", "meta_catalog_batch", "meta_custom_audience", "webhook")

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# a feed or segment id (feedgen.generator.validate.ID_PATTERN; the file server routes at most 128)
DEFINITION_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


# --- value types: each rejects what would fail later, with the words a user needs ----------

def _number(value: Any) -> Any:
    # pydantic takes true/false for 1/0; a threshold of `true` is a mistake, not a number
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    return value


def _text(value: Any) -> Any:
    # ids and sizes written without quotes (catalog_id: 1234, driver_memory: 4096) are text
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _duration(value: Any) -> Any:
    """``28d``, ``12h``, ``2w`` (s m h d w), or a number of days (gates.refresh_after)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return value
    m = _DURATION.match(value) if isinstance(value, str) else None
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{value!r} is not a positive duration; write e.g. 28d, 12h or 2w")
    return value


def _grace(value: Any) -> Any:
    """``1h``, ``30m``, ``0s`` (zero is allowed) or a number of seconds (publish.retention_grace)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return value
    if not (isinstance(value, str) and _DURATION.match(value)):
        raise ValueError(f"{value!r} is not a duration; write e.g. 1h, 30m or 0s")
    return value


def _sha256(value: Any) -> Any:
    text = value.strip().lower() if isinstance(value, str) else ""
    if not _HEX64.match(text):
        raise ValueError("expected the SHA-256 hex digest of the token (64 hex characters), not the "
                         "token itself; compute it with: printf %s 'TOKEN' | sha256sum")
    return text


def _definition_id(value: str) -> str:
    if len(value) > 128 or not DEFINITION_ID.fullmatch(value):
        raise ValueError(f"{value[:60]!r} is not a definition id (lower-case letters, digits and single "
                         "dashes, e.g. google-electronics-pl); write the id of the feed or segment it is for")
    return value


def _existing_dir(value: str) -> str:
    # relative to the working directory, as every command resolves it (jobs.pipeline.absolute_config)
    if not os.path.isdir(os.path.expanduser(value)):
        raise ValueError(f"{value!r} is not an existing directory; create it with your templates "
                         "(one folder per template, see examples/user-template) or remove the key")
    return value


def _scalar(value: Any) -> Any:
    if isinstance(value, dict | list) or value is None:
        raise ValueError(f"{value!r} is not a single value; write text, a number or true/false")
    return value


Number = Annotated[float, BeforeValidator(_number), Field(ge=0)]
Count = Annotated[int, BeforeValidator(_number), Field(ge=0)]
Positive = Annotated[int, BeforeValidator(_number), Field(ge=1)]
Text = Annotated[str, Field(min_length=1)]
IdText = Annotated[str, BeforeValidator(_text)]
Duration = Annotated[Any, BeforeValidator(_duration)]
Grace = Annotated[Any, BeforeValidator(_grace)]
Sha256 = Annotated[str, BeforeValidator(_sha256)]
Scalar = Annotated[Any, BeforeValidator(_scalar)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
DefinitionId = Annotated[str, AfterValidator(_definition_id)]
Directory = Annotated[str, Field(min_length=1), AfterValidator(_existing_dir)]


class _Section(BaseModel):
    # Fields default to None without being Optional: a key left out is simply not set
    # (the embedded defaults set it), while an explicit `null` is an error.
    model_config = ConfigDict(extra="forbid")


class Spark(_Section):
    master: Text = None
    shuffle_partitions: Positive = None
    driver_memory: IdText = None
    broadcast_threshold: Annotated[int, BeforeValidator(_number), Field(ge=-1)] = None
    conf: dict[str, Scalar] = None  # Spark properties, passed to the session as they are


class Source(_Section):
    path: Text
    format: Literal["parquet", "csv", "json"] = "parquet"


class Sources(_Section):
    offers: Source = None
    sellers: Source = None
    products: Source = None
    campaigns: Source = None
    ratings: Source = None
    customers: Source = None
    orders: Source = None
    events: Source = None


class Aggregate(_Section):
    quarantine_tolerance: Annotated[float, BeforeValidator(_number), Field(ge=0, le=1)] = None
    currencies: list[Currency] = None
    allow_stale_aggregate: bool = None


class Generate(_Section):
    templates_dir: Directory | None = None
    part_max_raw_bytes: Positive = None
    jvm_render: bool = None


class Gates(_Section):
    """The config's ``gates`` section, and a definition's ``gates:`` overrides (same keys)."""

    enabled: bool = None
    max_count_change: Number | None = None  # null turns this one gate off
    max_share_removed: Number | None = None
    max_share_changed: Number | None = None
    allow_empty: bool = None
    max_null_rate: Number | None = None
    min_base_items: Count = None
    refresh_after: Duration = None
    max_template_error_rate: Number | None = None


class Publish(_Section):
    store: Text | None = None
    retention: Positive = None
    retention_grace: Grace = None
    s3_endpoint: Text | None = None


class Kafka(_Section):
    bootstrap: Text | None = None
    topic: Text = None
    delivery_timeout_ms: Positive = None
    producer: dict[str, Scalar] = None  # librdkafka properties, passed as they are


class Server(_Section):
    host: Text = None
    port: Annotated[int, BeforeValidator(_number), Field(ge=0, le=65535)] = None
    workers: Positive = None
    threads: Positive = None
    store: Text | None = None
    tokens: dict[DefinitionId, Sha256] = None  # definition id -> sha256 hex of its access token
    public: list[DefinitionId] = None
    admin_token_sha256: Sha256 | None = None
    metrics_token_sha256: Sha256 | None = None
    lookup_token_sha256: Sha256 | None = None
    lookup_pointer_ttl: Number = None
    lookup_cache_dir: Text | None = None


class Backoff(_Section):
    initial_s: Number = None
    max_s: Number = None
    multiplier: Number = None
    jitter: Number = None


class CircuitBreaker(_Section):
    failure_threshold: Positive = None
    open_s: Number = None


class Connector(_Section):
    """``connectors.<name>``: the keys of feedgen.connectors.base.SETTING_DEFAULTS and the partners'."""

    # other keys are allowed only as placeholders of the endpoint: .../{catalog_id}/items_batch
    model_config = ConfigDict(extra="allow")

    type: Literal[CONNECTOR_TYPES] = None  # type: ignore[valid-type]
    endpoint: Text | None = None
    token_env: Text | None = None
    secret_env: Text | None = None
    batch_size: Positive = None
    linger_ms: Number = None
    rate_limit_per_s: Number = None
    max_retries: Count = None
    backoff: Backoff = None
    max_retry_after_s: Number = None
    timeout_s: Number = None
    circuit_breaker: CircuitBreaker = None
    dead_letter_topic: Text | None = None
    group_id: Text | None = None
    session_timeout_ms: Positive = None
    catalog_id: IdText | None = None  # meta_catalog_batch
    item_type: Text = None
    merchant_id: IdText | None = None  # google_merchant_api
    content_language: Text = None
    target_country: Text = None
    channel: Text = None
    audience_id: IdText | None = None  # meta_custom_audience
    max_items: Positive = None  # webhook


class Registry(_Section):
    url: Text | None = None  # default sqlite:///{root}/feedgen.db (feedgen.console.registry.db)


class Console(_Section):
    host: Text = None
    port: Annotated[int, BeforeValidator(_number), Field(ge=0, le=65535)] = None
    workers: Positive = None
    threads: Positive = None
    secret_key: Annotated[str, Field(min_length=32)] | None = None
    session_hours: Annotated[float, BeforeValidator(_number), Field(gt=0, le=24 * 30)] = None
    secure_cookies: bool = None
    proxy_count: Annotated[int, BeforeValidator(_number), Field(ge=0, le=5)] = None
    public_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = None
    refresh_seconds: Annotated[int, BeforeValidator(_number), Field(ge=1, le=3600)] = None


ALERT_EVENTS = ("held", "failed", "published", "near_threshold")


class Webhook(_Section):
    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")]
    events: list[Literal[ALERT_EVENTS]] = None  # default: held and failed


class Alerts(_Section):
    webhooks: list[Webhook] = None
    retries: Annotated[int, BeforeValidator(_number), Field(ge=0, le=20)] = None
    backoff_seconds: Number = None
    timeout_seconds: Annotated[float, BeforeValidator(_number), Field(gt=0, le=300)] = None
    near_threshold: Annotated[float, BeforeValidator(_number), Field(gt=0, le=1)] = None


class FeedgenConfig(_Section):
    root: Text = None
    definitions: Text = None
    spark: Spark = None
    sources: Sources = None
    aggregate: Aggregate = None
    generate: Generate = None
    gates: Gates = None
    publish: Publish = None
    kafka: Kafka = None
    server: Server = None
    connectors: dict[str, Connector | None] = None
    registry: Registry = None
    console: Console = None
    alerts: Alerts = None


# --- errors -----------------------------------------------------------------------------

Loc = tuple[Any, ...]
Hint = Callable[[Loc, Loc], str]


def _unwrap(annotation: Any) -> Any:
    """The model or dict a field holds, through Annotated and Optional."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = inner[0] if len(inner) == 1 else annotation
    return annotation


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model whose keys live at ``loc`` (None for free-form maps)."""
    node: Any = FeedgenConfig
    i = 0
    while i < len(loc):
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(loc[i]))
            if field is None:
                return None
            node = _unwrap(field.annotation)
            i += 1
        elif typing.get_origin(node) is dict:
            node = _unwrap(typing.get_args(node)[1])
            i += 1  # the map's key (a connector name)
        else:
            return None
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def _suggest(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _default_at(defaults: Mapping[str, Any], loc: Loc) -> Any:
    node: Any = defaults
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _example(loc: Loc, defaults: Mapping[str, Any]) -> str:
    default = _default_at(defaults, loc)
    if default is None or isinstance(default, dict):
        return ""
    shown = "true" if default is True else "false" if default is False else default
    return f"; write e.g. {loc[-1]}: {shown}"


def _unknown_key(loc: Loc, hint: Hint) -> str:
    model = _model_at(loc[:-1])
    known = sorted(model.model_fields) if model is not None else []
    key = str(loc[-1])
    guess = _suggest(key, known)
    where = "top-level key" if len(loc) == 1 else "key"
    text = f"unknown {where} {key!r}"
    if guess:
        return text + f"; did you mean {guess!r}{hint(loc, loc[:-1] + (guess,))}?"
    return text + (f"; known keys are {', '.join(known)}" if known else "")


def _problem(err: dict[str, Any], defaults: Mapping[str, Any], hint: Hint) -> tuple[Loc, str]:
    """(key path, what is wrong and the fix) for one pydantic error."""
    loc = tuple(err["loc"])
    if loc[-1:] == ("[key]",):  # a map's key (server.tokens.<id>) is reported at the key itself
        loc = loc[:-1]
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    shown = "null" if value is None else repr(value)
    if kind == "extra_forbidden":
        return loc, _unknown_key(loc, hint)
    if kind == "missing":
        return loc, "missing; add it"
    if kind == "value_error":
        return loc, str(ctx.get("error") or err["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        guess = _suggest(str(value), choices)
        text = f"{shown} is not one of {', '.join(choices)}"
        return loc, text + (f"; did you mean {guess!r}?" if guess else "")
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return loc, f"{shown} is not a mapping; write the keys under it (key: value)"
    if kind in ("list_type",):
        return loc, f"{shown} is not a list; write [a, b]"
    if kind.startswith("int_"):
        return loc, f"{shown} is not a whole number" + _example(loc, defaults)
    if kind.startswith("float_"):
        return loc, f"{shown} is not a number" + _example(loc, defaults)
    if kind.startswith("bool_"):
        return loc, f"{shown} is not true or false"
    if kind == "string_type":
        return loc, f"{shown} is not text" + _example(loc, defaults)
    if kind == "string_too_short":
        return loc, "is empty" + _example(loc, defaults)
    if kind == "string_pattern_mismatch" and loc[:2] == ("aggregate", "currencies"):
        return loc, f"{shown} is not a currency code; write three capital letters like PLN"
    for bound, words in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if bound in ctx:
            return loc, f"{shown} is out of range; it must be {words} {ctx[bound]}" + _example(loc, defaults)
    return loc, f"{shown}: {err['msg']}"


def _endpoint_placeholders(endpoint: Any) -> set[str]:
    return set(re.findall(r"{(\w+)}", endpoint)) if isinstance(endpoint, str) else set()


def _connector_problems(data: Mapping[str, Any], hint: Hint) -> list[tuple[Loc, str]]:
    # read from the raw data, so these show up together with the schema's own problems
    problems = []
    connectors = data.get("connectors")
    for name, conn in (connectors.items() if isinstance(connectors, Mapping) else ()):
        if not isinstance(conn, Mapping):
            continue
        placeholders = _endpoint_placeholders(conn.get("endpoint"))
        for key in sorted(set(conn) - set(Connector.model_fields) - placeholders, key=str):
            problems.append((("connectors", name, key), _unknown_key(("connectors", name, key), hint)))
        if conn.get("type") is None and name not in CONNECTOR_TYPES:
            problems.append((("connectors", name, "type"),
                             f"missing; a connector named {name!r} needs a type: one of "
                             f"{', '.join(CONNECTOR_TYPES)}"))
    return problems


def check_config(data: dict[str, Any], *, defaults: Mapping[str, Any],
                 origin: Callable[[Loc], str], hint: Hint = lambda _bad, _good: "") -> dict[str, Any]:
    """``data`` checked against the schema, its values coerced; ConfigError listing every problem.

    ``origin(loc)`` names where the value at ``loc`` came from (the file, an env var);
    ``hint(bad, good)`` may add how to set the suggested key ``good`` the way ``bad`` was set
    (the env var name).
    """
    # A section added to DEFAULTS without a model here is checked for unknown keys only.
    unmodelled = {k: data[k] for k in data if k in defaults and k not in FeedgenConfig.model_fields}
    problems: list[tuple[Loc, str]] = _shape_problems(unmodelled, defaults, ())
    model = None
    try:
        model = FeedgenConfig.model_validate({k: v for k, v in data.items() if k not in unmodelled})
    except ValidationError as err:
        problems += [_problem(e, defaults, hint) for e in err.errors(include_url=False)]
    problems += _connector_problems(data, hint)
    if problems or model is None:
        lines = [f"{origin(loc)}: {_dotted(loc)}: {text}" for loc, text in problems]
        raise ConfigError("\n".join(lines))
    return {**model.model_dump(exclude_unset=True), **unmodelled}


def _shape_problems(data: Mapping[str, Any], defaults: Mapping[str, Any], loc: Loc) -> list[tuple[Loc, str]]:
    problems = []
    for key, value in data.items():
        if key not in defaults:
            guess = _suggest(str(key), [str(k) for k in defaults])
            problems.append(((*loc, key), f"unknown key {key!r}" + (f"; did you mean {guess!r}?" if guess else "")))
        elif isinstance(value, Mapping) and isinstance(defaults[key], Mapping) and defaults[key]:
            problems += _shape_problems(value, defaults[key], (*loc, key))
    return problems


def unknown_definition_ids(server: Mapping[str, Any] | None, ids: Iterable[str], what: str = "definition"
                           ) -> list[str]:
    """``server.tokens`` keys and ``server.public`` ids that name none of ``ids``, each as
    ``key path: what is wrong; did you mean ...`` (a token for a misspelt id opens nothing)."""
    known = sorted(set(ids))
    server = server or {}
    found = [(f"server.tokens.{key}", str(key)) for key in (server.get("tokens") or {})]
    found += [(f"server.public[{n}]", str(key)) for n, key in enumerate(server.get("public") or [])]
    lines = []
    for where, key in found:
        if key in known:
            continue
        guess = _suggest(key, known)
        lines.append(f"{where}: no {what} has the id {key!r}" + (f"; did you mean {guess!r}?" if guess else
                     "; use the id of a feed or segment, or remove the entry"))
    return lines


def gate_problem(key: str, value: Any) -> str | None:
    """What is wrong with one gate threshold (a definition's ``gates:`` entry), or None."""
    if key not in Gates.model_fields:
        guess = _suggest(key, list(Gates.model_fields))
        return f"unknown gate {key!r}" + (f"; did you mean {guess!r}?" if guess else
                                          f"; use one of {', '.join(Gates.model_fields)}")
    try:
        # strict: a definition's values are used as written ("0.2" in quotes is not a share)
        Gates.model_validate({key: value}, strict=True)
    except ValidationError as err:
        return _problem(err.errors(include_url=False)[0], {"gates": {}}, lambda _bad, _good: "")[1]
    return None


__all__ = ["CONNECTOR_TYPES", "DEFINITION_ID", "SOURCE_NAMES", "FeedgenConfig", "Gates", "check_config",
           "gate_problem", "unknown_definition_ids"]
