"""Runs read their definitions from the registry (``definitions: registry``) or a folder, pin
them into ``runs/<run_id>/definitions.yaml`` and keep using that copy, resume included."""

from __future__ import annotations

import csv
import getpass
import hashlib
import io
import json
import signal
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update

from feedgen.console.registry import Registry
from feedgen.console.registry.models import VersionRow
from feedgen.core.config import load_config
from feedgen.core.errors import BadInput, DefinitionError
from feedgen.core.runs import new_run_id, new_run_record, parse_as_of
from feedgen.jobs.pinning import load_source, redact, run_definitions
from feedgen.jobs.pipeline import generate_stage, run_pipeline
from tests.pipeline_support import (
    DAY1,
    clean_env,
    feedgen,
    feedgen_here,
    published_docs,
    run_json,
    write_sample,
)
from tests.registry_support import ADMIN, body, published

RUN_ID = "20261122T030500Z-aaaaaa"
AS_OF = "2026-11-22T03:05:00Z"
CHEAP = {"id": "cheap-phones", "template": "generic_csv", "options": {"fields": ["offer_id", "title"]},
         "where": {"field": "price.amount", "lt": 20}}
SHOP = {"id": "shop-electronics", "template": "generic_csv", "options": {"fields": ["offer_id", "category.top"]},
        "where": {"field": "category.top", "eq": "Electronics"}}


def write_config(folder: Path, url: str, definitions: str = "registry") -> Path:
    config = {"root": str(folder / "root"), "definitions": definitions, "registry": {"url": url},
              "spark": {"master": "local[2]", "shuffle_partitions": 2, "driver_memory": "1g"}}
    path = folder / "feedgen.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def write_offer_aggregate(spark, root: Path, run_id: str, prices: dict[str, str]) -> None:
    """A tiny offer aggregate of ``run_id``, as the aggregate stage leaves it (Parquet + marker)."""
    from feedgen.aggregator.job import MARKER, aggregate_path
    from feedgen.aggregator.schemas import OFFER_AGGREGATE_SCHEMA

    rows = [{"offer_id": oid, "product_id": f"p-{oid}", "seller_id": "s-1", "title": f"Phone {oid}",
             "category": {"path": "Electronics > Phones", "levels": ["Electronics", "Phones"], "top": "Electronics"},
             "price": {"amount": Decimal(price), "currency": "PLN"}, "stock": 3, "availability": "in_stock",
             "condition": "new", "brand": "Acme", "link": f"https://shop.example.com/o/{oid}",
             "image_link": f"https://img.example.com/{oid}.jpg"} for oid, price in prices.items()]
    path = aggregate_path(root, "offer", run_id)
    spark.createDataFrame(rows, OFFER_AGGREGATE_SCHEMA).coalesce(1).write.parquet(str(path))
    (path / MARKER).write_text(json.dumps({"run_id": run_id, "entity": "offer", "as_of": AS_OF,
                                           "rows": len(rows)}), encoding="utf-8")


def feed_rows(root: Path, record: dict, definition_id: str) -> list[dict]:
    from feedgen.generator.parts import assemble

    folder = root / "runs" / record["run_id"] / record["definitions"][definition_id]["folder"]
    return list(csv.DictReader(io.StringIO(assemble(folder).decode("utf-8"))))


def test_a_run_from_the_registry_pins_the_published_versions_and_keeps_them_after_a_publish(
        spark, registry_url, tmp_path):
    registry = Registry.open(registry_url)
    try:
        published(registry, "feed", body(CHEAP, where={"field": "price.amount", "lt": 1000}))
        published(registry, "feed", CHEAP)  # version 2: the published one
        config = load_config(write_config(tmp_path, registry_url), environ={})
        root = Path(config.root)
        write_offer_aggregate(spark, root, RUN_ID, {"o-1": "15.00", "o-2": "19.99", "o-3": "50.00"})
        record = new_run_record(RUN_ID, parse_as_of(AS_OF), "local[2]")

        record = generate_stage(spark, config, record, None, gate=False)

        pinned = root / "runs" / RUN_ID / "definitions.yaml"
        assert yaml.safe_load(pinned.read_text()) == {"feeds": [CHEAP]}
        pin = record["pinned_definitions"]
        assert pin["source"] == "registry" and pin["versions"] == {"cheap-phones": 2}
        assert pin["sha256"] == hashlib.sha256(pinned.read_bytes()).hexdigest()
        assert pin["url"].split("://")[0] == registry_url.split("://")[0]
        assert json.loads((root / "runs" / RUN_ID / "run.json").read_text())["pinned_definitions"] == pin
        assert sorted(r["offer_id"] for r in feed_rows(root, record, "cheap-phones")) == ["o-1", "o-2"]

        # a new version is published; the run generates again (as a resumed run would): same definitions
        published(registry, "feed", body(CHEAP, where={"field": "price.amount", "gte": 20}))
        before = pinned.read_bytes()
        record = generate_stage(spark, config, record, None, gate=False)
        assert pinned.read_bytes() == before
        assert record["pinned_definitions"]["versions"] == {"cheap-phones": 2}
        assert sorted(r["offer_id"] for r in feed_rows(root, record, "cheap-phones")) == ["o-1", "o-2"]
    finally:
        registry.close()


def test_a_registry_definition_the_run_refuses_is_named_with_its_version_and_field(registry_url, tmp_path):
    registry = Registry.open(registry_url)
    try:
        published(registry, "feed", CHEAP)
        # as if published by an older feedgen whose validator let the typo through
        with registry.db.write() as s:
            s.execute(update(VersionRow).values(body=body(CHEAP, where={"field": "prise.amount", "lt": 20})))
    finally:
        registry.close()
    config = load_config(write_config(tmp_path, registry_url), environ={})

    with pytest.raises(DefinitionError) as err:
        run_pipeline(config, run_id=new_run_id(), as_of=parse_as_of(AS_OF))

    # the line is the one in the file `feedgen definitions export` writes for that version
    assert ("registry:cheap-phones v1:5: feed 'cheap-phones' where.field: unknown field 'prise'; "
            "did you mean 'price.amount'?") in str(err.value)
    assert not (Path(config.root) / "runs").exists()  # stopped before any run folder


def test_an_empty_registry_stops_the_run_and_says_how_to_fill_it(tmp_path):
    config = load_config(write_config(tmp_path, f"sqlite:///{tmp_path}/empty.db"), environ={})
    with pytest.raises(BadInput, match="no published definitions .*feedgen definitions import DIR"):
        run_pipeline(config, run_id=new_run_id(), as_of=parse_as_of(AS_OF))
    assert not (Path(config.root) / "runs").exists()


def test_run_json_keeps_the_registry_url_without_its_password():
    assert redact("postgresql+psycopg://feedgen:s3cret@db.internal/feedgen") == \
        "postgresql+psycopg://feedgen:***@db.internal/feedgen"


def test_a_run_from_a_folder_pins_a_copy_and_keeps_it_when_the_folder_changes(tmp_path):
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "feeds.yaml").write_text(yaml.safe_dump({"feeds": [CHEAP]}), encoding="utf-8")
    config = load_config(write_config(tmp_path, f"sqlite:///{tmp_path}/r.db", definitions=str(folder)), environ={})
    record = new_run_record(RUN_ID, parse_as_of(AS_OF), "local[2]")

    path, first = run_definitions(config, record, None)
    (folder / "feeds.yaml").write_text(yaml.safe_dump({"feeds": [SHOP]}), encoding="utf-8")
    _, again = run_definitions(config, record, None)

    assert [d.id for d in first] == [d.id for d in again] == ["cheap-phones"]
    assert record["pinned_definitions"] == {"source": "folder", "path": str(folder), "file": "definitions.yaml",
                                            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert yaml.safe_load(path.read_text()) == {"feeds": [CHEAP]}


def test_a_run_killed_in_generate_resumes_with_its_pinned_version_after_a_publish(spark, tmp_path):
    url = f"sqlite:///{tmp_path}/feedgen.db"
    cfg = write_config(tmp_path, url)
    root = tmp_path / "root"
    write_sample(root, variant=0)
    registry = Registry.open(url)
    try:
        published(registry, "feed", SHOP)
    finally:
        registry.close()

    killed = feedgen("run", "--config", str(cfg), "--as-of", DAY1,
                     env=clean_env(FEEDGEN_TEST_CRASH_AT="generate:after-parts"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (run_id,) = [p.name for p in (root / "runs").iterdir()]
    assert run_json(root, run_id)["pinned_definitions"]["versions"] == {"shop-electronics": 1}
    me = f"os:{getpass.getuser()}"
    assert run_json(root, run_id)["started_by"] == me  # `feedgen run` from a shell

    registry = Registry.open(url)
    try:  # version 2 is published while the run is down
        v2 = published(registry, "feed", body(SHOP, where={"field": "category.top", "eq": "Home & Garden"}))
        assert v2.number == 2
    finally:
        registry.close()
    config = load_config(cfg, environ={})
    with pytest.raises(BadInput, match="always resumes with them"):
        run_pipeline(config, run_id=run_id, resume=True, definitions_dir=str(tmp_path))

    # the resume on the suite's Spark session: its own process (a second JVM start) adds nothing here
    resumed = feedgen_here("run", "--config", str(cfg), "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    record = run_json(root, run_id)
    assert record["status"] == "emitted"
    assert record["pinned_definitions"]["versions"] == {"shop-electronics": 1}
    assert record["started_by"] == me and [a["started_by"] for a in record["attempts"]] == [me, me]
    header, items = published_docs(root)["shop-electronics"]
    assert header == "offer_id,category.top"
    assert items and {line.split(",")[1] for line in items} == {"Electronics"}
    assert len(items) == record["definitions"]["shop-electronics"]["items"]


def test_the_demo_sets_up_the_registry_with_one_user_per_role_for_the_demo_only(tmp_path):
    from feedgen.jobs.cmd_demo import setup_demo_registry, write_demo_config

    config_path = write_demo_config(str(tmp_path / "demo"))
    config = load_config(config_path, environ={})
    report, users = setup_demo_registry(config)
    again, _ = setup_demo_registry(config)  # a second demo on the same root changes nothing

    assert config.get("definitions") == "registry"
    assert len(report.published) == 34 and not again.published and len(again.unchanged) == 34
    assert len(load_source(config, "registry")) == 53  # the examples, for_each expanded
    listed = feedgen("users", "list", "--config", config_path)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:3] for line in listed.stdout.splitlines()] == [
        ["demo-admin", "admin", "active"], ["demo-approver", "approver", "active"],
        ["demo-editor", "editor", "active"], ["demo-publisher", "publisher", "active"],
        ["demo-viewer", "viewer", "active"]]
    registry = Registry.open(f"sqlite:///{tmp_path / 'demo'}/feedgen.db")
    try:
        for name, role, secret in users:
            assert name == f"demo-{role}" and secret == f"demo-token-{role}"
            actor = registry.accounts.authenticate_token(f"demo-token-{role}")
            assert (actor.name, actor.role) == (name, role)
            assert registry.accounts.login(name, secret, "127.0.0.1").role == role
            assert registry.accounts.user(name).tokens == 1
    finally:
        registry.close()
    checked = feedgen("validate", "--config", config_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"registry (sqlite:///{(tmp_path / 'demo').resolve()}/feedgen.db): "
                                     "53 definitions OK")


def test_validate_of_the_registry_checks_the_published_set_only(tmp_path):
    url = f"sqlite:///{tmp_path}/feedgen.db"
    registry = Registry.open(url)
    try:
        published(registry, "feed", CHEAP)
        registry.save_draft(ADMIN, "feed", SHOP, base_version=None)  # a draft: not part of any run
    finally:
        registry.close()
    done = feedgen("validate", "registry", "--config", str(write_config(tmp_path, url)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"registry ({url}): 1 definitions OK"
