"""The registry at scale: runs pin the stored export texts and skip validating a set already known
valid for the same validator; saves and publishes check what they affect; user templates work."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy import text, update

from feedgen.console.app import create_app
from feedgen.console.registry import DefinitionRejected, Registry, registry_for
from feedgen.console.registry.migrate import alembic_config
from feedgen.console.registry.models import RegistryState
from feedgen.console.registry.yamlio import dump_definition
from feedgen.core.config import load_config
from feedgen.core.errors import DefinitionError
from feedgen.core.paths import REPO_DIR
from feedgen.generator.validate_body import validator_fingerprint
from feedgen.jobs.pinning import read_source
from tests.registry_support import ADMIN, BUYERS, CHEAP, LAPSED, PER_STORE, body, published

USER_TEMPLATE = REPO_DIR / "examples" / "user-template"
MY_ITEMS = yaml.safe_load((USER_TEMPLATE / "definitions" / "feeds.yaml").read_text())["feeds"][0]


def config_for(tmp_path: Path, url: str, templates_dir: Path | None = None):
    config = load_config(root=str(tmp_path / "root"), environ={})
    config.data["registry"]["url"] = url
    config.data["definitions"] = "registry"
    config.data["generate"]["templates_dir"] = str(templates_dir) if templates_dir else None
    return config


def copy_of_user_templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(USER_TEMPLATE / "templates", folder)
    return folder


def test_a_feed_using_a_user_template_is_imported_saved_and_published_with_the_configured_folder(
        registry_url, tmp_path):
    without = Registry.open(registry_url)
    try:
        with pytest.raises(DefinitionRejected, match="my_item"):
            without.import_directory(ADMIN, USER_TEMPLATE / "definitions")
    finally:
        without.close()
    registry = registry_for(config_for(tmp_path, registry_url, USER_TEMPLATE / "templates"))
    try:
        report = registry.import_directory(ADMIN, USER_TEMPLATE / "definitions")
        assert [(i, v) for i, v, _ in report.published] == [("my-items-in-stock", 1)]
        draft = registry.save_draft(ADMIN, "feed", body(MY_ITEMS, description="Mine, edited"), base_version=1)
        done = registry.publish(ADMIN, "my-items-in-stock", draft.number)
        assert (done.number, done.state, done.body["template"]) == (2, "published", "my_item")
    finally:
        registry.close()


def test_the_console_api_saves_and_publishes_a_feed_using_a_user_template(tmp_path):
    config = config_for(tmp_path, f"sqlite:///{tmp_path}/feedgen.db", USER_TEMPLATE / "templates")
    app = create_app(config)
    registry = app.extensions["feedgen_console"]["registry"]
    try:
        registry.accounts.add_user(ADMIN, "pia", "publisher", "password-pia-123")
        headers = {"Authorization": f"Bearer {registry.accounts.issue_token(ADMIN, 'pia')}"}
        client = app.test_client()
        created = client.post("/api/v1/definitions", headers=headers,
                              json={"kind": "feed", "body": MY_ITEMS, "message": "mine"})
        assert created.status_code == 201, created.get_json()
        saved = client.put("/api/v1/definitions/my-items-in-stock/draft", headers=headers,
                           json={"body": body(MY_ITEMS, description="edited"), "base_version": 1})
        assert saved.status_code == 200, saved.get_json()
        number = saved.get_json()["number"]
        done = client.post("/api/v1/definitions/my-items-in-stock/publish", headers=headers,
                           json={"version": number, "message": "go"})
        assert done.status_code == 200, done.get_json()
        assert done.get_json()["state"] == "published"
    finally:
        registry.close()


def test_a_run_pins_the_export_texts_and_the_file_loads_as_the_published_set(registry_url, tmp_path):
    registry = Registry.open(registry_url)
    try:
        for kind, template in (("segment", BUYERS), ("segment", LAPSED), ("segment", PER_STORE), ("feed", CHEAP)):
            published(registry, kind, template)
        expected = registry.published_document()
    finally:
        registry.close()

    snapshot = read_source(config_for(tmp_path, registry_url), "registry")

    pinned = snapshot.text.decode("utf-8")
    assert yaml.safe_load(pinned) == expected
    # each version appears as the bytes `definitions export` writes for it (after the list's key)
    for kind, items in (("feed", expected["feeds"]), ("segment", expected["segments"])):
        for item in items:
            assert dump_definition(kind, item).decode("utf-8").split("\n", 1)[1] in pinned
    assert snapshot.source["versions"] == {"buyers": 1, "lapsed-buyers": 1, "store-{store_id}-buyers": 1,
                                           "cheap-electronics": 1}
    assert len(snapshot.definitions) == 6  # for_each expanded


def test_a_set_known_valid_for_another_validator_is_validated_again_and_then_remembered(registry_url, tmp_path):
    templates = copy_of_user_templates(tmp_path)
    config = config_for(tmp_path, registry_url, templates)
    registry = registry_for(config)
    try:
        registry.import_directory(ADMIN, USER_TEMPLATE / "definitions")
        assert registry.published_set().valid_fingerprint == validator_fingerprint(templates)
        with registry.db.write() as s:  # as if validated by an older feedgen
            s.execute(update(RegistryState).values(valid_fingerprint="0" * 64))
        assert registry.published_set().valid_fingerprint == "0" * 64

        read_source(config, "registry")  # validates, and remembers

        assert registry.published_set().valid_fingerprint == validator_fingerprint(templates)
    finally:
        registry.close()


def test_a_run_refuses_a_published_set_that_a_changed_user_template_makes_invalid(registry_url, tmp_path):
    templates = copy_of_user_templates(tmp_path)
    config = config_for(tmp_path, registry_url, templates)
    registry = registry_for(config)
    try:
        registry.import_directory(ADMIN, USER_TEMPLATE / "definitions")
        read_source(config, "registry")  # valid, and known to be
    finally:
        registry.close()
    shutil.rmtree(templates / "my_item")  # the template the feed uses is gone since it was published

    with pytest.raises(DefinitionError, match="registry:my-items-in-stock v1.*my_item"):
        read_source(config, "registry")


def test_publishes_keep_the_set_known_valid_and_a_run_skips_validating_it(registry_url, tmp_path):
    registry = Registry.open(registry_url)
    try:
        published(registry, "segment", BUYERS)
        with registry.db.write() as s:  # forget: the next publish cannot vouch for the whole set
            s.execute(update(RegistryState).values(valid_digest=None))
        published(registry, "segment", LAPSED)
        assert registry.published_set().valid_fingerprint is None
        read_source(config_for(tmp_path, registry_url), "registry")  # validates the whole set once
        published(registry, "feed", CHEAP)
        registry.archive(ADMIN, "lapsed-buyers")
        known = registry.published_set()
    finally:
        registry.close()
    assert known.valid_fingerprint == validator_fingerprint(None)
    assert [v[0] for v in known.versions] == ["cheap-electronics", "buyers"]


def test_migration_0002_fills_texts_names_and_the_digest_of_a_registry_made_before_it(registry_url, tmp_path):
    from alembic import command

    from feedgen.console.registry.db import make_engine

    url = registry_url
    engine = make_engine(url)
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(text("INSERT INTO definitions (id, definition_id, kind, head, published_number, created_at, "
                          "created_by, updated_at, updated_by) VALUES (1, 'store-{store_id}-buyers', 'segment', "
                          "1, 1, '2025-01-01', 'old', '2025-01-01', 'old')"))
        old_versions = sa.table("definition_versions", *(sa.column(c) for c in (
            "definition_pk", "number", "state", "body_sha256", "author", "created_at", "message")),
            *(sa.column(c, sa.JSON) for c in ("body", "expansions", "references")))
        conn.execute(old_versions.insert().values(
            definition_pk=1, number=1, state="published", body=PER_STORE, body_sha256=_sha(PER_STORE),
            expansions=["store-1-buyers", "store-2-buyers", "store-3-buyers"], references=[], author="old",
            created_at=datetime(2025, 1, 1), message="old"))
    engine.dispose()

    registry = Registry.open(url)
    try:
        pinned = registry.published_set()
        assert pinned.text == dump_definition("segment", PER_STORE)
        # the names were filled: a new id equal to an expansion of the old version is refused
        with pytest.raises(DefinitionRejected, match="duplicate id 'store-2-buyers'"):
            registry.save_draft(ADMIN, "segment", body(BUYERS, id="store-2-buyers"), base_version=None)
        read_source(config_for(tmp_path, url), "registry")
        assert registry.published_set().valid_fingerprint == validator_fingerprint(None)
    finally:
        registry.close()


def _sha(body_: dict) -> str:
    from feedgen.console.registry.service import body_digest

    return body_digest(body_)


def test_a_publish_is_checked_with_what_it_affects_not_with_unrelated_definitions(registry_url):
    registry = Registry.open(registry_url)
    try:
        published(registry, "feed", CHEAP)
        with registry.db.write() as s:  # an unrelated feed went bad (published by an older validator)
            s.execute(text("UPDATE definition_versions SET body = :b"),
                      {"b": json.dumps(body(CHEAP, where={"field": "prise", "lt": 1}))})
        published(registry, "segment", BUYERS)
        published(registry, "segment", LAPSED)  # names buyers: checked with it
        with pytest.raises(DefinitionRejected, match="in_segment cycle"):
            published(registry, "segment", body(BUYERS, where={"in_segment": "lapsed-buyers"}))
    finally:
        registry.close()


def test_definitions_import_with_the_user_template_example_config_publishes_its_feed(tmp_path):
    from tests.pipeline_support import feedgen

    done = feedgen("definitions", "import", "examples/user-template/definitions",
                   "--config", "examples/user-template/feedgen.yaml", "--root", str(tmp_path),
                   "--registry", f"sqlite:///{tmp_path}/feedgen.db", cwd=REPO_DIR)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "published my-items-in-stock version 1" in done.stdout
