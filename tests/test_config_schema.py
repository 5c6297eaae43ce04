"""The whole config is checked at load: every section, key and type, from the file or the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedgen.connectors.base import SETTING_DEFAULTS, partner_types
from feedgen.core.config import DEFAULTS, load_config
from feedgen.core.config_schema import CONNECTOR_TYPES, Connector, FeedgenConfig, _model_at
from feedgen.core.errors import ConfigError

FEEDGEN = [sys.executable, "-m", "feedgen.jobs.cli", "--text-logs"]
DIGEST = "a" * 64


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None):
    cfg = tmp_path / "feedgen.yaml"
    cfg.write_text(text, encoding="utf-8")
    return load_config(cfg, root=str(tmp_path / "root"), environ=environ or {})


def _error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text, environ)
    return str(err.value)


# (config text, the one line the user reads: key path, what is wrong, the fix)
WRONG = [
    ("gates: {enabeld: false}", "gates.enabeld: unknown key 'enabeld'; did you mean 'enabled'?"),
    ("gates: {max_count_change: lots}", "gates.max_count_change: 'lots' is not a number; write e.g. max_count_change: 0.2"),
    ("gates: {max_share_removed: '20%'}", "gates.max_share_removed: '20%' is not a number"),
    ("gates: {max_null_rate: true}", "gates.max_null_rate: True is not a number"),
    ("gates: {max_share_changed: -0.1}", "gates.max_share_changed: -0.1 is out of range; it must be >= 0"),
    ("gates: {min_base_items: 2.5}", "gates.min_base_items: 2.5 is not a whole number; write e.g. min_base_items: 50"),
    ("gates: {allow_empty: maybe}", "gates.allow_empty: 'maybe' is not true or false"),
    ("gates: {refresh_after: soon}", "gates.refresh_after: 'soon' is not a positive duration; write e.g. 28d"),
    ("spark: {mastr: 'local[2]'}", "spark.mastr: unknown key 'mastr'; did you mean 'master'?"),
    ("spark: {shuffle_partitions: 0}", "spark.shuffle_partitions: 0 is out of range; it must be >= 1"),
    ("spark: {conf: {spark.executor.memory: {a: 1}}}", "spark.conf.spark.executor.memory: {'a': 1} is not a single value"),
    ("spark: local", "spark: 'local' is not a mapping"),
    ("sources: {offer: {path: /x}}", "sources.offer: unknown key 'offer'; did you mean 'offers'?"),
    ("sources: {offers: {path: /x, format: parqet}}", "sources.offers.format: 'parqet' is not one of parquet, csv, json; did you mean 'parquet'?"),
    ("sources: {offers: {paht: /x}}", "sources.offers.paht: unknown key 'paht'; did you mean 'path'?"),
    ("aggregate: {quarantine_tolerance: 5}", "aggregate.quarantine_tolerance: 5 is out of range; it must be <= 1"),
    ("aggregate: {currencies: [PLN, eur]}", "aggregate.currencies[1]: 'eur' is not a currency code"),
    ("aggregate: {allow_stale: true}", "aggregate.allow_stale: unknown key 'allow_stale'; did you mean 'allow_stale_aggregate'?"),
    ("generate: {jvm_rendr: false}", "generate.jvm_rendr: unknown key 'jvm_rendr'; did you mean 'jvm_render'?"),
    ("generate: {part_max_raw_bytes: 64MB}", "generate.part_max_raw_bytes: '64MB' is not a whole number"),
    ("publish: {retention: 0}", "publish.retention: 0 is out of range; it must be >= 1"),
    ("publish: {retention_grace: an hour}", "publish.retention_grace: 'an hour' is not a duration; write e.g. 1h"),
    ("publish: {stroe: s3://b}", "publish.stroe: unknown key 'stroe'; did you mean 'store'?"),
    ("kafka: {bootstrp: 'h:9092'}", "kafka.bootstrp: unknown key 'bootstrp'; did you mean 'bootstrap'?"),
    ("kafka: {delivery_timeout_ms: soon}", "kafka.delivery_timeout_ms: 'soon' is not a whole number"),
    ("server: {token: {feed-a: x}}", "server.token: unknown key 'token'; did you mean 'tokens'?"),
    ("server: {tokens: {feed-a: my-secret}}", "server.tokens.feed-a: expected the SHA-256 hex digest of the token"),
    ("server: {port: 99999}", "server.port: 99999 is out of range; it must be <= 65535"),
    ("server: {public: feed-a}", "server.public: 'feed-a' is not a list"),
    ("server: {admin_token_sha256: hunter2}", "server.admin_token_sha256: expected the SHA-256 hex digest"),
    ("connectors: {webhook: {endpont: 'http://x'}}", "connectors.webhook.endpont: unknown key 'endpont'; did you mean 'endpoint'?"),
    ("connectors: {meta_pl: {type: meta_catalog_bach}}", "connectors.meta_pl.type: 'meta_catalog_bach' is not one of"),
    ("connectors: {meta_pl: {catalog_id: 1}}", "connectors.meta_pl.type: missing; a connector named 'meta_pl' needs a type"),
    ("connectors: {webhook: {batch_size: many}}", "connectors.webhook.batch_size: 'many' is not a whole number"),
    ("connectors: {webhook: {backoff: {initial: 1}}}", "connectors.webhook.backoff.initial: unknown key 'initial'; did you mean 'initial_s'?"),
    ("definitions: [a, b]", "definitions: ['a', 'b'] is not text"),
    ("sorces: {}", "sorces: unknown top-level key 'sorces'; did you mean 'sources'?"),
]


@pytest.mark.parametrize(("text", "expected"), WRONG, ids=[w[1].split(":")[0] for w in WRONG])
def test_a_wrong_key_or_type_anywhere_names_the_file_the_key_path_and_the_fix(tmp_path, text, expected):
    message = _error(tmp_path, text + "\n")
    assert f"{tmp_path / 'feedgen.yaml'}: {expected}" in message
    assert len(message.splitlines()) == 1, message


def test_every_problem_is_listed_one_per_line(tmp_path):
    message = _error(tmp_path, "gates: {enabeld: false, max_count_change: lots}\nspark: {mastr: x}\n")
    assert len(message.splitlines()) == 3
    assert all(line.startswith(f"{tmp_path / 'feedgen.yaml'}: ") for line in message.splitlines())


ENV_WRONG = [
    ({"FEEDGEN__GATES__MAX_COUNT_CHANGE": "lots"},
     "environment variable FEEDGEN__GATES__MAX_COUNT_CHANGE: gates.max_count_change: 'lots' is not a number"),
    ({"FEEDGEN__GATES__ENABELD": "false"},
     "environment variable FEEDGEN__GATES__ENABELD: gates.enabeld: unknown key 'enabeld'; "
     "did you mean 'enabled' (FEEDGEN__GATES__ENABLED)?"),
    ({"FEEDGEN__SPARK__SHUFFLE_PARTITIONS": "many"},
     "environment variable FEEDGEN__SPARK__SHUFFLE_PARTITIONS: spark.shuffle_partitions: 'many' is not a whole number"),
    ({"FEEDGEN__SERVER__TOKEN": "x"},
     "environment variable FEEDGEN__SERVER__TOKEN: server.token: unknown key 'token'; did you mean 'tokens' (FEEDGEN__SERVER__TOKENS)?"),
    ({"FEEDGEN__SORCES__OFFERS__PATH": "/x"},
     "environment variable FEEDGEN__SORCES__OFFERS__PATH: sorces: unknown top-level key 'sorces'; did you mean 'sources' (FEEDGEN__SOURCES__OFFERS__PATH)?"),
    ({"FEEDGEN__AGGREGATE__ALLOW_STALE_AGGREGATE": "perhaps"},
     "environment variable FEEDGEN__AGGREGATE__ALLOW_STALE_AGGREGATE: aggregate.allow_stale_aggregate: 'perhaps' is not true or false"),
]


@pytest.mark.parametrize(("environ", "expected"), ENV_WRONG, ids=[next(iter(e[0])) for e in ENV_WRONG])
def test_a_wrong_environment_override_names_the_variable(tmp_path, environ, expected):
    message = _error(tmp_path, "{}\n", environ)
    assert message.startswith(expected) and len(message.splitlines()) == 1, message


def test_environment_strings_are_coerced_through_the_schema(tmp_path):
    config = _load(tmp_path, "spark: {shuffle_partitions: 4}\n", {
        "FEEDGEN__SPARK__SHUFFLE_PARTITIONS": "16", "FEEDGEN__GATES__ENABLED": "no",
        "FEEDGEN__GATES__MAX_COUNT_CHANGE": "0.5", "FEEDGEN__AGGREGATE__CURRENCIES": "[PLN, EUR]",
        "FEEDGEN__PUBLISH__STORE": "", "FEEDGEN__CONNECTORS__GOOGLE_MERCHANT_API__CONTENT_LANGUAGE": "no",
        "FEEDGEN__KAFKA__PRODUCER__LINGER.MS": "5"})
    assert config.get("spark.shuffle_partitions") == 16
    assert config.get("gates.enabled") is False and config.get("gates.max_count_change") == 0.5
    assert config.get("aggregate.currencies") == ["PLN", "EUR"]
    assert config.get("publish.store") is None
    assert config.get("connectors.google_merchant_api.content_language") == "no"  # text stays text
    assert config.get("kafka.producer") == {"linger.ms": "5"}


def test_free_form_maps_take_any_key_and_the_rest_keeps_its_shape(tmp_path):
    config = _load(tmp_path, f"""
spark: {{conf: {{spark.executor.memory: 2g, spark.sql.ansi.enabled: true}}}}
kafka: {{producer: {{compression.type: zstd}}}}
server: {{tokens: {{any-feed-id: {DIGEST.upper()}}}}}
connectors:
  shop_hook: {{type: webhook, endpoint: "https://partner/{{shop}}/items", shop: pl-1}}
  meta_catalog_batch: {{catalog_id: 1234567890}}
""")
    assert config.get("spark.conf") == {"spark.executor.memory": "2g", "spark.sql.ansi.enabled": True}
    assert config.get("server.tokens") == {"any-feed-id": DIGEST}
    assert config.get("connectors.shop_hook.shop") == "pl-1"  # a placeholder of its endpoint
    assert config.get("connectors.meta_catalog_batch.catalog_id") == "1234567890"
    assert config.get("sources.offers.format") == "parquet"
    assert config.get("spark.master") == "local[*]" and "broadcast_threshold" not in config["spark"]


def _leaves(node: dict[str, Any], prefix: tuple[str, ...] = ()):
    for key, value in node.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value and (_model_at(path) or _model_at((*path, "any"))):
            yield from _leaves(value, path)
        elif _model_at(prefix) is not None:
            yield path, value


LEAVES = sorted(_leaves(DEFAULTS))


def test_every_default_key_is_in_the_schema_and_the_defaults_pass():
    FeedgenConfig.model_validate(DEFAULTS)
    assert set(SETTING_DEFAULTS) <= set(Connector.model_fields)
    assert tuple(partner_types()) == CONNECTOR_TYPES
    assert len(LEAVES) > 70


@settings(max_examples=60, deadline=None)
@given(leaf=st.sampled_from(LEAVES), data=st.data())
def test_any_misspelt_or_mistyped_key_of_any_section_is_refused(tmp_path_factory, leaf, data):
    import yaml

    path, _default = leaf
    tmp = tmp_path_factory.mktemp("cfg")
    key = path[-1]
    i = data.draw(st.integers(0, len(key) - 2))
    typo = key[:i] + key[i + 1] + key[i] + key[i + 2:] if key[i] != key[i + 1] else key + "x"

    def nest(last: str, value: Any) -> dict[str, Any]:
        tree: Any = value
        for part in reversed((*path[:-1], last)):
            tree = {part: tree}
        return tree

    message = _error(tmp, yaml.safe_dump(nest(typo, 1)))
    assert f"{'.'.join((*path[:-1], typo))}: unknown" in message
    assert f"did you mean {key!r}?" in message
    if path == ("root",):
        return  # _error sets --root, which wins over the file
    wrong = "text" if isinstance(_default, dict) else {"not": "a value"}
    message = _error(tmp, yaml.safe_dump(nest(key, wrong)))
    assert f": {'.'.join(path)}: " in message


COMMANDS = [
    ["validate"], ["run"], ["aggregate"], ["generate"], ["serve"], ["connect", "webhook"],
    ["runs", "list"], ["runs", "show", "20261122T030500Z-aaaaaa"], ["publish", "x"], ["emit", "x"],
    ["explain", "google-electronics", "o1"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_every_command_refuses_a_bad_config_at_load_before_spark_and_writes_nothing(tmp_path, command):
    root = tmp_path / "root"
    cfg = tmp_path / "feedgen.yaml"
    cfg.write_text(f"root: {root}\ngates:\n  max_count_change: '20%'\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDGEN") and k != "KAFKA_BOOTSTRAP"}
    t0 = time.monotonic()
    done = subprocess.run([*FEEDGEN, *command, "--config", str(cfg)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"feedgen: error: {cfg}: gates.max_count_change: '20%' is not a number; "
                                   "write e.g. max_count_change: 0.2")
    assert time.monotonic() - t0 < 15  # a Spark session takes longer than that to start
    assert not root.exists()


# -- cross-checks: ids in server.tokens / server.public, generate.templates_dir -------------------

@pytest.mark.parametrize(("text", "expected"), [
    (f"server: {{tokens: {{NOT-AN-ID: {DIGEST}}}}}", "server.tokens.NOT-AN-ID: 'NOT-AN-ID' is not a definition id"),
    (f"server: {{tokens: {{google_electronics: {DIGEST}}}}}", "server.tokens.google_electronics: 'google_electronics' is not"),
    (f"server: {{tokens: {{feed-a-: {DIGEST}}}}}", "server.tokens.feed-a-: 'feed-a-' is not a definition id"),
    ("server: {public: [feed-a, Feed-B]}", "server.public[1]: 'Feed-B' is not a definition id"),
    ("generate: {templates_dir: /nonexistent}", "generate.templates_dir: '/nonexistent' is not an existing directory"),
])
def test_a_token_key_that_is_no_id_or_a_missing_templates_dir_is_refused_at_load(tmp_path, text, expected):
    message = _error(tmp_path, text + "\n")
    assert message.startswith(f"{tmp_path / 'feedgen.yaml'}: {expected}"), message
    assert len(message.splitlines()) == 1


def test_an_existing_templates_dir_is_accepted_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "templates").mkdir()
    monkeypatch.chdir(tmp_path)
    assert _load(tmp_path, "generate: {templates_dir: templates}\n").get("generate.templates_dir") == "templates"
    (tmp_path / "file").write_text("")
    assert "is not an existing directory" in _error(tmp_path, "generate: {templates_dir: file}\n")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FEEDGEN") and k != "KAFKA_BOOTSTRAP"}


def test_validate_reports_a_token_for_an_id_no_definition_has_with_did_you_mean(tmp_path):
    from feedgen.core.paths import EXAMPLES_DIR

    cfg = tmp_path / "feedgen.yaml"
    cfg.write_text(f"root: {tmp_path / 'root'}\nserver:\n  tokens: {{google-electronix: {DIGEST}, "
                   f"google-electronics: {DIGEST}}}\n  public: [zz-nothing-like-it]\n", encoding="utf-8")
    done = subprocess.run([*FEEDGEN, "validate", "--config", str(cfg), "--definitions",
                           str(EXAMPLES_DIR / "definitions")], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"feedgen: error: {cfg}: server.tokens.google-electronix: no definition has the id 'google-electronix'; "
        "did you mean 'google-electronics'?",
        f"{cfg}: server.public[0]: no definition has the id 'zz-nothing-like-it'; use the id of a feed or "
        "segment, or remove the entry"]
    cfg.write_text(f"root: {tmp_path / 'root'}\nserver:\n  tokens: {{google-electronics: {DIGEST}}}\n")
    ok = subprocess.run([*FEEDGEN, "validate", "--config", str(cfg), "--definitions",
                         str(EXAMPLES_DIR / "definitions")], capture_output=True, text=True, env=_env(), timeout=120)
    assert ok.returncode == 0, ok.stderr


def test_serve_warns_at_start_about_a_token_for_an_id_nothing_has(tmp_path):
    import signal

    from tests.support import free_port, wait_for_port

    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "feeds.yaml").write_text("feeds:\n  - id: google-electronics\n    entity: offer\n"
                                     "    template: google_merchant_rss\n    where: {field: stock, gt: 0}\n")
    cfg = tmp_path / "feedgen.yaml"
    cfg.write_text(f"root: {tmp_path / 'root'}\ndefinitions: {defs}\nserver:\n  tokens: "
                   f"{{google-electronix: {DIGEST}, google-electronics: {DIGEST}}}\n  workers: 1\n")
    port = free_port()
    proc = subprocess.Popen([*FEEDGEN, "serve", "--config", str(cfg), "--port", str(port)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, err
    assert ("server.tokens.google-electronix: no definition has the id 'google-electronix'; did you mean "
            "'google-electronics'?") in warnings[0]
