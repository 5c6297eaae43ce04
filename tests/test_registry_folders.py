"""``definitions import|export``: YAML folders in and out of the registry, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from feedgen.console.registry import DefinitionRejected, Registry, StaleVersion
from feedgen.generator.definitions import load_definitions
from feedgen.generator.parse import load_file
from feedgen.generator.validate_body import plain
from tests.registry_support import ADMIN, BUYERS, EDITOR, LAPSED, body, published

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "definitions"


@pytest.fixture
def registry(registry_url):
    reg = Registry.open(registry_url)
    yield reg
    reg.close()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.yaml"))}


def _example_bodies() -> dict[str, dict]:
    out = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        data = load_file(path)
        for plural in ("feeds", "segments"):
            for entry in data.get(plural) or []:
                out[entry["id"]] = plain(entry)
    return out


def test_import_export_import_is_a_fixed_point_on_the_examples(registry, tmp_path):
    first = registry.import_directory(ADMIN, EXAMPLES)
    assert len(first.published) == len(_example_bodies()) and first.unchanged == []

    registry.export_directory(tmp_path / "a")
    again = registry.import_directory(ADMIN, tmp_path / "a")
    registry.export_directory(tmp_path / "b")

    assert again.published == [] and sorted(again.unchanged) == sorted(_example_bodies())
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert {v.definition_id: v.body for v in registry.published()} == _example_bodies()
    exported = load_definitions(tmp_path / "a")
    assert sorted(d.id for d in exported) == sorted(d.id for d in load_definitions(EXAMPLES))


def test_importing_a_changed_file_publishes_only_what_changed_with_the_file_as_message(registry, tmp_path):
    folder = tmp_path / "defs"
    shutil.copytree(EXAMPLES, folder)
    registry.import_directory(ADMIN, folder)
    segments = folder / "segments.yaml"
    segments.write_text(segments.read_text().replace("orders_total, gte: 1500", "orders_total, gte: 2000"))

    report = registry.import_directory(ADMIN, folder)

    assert [(d, v) for d, v, _ in report.published] == [("lapsed-high-value", 2)]
    version = registry.version("lapsed-high-value", 2)
    assert (version.state, version.message) == ("published", str(segments))
    assert [c.as_dict() for c in registry.diff("lapsed-high-value", 1, 2)] == [
        {"op": "changed", "pointer": "/where/all/1/gte", "old": 1500, "new": 2000}]


def test_a_folder_is_validated_as_a_set_with_the_registry_before_anything_is_written(registry, tmp_path):
    published(registry, "segment", BUYERS)
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "ok.yaml").write_text("segments:\n  - id: lapsed-buyers\n    where: {in_segment: buyers}\n"
                                    "    exports: [ids_csv]\n")
    (folder / "bad.yaml").write_text("segments:\n  - id: loop\n    where: {in_segment: nowhere}\n"
                                     "    exports: [ids_csv]\n")
    with pytest.raises(DefinitionRejected) as err:
        registry.import_directory(ADMIN, folder)
    [problem] = err.value.problems
    assert str(problem).startswith(f"{folder / 'bad.yaml'}:3: segment 'loop' where.in_segment: unknown segment 'nowhere'")
    assert [d.definition_id for d in registry.list_definitions()] == ["buyers"]

    (folder / "bad.yaml").unlink()
    assert [d for d, _, _ in registry.import_directory(ADMIN, folder).published] == ["lapsed-buyers"]


def test_an_import_that_would_close_an_in_segment_cycle_is_refused(registry, tmp_path):
    published(registry, "segment", BUYERS)
    published(registry, "segment", LAPSED)
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "buyers.yaml").write_text("segments:\n  - id: buyers\n    where: {in_segment: lapsed-buyers}\n"
                                        "    exports: [ids_csv]\n")
    with pytest.raises(DefinitionRejected, match="in_segment cycle"):
        registry.import_directory(ADMIN, folder)
    assert registry.definition("buyers").latest_version == 1


def test_an_import_leaves_a_draft_in_progress_which_is_then_stale(registry, tmp_path):
    published(registry, "segment", BUYERS)
    registry.save_draft(EDITOR, "segment", body(BUYERS, description="being edited"), base_version=1)
    registry.export_directory(tmp_path)
    exported = tmp_path / "segments" / "buyers.yaml"
    exported.write_text(exported.read_text().replace("Ordered at least once", "Imported"))
    registry.import_directory(ADMIN, tmp_path)
    info = registry.definition("buyers")
    assert (info.draft_version, info.published_version, info.latest_version) == (2, 3, 3)
    with pytest.raises(StaleVersion, match="now has version 3"):
        registry.publish(ADMIN, "buyers", 2)


def test_export_removes_files_of_definitions_no_longer_published(registry, tmp_path):
    published(registry, "segment", BUYERS)
    published(registry, "segment", LAPSED)
    registry.export_directory(tmp_path)
    registry.archive(ADMIN, "lapsed-buyers", reason="done")
    written, removed = registry.export_directory(tmp_path)
    assert [p.name for p in removed] == ["lapsed-buyers.yaml"]
    assert sorted(_files(tmp_path)) == ["segments/buyers.yaml"]
