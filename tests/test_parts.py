from __future__ import annotations

import gzip
import hashlib
import json

import pytest
from lxml import etree

from feedgen.core.errors import FeedgenError
from feedgen.generator.parts import (
    assemble,
    gzip_member,
    part_name,
    read_manifest,
    write_manifest,
    write_part,
)

HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>\n'
FOOTER = "</channel></rss>\n"


def _write_feed(folder, chunks, **limits):
    parts = [
        write_part(folder, part_name(i, "xml"), "".join(chunk).encode(), len(chunk))
        for i, chunk in enumerate(chunks)
    ]
    return write_manifest(
        folder, definition_id="google-pl", kind="feed", run_id="20261122T030500Z-1a2b3c",
        as_of="2026-11-22T03:05:00Z", template="google_merchant_rss", fmt="xml",
        header=HEADER, footer=FOOTER, parts=parts, **limits,
    )


def test_gzip_member_is_deterministic_and_decompresses():
    assert gzip_member(b"abc") == gzip_member(b"abc")
    assert gzip.decompress(gzip_member(b"abc")) == b"abc"


def test_concatenated_members_are_one_valid_gzip_document(tmp_path):
    chunks = [["<item><t>a</t></item>\n", "<item><t>b</t></item>\n"], ["<item><t>c</t></item>\n"]]
    manifest = _write_feed(tmp_path, chunks)

    raw = assemble(tmp_path)
    assert gzip.decompress(assemble(tmp_path, compressed=True)) == raw
    root = etree.fromstring(raw)
    assert [t.text for t in root.iter("t")] == ["a", "b", "c"]

    entry = manifest["files"][0]
    assert manifest["items"] == 3 and entry["items"] == 3
    assert manifest["content_type"] == "application/xml; charset=utf-8"
    assert entry["raw_bytes"] == len(raw)
    assert entry["bytes"] == len(assemble(tmp_path, compressed=True))
    assert [p["path"] for p in entry["parts"]] == ["part-00000.xml.gz", "part-00001.xml.gz"]
    assert entry["header"]["path"] == "header.xml.gz"


def test_manifest_checksums_match_the_files_on_disk(tmp_path):
    manifest = _write_feed(tmp_path, [["<item/>"]])
    entry = manifest["files"][0]
    members = [entry["header"], *entry["parts"], entry["footer"]]
    for member in members:
        data = (tmp_path / member["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == member["sha256"]
        assert len(data) == member["bytes"]
    combined = hashlib.sha256("".join(m["sha256"] for m in members).encode()).hexdigest()
    assert entry["sha256"] == combined
    assert read_manifest(tmp_path) == json.loads((tmp_path / "manifest.json").read_text())


def test_item_limit_splits_at_part_boundaries_and_each_file_is_whole(tmp_path):
    chunks = [[f"<item><t>{i}{j}</t></item>" for j in range(2)] for i in range(5)]
    manifest = _write_feed(tmp_path, chunks, max_file_items=4)

    assert [f["items"] for f in manifest["files"]] == [4, 4, 2]
    seen = []
    for index in range(3):
        root = etree.fromstring(assemble(tmp_path, index))
        seen += [t.text for t in root.iter("t")]
    assert seen == [f"{i}{j}" for i in range(5) for j in range(2)]


def test_byte_limit_splits_and_never_leaves_a_file_without_parts(tmp_path):
    chunks = [[f"<item><t>{i}</t></item>"] for i in range(3)]
    manifest = _write_feed(tmp_path, chunks, max_file_bytes=1)
    # each part alone is over the limit: one part per file, none empty
    assert [len(f["parts"]) for f in manifest["files"]] == [1, 1, 1]
    # the limit is on the uncompressed document: room for header, footer and two parts
    limit = manifest["files"][0]["raw_bytes"] + len(chunks[0][0]) + 1
    manifest = _write_feed(tmp_path, chunks, max_file_bytes=limit)
    assert [len(f["parts"]) for f in manifest["files"]] == [2, 1]
    assert all(f["raw_bytes"] <= limit for f in manifest["files"])
    assert all(len(assemble(tmp_path, i)) <= limit for i in range(2))


def test_no_parts_gives_one_empty_but_valid_document(tmp_path):
    manifest = _write_feed(tmp_path, [])
    assert manifest["items"] == 0 and len(manifest["files"]) == 1
    assert etree.fromstring(assemble(tmp_path)).tag == "rss"


def test_missing_manifest_and_bad_file_index_are_clear_errors(tmp_path):
    with pytest.raises(FeedgenError, match="no manifest"):
        read_manifest(tmp_path)
    _write_feed(tmp_path, [["<item/>"]])
    with pytest.raises(FeedgenError, match="file 3 does not exist"):
        assemble(tmp_path, 3)


def test_csv_content_type(tmp_path):
    part = write_part(tmp_path, part_name(0, "csv"), b"a,b\n", 1)
    manifest = write_manifest(
        tmp_path, definition_id="s", kind="segment", run_id="r", as_of="t",
        template="ids_csv", fmt="csv", header="id\n", footer="", parts=[part],
    )
    assert manifest["content_type"] == "text/csv; charset=utf-8"
    assert assemble(tmp_path) == b"id\na,b\n"
