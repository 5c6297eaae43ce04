"""What is published and how to stream it: pointer → manifest → gzip members.

A request reads the ``current/<id>.json`` pointer once and from then on touches only the
immutable run folder it names, so a pointer switch during a download never mixes two runs.
Manifests are immutable too, so they are cached by key.
"""

from __future__ import annotations

import json
import os
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from feedgen.core.store import LocalStore, Store
from feedgen.generator.parts import SCHEMA_VERSION

__all__ = ["STORE_ERRORS", "UNAVAILABLE", "Document", "IncompleteDocument", "ManifestCache", "Member", "StoreUnavailable",
           "check_store", "gzip_stream", "identity_stream", "resolve"]

CHUNK = 1 << 20
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class NotPublished(LookupError):
    """Nothing servable under this id (no pointer, other kind, bad file index)."""


class StoreUnavailable(OSError):
    """The serving store cannot be read now: its local folder is missing, its S3 endpoint is down."""


# What every path answers (503) while the store cannot be read; the cause goes to the log.
UNAVAILABLE = "the serving store is unavailable; try again later"
# What a store backend raises when it cannot be reached or read. (FileNotFoundError, a key
# that is not there, is caught where it is expected and means "not published".)
STORE_ERRORS = (OSError, BotoCoreError, ClientError)


def check_store(store: Store) -> None:
    """Raise StoreUnavailable unless ``store`` can be read now (a readable folder; a listable bucket)."""
    if isinstance(store, LocalStore):
        if not os.path.isdir(store.uri) or not os.access(store.uri, os.R_OK | os.X_OK):
            raise StoreUnavailable(f"{store.uri}: not a readable folder")
        return
    try:
        store.list("current/.healthz")
    except STORE_ERRORS as err:
        raise StoreUnavailable(f"{store.uri}: {err}") from err


@dataclass(frozen=True)
class Member:
    key: str
    bytes: int
    raw_bytes: int


@dataclass(frozen=True)
class Document:
    """One file of one published definition, as a client downloads it."""

    definition_id: str
    kind: str
    run_id: str
    file_index: int
    fmt: str
    content_type: str
    checksum: str
    members: tuple[Member, ...]
    gz_length: int
    raw_length: int
    published_at: datetime


class ManifestCache:
    """Parsed manifests by store key; safe because a run folder never changes.

    It also keeps the last ``Document`` built for each (id, kind, file) with the pointer it
    came from (its bytes; on a local store its inode, mtime and size, since the publisher
    replaces a pointer by renaming a new file over it): the same pointer always names the
    same immutable run folder, so a request that finds the pointer unchanged skips reading
    and parsing it and the manifest again.
    """

    def __init__(self, store: Store, capacity: int = 512) -> None:
        self.store = store
        self.capacity = capacity
        self._items: OrderedDict[str, dict] = OrderedDict()
        self._documents: OrderedDict[tuple[str, str, int], tuple[Any, Document]] = OrderedDict()
        self._lock = threading.Lock()

    def document(self, where: tuple[str, str, int], pointer: Any) -> Document | None:
        found = self._documents.get(where)
        return found[1] if found is not None and found[0] == pointer else None

    def remember(self, where: tuple[str, str, int], pointer: Any, doc: Document) -> None:
        with self._lock:
            self._documents[where] = (pointer, doc)
            self._documents.move_to_end(where)
            while len(self._documents) > 4 * self.capacity:
                self._documents.popitem(last=False)

    def get(self, key: str) -> dict:
        with self._lock:
            manifest = self._items.get(key)
            if manifest is not None:
                self._items.move_to_end(key)
                return manifest
        manifest = _parse_manifest(self.store.read_bytes(key), f"{self.store.uri}/{key}")
        with self._lock:
            self._items[key] = manifest
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return manifest


def _parse_manifest(data: bytes, where: str) -> dict:
    # Same checks as feedgen.generator.parts.read_manifest, which reads only local folders.
    manifest = json.loads(data)
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{where}: unsupported manifest schema_version; regenerate the run")
    if not manifest.get("files"):
        raise ValueError(f"{where}: manifest lists no files; regenerate the run")
    return manifest


def _parse_ts(text: str | None) -> datetime:
    if not text:
        return datetime.fromtimestamp(0, UTC)
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def _pointer_bytes(store: Store, definition_id: str) -> bytes:
    try:
        return store.read_bytes(f"current/{definition_id}.json")
    except FileNotFoundError:
        raise NotPublished(definition_id) from None


def _parse_pointer(data: bytes, definition_id: str) -> dict:
    pointer = json.loads(data)
    if not isinstance(pointer, dict) or pointer.get("definition_id") != definition_id:
        raise NotPublished(definition_id)
    return pointer


def resolve(store: Store, manifests: ManifestCache, definition_id: str, kind: str,
            file_index: int) -> Document:
    """The document ``file_index`` of the run currently published for ``definition_id``."""
    where = (definition_id, kind, file_index)
    raw: bytes | None = None
    if isinstance(store, LocalStore):
        # a stat, not a read: os.path rather than store.path(), whose checks and pathlib
        # cost more than the stat on this per-request path (the id is already validated)
        try:
            st = os.stat(os.path.join(store.uri, "current", f"{definition_id}.json"))
        except FileNotFoundError:
            check_store(store)  # a store folder that is gone (an unmounted volume) is not "unpublished"
            raise NotPublished(definition_id) from None
        signature: Any = (st.st_ino, st.st_mtime_ns, st.st_size)
    else:
        signature = raw = _pointer_bytes(store, definition_id)
    doc = manifests.document(where, signature)
    if doc is not None:
        return doc
    if raw is None:
        raw = _pointer_bytes(store, definition_id)
    doc = _build_document(store, manifests, _parse_pointer(raw, definition_id), definition_id, kind,
                          file_index)
    # (a pointer replaced between the stat and the read is cached under the old signature,
    # which no later stat returns: the next request builds the document again)
    manifests.remember(where, signature, doc)
    return doc


def _build_document(store: Store, manifests: ManifestCache, pointer: dict, definition_id: str,
                    kind: str, file_index: int) -> Document:
    if pointer.get("kind", kind) != kind:
        raise NotPublished(definition_id)
    manifest_key = str(pointer["manifest"])
    folder = manifest_key.rsplit("/", 1)[0]
    manifest = manifests.get(manifest_key)
    files = manifest["files"]
    if not 0 <= file_index < len(files):
        raise NotPublished(definition_id)
    entry = files[file_index]
    members = []
    for m in [entry["header"], *entry["parts"], entry["footer"]]:
        name = str(m["path"])
        if not _MEMBER_NAME.match(name):
            raise ValueError(f"{store.uri}/{manifest_key}: member path {name!r} is not a plain file name")
        members.append(Member(f"{folder}/{name}", int(m["bytes"]), int(m["raw_bytes"])))
    return Document(
        definition_id=definition_id,
        kind=kind,
        run_id=str(pointer.get("run_id") or manifest.get("run_id")),
        file_index=file_index,
        fmt=str(manifest.get("format", "xml")),
        content_type=str(manifest.get("content_type") or "application/octet-stream"),
        checksum=str(entry.get("sha256", "")),
        members=tuple(members),
        gz_length=sum(m.bytes for m in members),
        raw_length=sum(m.raw_bytes for m in members),
        published_at=_parse_ts(pointer.get("published_at") or manifest.get("as_of")),
    )


class IncompleteDocument(OSError):
    """A document's stored bytes ended before its manifest said: the download must fail."""


def gzip_stream(store: Store, doc: Document, start: int, end_inclusive: int,
                chunk: int = CHUNK) -> Iterator[bytes]:
    """The stored gzip members as they are, bytes ``start..end_inclusive`` of their concatenation."""
    slices = []
    offset = 0
    for member in doc.members:
        lo, hi = offset, offset + member.bytes - 1
        offset += member.bytes
        if hi < start or member.bytes == 0:
            continue
        if lo > end_inclusive:
            break
        slices.append((member.key, max(start, lo) - lo, min(end_inclusive, hi) - lo))
    streams = _open_members(store, slices, chunk)
    yield from _exactly(_chained(streams), end_inclusive - start + 1, store, doc)


def identity_stream(store: Store, doc: Document, start: int, end_inclusive: int,
                    chunk: int = CHUNK) -> Iterator[bytes]:
    """The decompressed document, bytes ``start..end_inclusive``, decompressed while streaming."""
    wanted = []
    offset = 0
    for member in doc.members:
        lo, hi = offset, offset + member.raw_bytes - 1
        offset += member.raw_bytes
        if hi < start or member.raw_bytes == 0:
            continue
        if lo > end_inclusive:
            break
        wanted.append((member, max(start, lo) - lo, min(end_inclusive, hi) - max(start, lo) + 1))
    streams = _open_members(store, [(m.key, 0, None) for m, _skip, _want in wanted], chunk)
    pieces = (_member_slice(stream, m.key, skip, want) for stream, (m, skip, want) in zip(streams, wanted))
    try:
        yield from _exactly(_chained(pieces), end_inclusive - start + 1, store, doc)
    finally:
        streams.close()  # type: ignore[attr-defined]


def _open_members(store: Store, slices: list[tuple[str, int, int | None]],
                  chunk: int) -> Iterator[Iterator[bytes]]:
    # On a local store every file of the document is opened before the first byte is sent:
    # an open file stays readable after retention unlinks it, so a download in flight always
    # finishes. Elsewhere (S3) each object is fetched in turn; one deleted meanwhile raises
    # FileNotFoundError, which aborts the connection (see _exactly).
    if isinstance(store, LocalStore):
        opened = [store.open_stream(key, chunk, start=lo, end_inclusive=hi) for key, lo, hi in slices]
        try:
            yield from opened
        finally:
            for stream in opened:
                stream.close()  # type: ignore[attr-defined]
    else:
        for key, lo, hi in slices:
            yield store.open_stream(key, chunk, start=lo, end_inclusive=hi)


def _chained(streams: Iterator[Iterator[bytes]]) -> Iterator[bytes]:
    try:
        for stream in streams:
            try:
                yield from stream
            finally:
                close = getattr(stream, "close", None)
                if close:
                    close()
    finally:
        close = getattr(streams, "close", None)
        if close:
            close()


def _member_slice(stream: Iterator[bytes], key: str, skip: int, want: int) -> Iterator[bytes]:
    """Bytes ``skip..skip+want-1`` of one member, decompressed."""
    pieces = _gunzip(stream, key)
    try:
        for piece in pieces:
            if skip:
                if len(piece) <= skip:
                    skip -= len(piece)
                    continue
                piece = piece[skip:]
                skip = 0
            if len(piece) >= want:
                yield piece[:want]
                return
            want -= len(piece)
            yield piece
    finally:
        pieces.close()


def _exactly(chunks: Iterator[bytes], length: int, store: Store, doc: Document) -> Iterator[bytes]:
    # The response already promised ``length`` bytes (Content-Length). A body that ends short
    # must not end cleanly: raising makes the WSGI server drop the connection, which every
    # client reports as a failed download rather than a complete, shorter file.
    sent = 0
    try:
        for data in chunks:
            sent += len(data)
            yield data
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()
    if sent != length:
        raise IncompleteDocument(f"{store.uri}: run {doc.run_id}, {doc.definition_id} file "
                                 f"{doc.file_index}: stored parts gave {sent} of {length} bytes; "
                                 "the download was aborted (republish the run if this repeats)")


def _gunzip(chunks: Iterator[bytes], where: str) -> Iterator[bytes]:
    # wbits=31: gzip framing; a new decompressor per member, since one file may hold several
    d = zlib.decompressobj(wbits=31)
    fed = False
    try:
        for data in chunks:
            while data:
                fed = True
                out = d.decompress(data, CHUNK)
                if out:
                    yield out
                if d.eof:
                    # (unconsumed_tail is stale once eof is set: read unused_data)
                    data = d.unused_data
                    d = zlib.decompressobj(wbits=31)
                    fed = False
                else:
                    data = d.unconsumed_tail
        if fed and not d.eof:
            # output capped at CHUNK may still be pending in the decompressor
            tail = d.flush()
            if tail:
                yield tail
        if fed and not d.eof:
            raise ValueError(f"{where}: truncated gzip member; republish the run")
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()
