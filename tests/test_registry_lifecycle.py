"""The registry's definition lifecycle on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from feedgen.console.registry import (
    DefinitionRejected,
    Forbidden,
    NotFound,
    Registry,
    StaleVersion,
    StateConflict,
)
from tests.registry_support import (
    ADMIN,
    BUYERS,
    CHEAP,
    EDITOR,
    LAPSED,
    PER_STORE,
    PUBLISHER,
    VIEWER,
    body,
    published,
)


@pytest.fixture
def registry(registry_url):
    reg = Registry.open(registry_url)
    yield reg
    reg.close()


def test_a_saved_draft_becomes_the_published_version_and_the_previous_one_is_archived(registry):
    published(registry, "segment", BUYERS)
    draft = registry.save_draft(EDITOR, "segment", body(BUYERS, description="Two orders"), base_version=1,
                                message="stricter")
    assert (draft.number, draft.state, draft.author, draft.message) == (2, "draft", "ed", "stricter")
    assert registry.definition("buyers").published_version == 1

    registry.publish(PUBLISHER, "buyers", 2, message="go")

    states = [(v.number, v.state) for v in registry.versions("buyers")]
    assert states == [(1, "archived"), (2, "published")]
    assert registry.version("buyers", 1).body == BUYERS  # archived versions stay readable
    assert registry.published_document()["segments"] == [body(BUYERS, description="Two orders")]


def test_a_draft_with_mistakes_is_refused_with_every_problem_located_by_a_json_pointer(registry):
    broken = body(CHEAP, template="google_merchant", where={"all": [
        {"field": "category.path", "starts_with": "Electronics"},
        {"field": "prise", "lt": 100},
        {"in_segment": "nowhere"},
    ]})
    with pytest.raises(DefinitionRejected) as err:
        registry.save_draft(EDITOR, "feed", broken, base_version=None)
    found = {p.pointer: p for p in err.value.problems}
    assert set(found) == {"/template", "/where/all/1/field", "/where/all/2/in_segment"}
    assert "did you mean 'price'" in found["/where/all/1/field"].fix
    assert "google_merchant_rss" in found["/template"].fix
    with pytest.raises(NotFound):
        registry.definition("cheap-electronics")  # nothing was stored


def test_validate_reports_the_same_problems_without_storing_anything(registry):
    problems = registry.validate("segment", body(BUYERS, exports=["ids_cvs"]))
    [problem] = problems
    assert problem.pointer == "/exports/0" and "did you mean 'ids_csv'?" in problem.fix
    assert registry.list_definitions() == []


def test_a_stale_save_is_refused_and_both_versions_stay_readable(registry):
    registry.save_draft(EDITOR, "segment", BUYERS, base_version=None)
    registry.save_draft(EDITOR, "segment", body(BUYERS, description="mine"), base_version=1)
    with pytest.raises(StaleVersion) as err:
        registry.save_draft(PUBLISHER, "segment", body(BUYERS, description="theirs"), base_version=1)
    assert (err.value.base_version, err.value.current_version) == (1, 2)
    assert registry.version("buyers", 2).body["description"] == "mine"
    assert [c.pointer for c in registry.diff("buyers", 1, 2)] == ["/description"]
    assert registry.definition("buyers").latest_version == 2


@pytest.mark.parametrize("existing", [True, False], ids=["edit", "create"])
def test_concurrent_saves_from_the_same_base_exactly_one_wins(registry, existing):
    base = registry.save_draft(EDITOR, "segment", BUYERS, base_version=None).number if existing else None
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def save(i: int) -> None:
        barrier.wait()
        try:
            registry.save_draft(EDITOR, "segment", body(BUYERS, description=f"writer {i}"), base_version=base)
            outcomes.append("saved")
        except StaleVersion:
            outcomes.append("stale")

    threads = [threading.Thread(target=save, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["saved"] + ["stale"] * 5
    versions = registry.versions("buyers")
    assert len(versions) == (2 if existing else 1)
    assert [v.state for v in versions].count("draft") == 1


def test_publishing_a_change_that_breaks_an_in_segment_reference_is_refused(registry):
    published(registry, "segment", PER_STORE)
    published(registry, "segment", body(LAPSED, where={"in_segment": "store-3-buyers"}))
    draft = registry.save_draft(EDITOR, "segment", body(PER_STORE, for_each={"store_id": [1, 2]}), base_version=1)

    with pytest.raises(DefinitionRejected) as err:
        registry.publish(PUBLISHER, "store-{store_id}-buyers", draft.number)

    [problem] = err.value.problems
    assert (problem.key, problem.pointer) == ("lapsed-buyers", "/where/in_segment")
    assert "store-3-buyers" in problem.message
    assert registry.definition("store-{store_id}-buyers").published_version == 1


@pytest.mark.parametrize("where", [{"in_segment": "lapsed-buyers"}, {"all": [{"in_segment": "lapsed-buyers"}]}])
def test_a_draft_closing_an_in_segment_cycle_is_refused(registry, where):
    published(registry, "segment", BUYERS)
    published(registry, "segment", LAPSED)
    with pytest.raises(DefinitionRejected, match="in_segment cycle") as err:
        registry.save_draft(EDITOR, "segment", body(BUYERS, where=where), base_version=1)
    assert [p.key for p in err.value.problems] == ["buyers"]
    assert registry.definition("buyers").latest_version == 1


def test_archiving_a_segment_others_refer_to_is_refused_until_they_stop(registry):
    published(registry, "segment", BUYERS)
    published(registry, "segment", LAPSED)
    with pytest.raises(DefinitionRejected) as err:
        registry.archive(PUBLISHER, "buyers", reason="unused?")
    assert [(p.key, p.pointer) for p in err.value.problems] == [("lapsed-buyers", "/where/all/0/in_segment")]

    registry.archive(PUBLISHER, "lapsed-buyers", reason="campaign over")
    info = registry.archive(PUBLISHER, "buyers", reason="unused")
    assert info.status == "archived" and info.published_version is None
    assert registry.published() == []
    assert registry.version("buyers", 1).body == BUYERS
    with pytest.raises(StateConflict):
        registry.publish(PUBLISHER, "buyers", 1)


def test_an_old_version_restored_becomes_a_new_draft_equal_to_it(registry):
    published(registry, "segment", BUYERS)
    published(registry, "segment", body(BUYERS, exports=["ids_csv", "meta_custom_audience"]))
    restored = registry.restore(EDITOR, "buyers", 1, base_version=2)
    assert (restored.number, restored.state, restored.message) == (3, "draft", "restore version 1")
    assert restored.body == BUYERS
    assert registry.diff("buyers", 1, 3) == []
    with pytest.raises(StaleVersion):
        registry.restore(EDITOR, "buyers", 1, base_version=2)


def test_diff_lists_each_changed_leaf_with_its_pointer_and_values(registry):
    published(registry, "feed", CHEAP)
    changed = body(CHEAP, where={"all": [{"field": "category.path", "starts_with": "Electronics"},
                                         {"field": "price.amount", "lt": 200},
                                         {"field": "stock", "gt": 0}]}, order_by=["price.amount"])
    del changed["template"]
    changed["template"] = "meta_catalog_xml"
    registry.save_draft(EDITOR, "feed", changed, base_version=1)
    assert [c.as_dict() for c in registry.diff("cheap-electronics", 1, 2)] == [
        {"op": "changed", "pointer": "/template", "old": "google_merchant_rss", "new": "meta_catalog_xml"},
        {"op": "changed", "pointer": "/where/all/1/lt", "old": 100, "new": 200},
        {"op": "added", "pointer": "/where/all/2", "new": {"field": "stock", "gt": 0}},
        {"op": "added", "pointer": "/order_by", "new": ["price.amount"]},
    ]


def test_a_for_each_definition_is_one_definition_listing_its_expansions(registry):
    published(registry, "segment", PER_STORE)
    [info] = registry.list_definitions(kind="segment")
    assert info.definition_id == "store-{store_id}-buyers"
    assert info.expansions == ["store-1-buyers", "store-2-buyers", "store-3-buyers"]
    clash = body(BUYERS, id="store-2-buyers")
    with pytest.raises(DefinitionRejected, match="duplicate id 'store-2-buyers'"):
        registry.save_draft(EDITOR, "segment", clash, base_version=None)


def test_each_role_may_only_do_what_the_permission_table_allows(registry):
    with pytest.raises(Forbidden, match="editor, publisher, admin"):
        registry.save_draft(VIEWER, "segment", BUYERS, base_version=None)
    draft = registry.save_draft(EDITOR, "segment", BUYERS, base_version=None)
    with pytest.raises(Forbidden):
        registry.publish(EDITOR, "buyers", draft.number)
    registry.publish(PUBLISHER, "buyers", draft.number)
    with pytest.raises(Forbidden):
        registry.archive(EDITOR, "buyers")


def test_every_state_change_is_in_the_audit_log_which_refuses_edits(registry):
    published(registry, "segment", BUYERS)
    registry.restore(EDITOR, "buyers", 1, base_version=1)
    registry.archive(PUBLISHER, "buyers", reason="season over")
    entries = registry.audit(object_id="buyers")
    assert [(e.action, e.actor, e.version) for e in reversed(entries)] == [
        ("definition.create", "os:tester", 1), ("definition.publish", "os:tester", 1),
        ("definition.restore", "ed", 2), ("definition.archive", "pia", 1),
    ]
    assert entries[0].detail["reason"] == "season over"
    for statement in ("UPDATE audit_log SET actor = 'someone-else'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"), registry.db.engine.begin() as conn:
            conn.execute(text(statement))
    assert len(registry.audit()) == 4


def test_a_save_refused_for_one_kind_does_not_take_over_an_id_of_another(registry):
    published(registry, "segment", BUYERS)
    feed = body(CHEAP, id="buyers")
    with pytest.raises(DefinitionRejected, match="already the id of a segment"):
        registry.save_draft(ADMIN, "feed", feed, base_version=1)
