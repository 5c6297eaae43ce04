"""Part files and manifests: the on-disk output of one definition in a run.

Every ``*.gz`` file is exactly one gzip member, so header + parts + footer concatenated is a
valid gzip stream of the whole document. The manifest lists the members in order with
their sizes, item counts and checksums (docs/internals.md, "Output files of a run").
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from feedgen.core.errors import FeedgenError

__all__ = [
    "CONTENT_TYPES",
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "PartInfo",
    "assemble",
    "content_type",
    "finish_manifest",
    "gzip_member",
    "part_name",
    "read_manifest",
    "write_chrome",
    "write_manifest",
    "write_part",
]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
CONTENT_TYPES: dict[str, str] = {
    "xml": "application/xml; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
}


def gzip_member(data: bytes, level: int = 6) -> bytes:
    """One complete gzip member of ``data``; mtime is 0 so equal input gives equal bytes."""
    return gzip.compress(data, compresslevel=level, mtime=0)


@dataclass(frozen=True)
class PartInfo:
    path: str
    items: int
    bytes: int
    raw_bytes: int
    sha256: str

    def as_dict(self) -> dict:
        # what dataclasses.asdict gives, without its deep copy (a manifest lists thousands)
        return {"path": self.path, "items": self.items, "bytes": self.bytes, "raw_bytes": self.raw_bytes,
                "sha256": self.sha256}


def content_type(fmt: str) -> str:
    """The HTTP content type of a document of format ``fmt`` (xml, csv, tsv)."""
    try:
        return CONTENT_TYPES[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; use one of {sorted(CONTENT_TYPES)}") from None


def part_name(index: int, fmt: str) -> str:
    """The file name of part ``index``: ``part-00000.xml.gz``."""
    content_type(fmt)
    return f"part-{index:05d}.{fmt}.gz"


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def _write_atomic(path: Path, data: bytes) -> None:
    # temp file in the same folder + rename: a reader never sees half a file, and a
    # rerun of a killed task simply replaces it. The temp name is unique per process and
    # thread; the folder is made only when missing (a thousand definitions write three
    # files each, and on some file systems every create or mkdir costs a millisecond).
    tmp = f"{path.parent}/.{path.name}.{os.getpid()}-{threading.get_ident()}.tmp"
    try:
        fd = os.open(tmp, _CREATE, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, _CREATE, 0o644)
    try:
        with open(fd, "wb", buffering=0) as fh:
            view = memoryview(data)
            while view:
                view = view[fh.write(view):]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_part(folder: Path, name: str, raw: bytes, items: int) -> PartInfo:
    """Compress ``raw`` into one gzip member at ``folder/name`` and describe it."""
    member = gzip_member(raw)
    _write_atomic(Path(folder) / name, member)
    return PartInfo(
        path=name, items=items, bytes=len(member), raw_bytes=len(raw),
        sha256=hashlib.sha256(member).hexdigest(),
    )


def _split(parts: Sequence[PartInfo], fixed_bytes: int, max_bytes: int | None,
           max_items: int | None) -> list[list[PartInfo]]:
    # greedy at part boundaries; a part larger than the limit still gets a file of its own
    files: list[list[PartInfo]] = [[]]
    size, items = fixed_bytes, 0
    for part in parts:
        current = files[-1]
        over_bytes = max_bytes is not None and size + part.raw_bytes > max_bytes
        over_items = max_items is not None and items + part.items > max_items
        if current and (over_bytes or over_items):
            files.append([])
            size, items = fixed_bytes, 0
        files[-1].append(part)
        size += part.raw_bytes
        items += part.items
    return files


def _file_entry(index: int, header: PartInfo, parts: list[PartInfo], footer: PartInfo) -> dict:
    members = [header, *parts, footer]
    return {
        "index": index,
        "items": sum(p.items for p in parts),
        "bytes": sum(m.bytes for m in members),
        "raw_bytes": sum(m.raw_bytes for m in members),
        # checksum of the members' checksums: no need to re-read the parts
        "sha256": hashlib.sha256("".join(m.sha256 for m in members).encode()).hexdigest(),
        "header": header.as_dict(),
        "parts": [p.as_dict() for p in parts],
        "footer": footer.as_dict(),
    }


def write_manifest(
    folder: Path, *, definition_id: str, kind: str, run_id: str, as_of: str, template: str,
    fmt: str, header: str, footer: str, parts: Sequence[PartInfo],
    max_file_bytes: int | None = None, max_file_items: int | None = None,
) -> dict:
    """Write the header and footer members and ``manifest.json`` (atomically); return it.

    ``parts`` are in document order. When a file would pass ``max_file_bytes`` or
    ``max_file_items``, the parts are split into several files at part boundaries; each
    file repeats the same header and footer. The byte limit is on the uncompressed size:
    partners count the document, and a server may send it unzipped.
    """
    head, foot = write_chrome(folder, fmt, header, footer)
    return finish_manifest(folder, definition_id=definition_id, kind=kind, run_id=run_id, as_of=as_of,
                           template=template, fmt=fmt, head=head, foot=foot, parts=parts,
                           max_file_bytes=max_file_bytes, max_file_items=max_file_items)


def write_chrome(folder: Path, fmt: str, header: str, footer: str) -> tuple[PartInfo, PartInfo]:
    """Write the header and footer members of a definition's files (``write_manifest``'s first half)."""
    folder = Path(folder)
    content_type(fmt)
    return (write_part(folder, f"header.{fmt}.gz", header.encode("utf-8"), 0),
            write_part(folder, f"footer.{fmt}.gz", footer.encode("utf-8"), 0))


def finish_manifest(
    folder: Path, *, definition_id: str, kind: str, run_id: str, as_of: str, template: str,
    fmt: str, head: PartInfo, foot: PartInfo, parts: Sequence[PartInfo],
    max_file_bytes: int | None = None, max_file_items: int | None = None,
) -> dict:
    """Write ``manifest.json`` over header and footer members already written (``write_manifest``'s second half)."""
    groups = _split(parts, head.raw_bytes + foot.raw_bytes, max_file_bytes, max_file_items)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "definition_id": definition_id,
        "kind": kind,
        "run_id": run_id,
        "as_of": as_of,
        "template": template,
        "format": fmt,
        "content_type": content_type(fmt),
        "items": sum(p.items for p in parts),
        "files": [_file_entry(i, head, group, foot) for i, group in enumerate(groups)],
    }
    # one line: the indenting encoder is pure Python, 10x slower than the C one, and a
    # thousand manifests are written per run (`jq . manifest.json` to read one)
    _write_atomic(Path(folder) / MANIFEST_NAME, json.dumps(manifest).encode("utf-8"))
    return manifest


def read_manifest(folder: Path) -> dict:
    """Read and check ``folder/manifest.json``."""
    path = Path(folder) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FeedgenError(f"{path}: no manifest; the run did not finish writing this "
                           "definition, rerun `feedgen generate`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FeedgenError(f"{path}: manifest is not valid JSON ({err}); rerun "
                           "`feedgen generate`") from err
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != SCHEMA_VERSION:
        raise FeedgenError(f"{path}: schema_version {version!r} is not supported "
                           f"(expected {SCHEMA_VERSION}); upgrade feedgen or regenerate")
    if not manifest.get("files"):
        raise FeedgenError(f"{path}: manifest lists no files; rerun `feedgen generate`")
    return manifest


def assemble(folder: Path, file_index: int = 0, *, compressed: bool = False) -> bytes:
    """The whole document ``file_index`` (header + parts + footer) as bytes.

    ``compressed=True`` returns the concatenated gzip members as stored (a valid gzip file).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    files = manifest["files"]
    if not 0 <= file_index < len(files):
        raise FeedgenError(f"{folder / MANIFEST_NAME}: file {file_index} does not exist; "
                           f"this definition has files 0..{len(files) - 1}")
    entry = files[file_index]
    out = []
    for member in [entry["header"], *entry["parts"], entry["footer"]]:
        data = (folder / member["path"]).read_bytes()
        out.append(data if compressed else zlib.decompress(data, wbits=31))
    return b"".join(out)
