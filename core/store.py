"""Storage backends for the data root and the serving store: a local directory or S3.

``open_store(uri, config)`` returns a :class:`Store`. Keys are ``/``-separated paths
relative to the store's root (``runs/<run_id>/feeds/<id>/manifest.json``); a key with
``..``, an empty segment or a leading ``/`` is refused, so nothing outside the root is
ever reached. A missing key raises ``FileNotFoundError`` on both backends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from feedgen.core.errors import ConfigError

__all__ = ["LocalStore", "S3Store", "Store", "open_store"]

DEFAULT_CHUNK = 1 << 20


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"store key {key!r}: must be a non-empty relative path like 'runs/<id>/run.json'")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"store key {key!r}: must be relative, '/'-separated, without backslashes")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"store key {key!r}: '..', '.' and empty segments are not allowed")
    return key


def _check_prefix(prefix: str) -> str:
    # A prefix may be empty (the whole store) or end with '/' (a folder).
    if prefix == "":
        return prefix
    _check_key(prefix.rstrip("/") or "/")
    return prefix


class Store:
    """A flat key → bytes namespace under one root. Subclasses implement every method."""

    uri: str

    def read_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def read_range(self, key: str, start: int, end_inclusive: int) -> bytes:
        """Bytes ``start..end_inclusive`` of ``key`` (shorter at the end of the object)."""
        raise NotImplementedError

    def open_stream(self, key: str, chunk: int = DEFAULT_CHUNK, *, start: int = 0,
                    end_inclusive: int | None = None) -> Iterator[bytes]:
        """Yield the object (or the byte range ``start..end_inclusive``) in chunks."""
        raise NotImplementedError

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write ``key`` atomically: a reader sees the old object or the new one."""
        raise NotImplementedError

    def upload_file(self, local_path: str | os.PathLike[str], key: str) -> None:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def size(self, key: str) -> int:
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        """Every key starting with ``prefix`` (a plain string prefix, as on S3), sorted."""
        raise NotImplementedError

    def subdirs(self, prefix: str) -> list[str]:
        """Names of the immediate "folders" under ``prefix`` (which ends with '/'), sorted."""
        raise NotImplementedError

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; return how many were deleted."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class LocalStore(Store):
    """A directory on the local file system."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def path(self, key: str) -> Path:
        """The file behind ``key`` (for callers that can use the file system directly)."""
        return self.root / _check_key(key)

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def read_range(self, key: str, start: int, end_inclusive: int) -> bytes:
        with open(self.path(key), "rb") as fh:
            fh.seek(start)
            return fh.read(max(0, end_inclusive - start + 1))

    def open_stream(self, key: str, chunk: int = DEFAULT_CHUNK, *, start: int = 0,
                    end_inclusive: int | None = None) -> Iterator[bytes]:
        # Opened before the first chunk is asked for, so a missing file fails at call time.
        fh = open(self.path(key), "rb")  # noqa: SIM115 - closed by the generator
        return _file_chunks(fh, chunk, start, end_inclusive)

    def write_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def upload_file(self, local_path: str | os.PathLike[str], key: str) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def list(self, prefix: str = "") -> list[str]:
        _check_prefix(prefix)
        # Walk only the deepest folder the prefix names, then filter by the full prefix.
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not folder.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(folder):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # a write in progress
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def subdirs(self, prefix: str) -> list[str]:
        _check_prefix(prefix)
        folder = self.root / prefix if prefix else self.root
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir())

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            (self.root / key).unlink(missing_ok=True)
        # Remove folders left empty, deepest first, but never the root itself.
        for folder in sorted({(self.root / k).parent for k in keys}, key=lambda p: len(p.parts), reverse=True):
            while folder != self.root and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
        return len(keys)


def _file_chunks(fh: Any, chunk: int, start: int, end_inclusive: int | None) -> Iterator[bytes]:
    with fh:
        if start:
            fh.seek(start)
        remaining = None if end_inclusive is None else end_inclusive - start + 1
        while remaining is None or remaining > 0:
            data = fh.read(chunk if remaining is None else min(chunk, remaining))
            if not data:
                return
            if remaining is not None:
                remaining -= len(data)
            yield data


class S3Store(Store):
    """A bucket and prefix on S3 (or an S3-compatible endpoint) through boto3."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 client: Any = None) -> None:
        if not bucket:
            raise ConfigError("S3 store: the URI needs a bucket, e.g. s3://my-bucket/feedgen")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        if client is None:
            import boto3
            from botocore.config import Config as BotoConfig

            client = boto3.client(
                "s3", endpoint_url=endpoint_url,
                config=BotoConfig(max_pool_connections=32, retries={"max_attempts": 5, "mode": "standard"}),
            )
        self.client = client

    def _full(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _full_prefix(self, prefix: str) -> str:
        _check_prefix(prefix)
        return f"{self.prefix}/{prefix}" if self.prefix else prefix

    def _relative(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    def _get(self, key: str, range_header: str | None = None) -> Any:
        from botocore.exceptions import ClientError

        kwargs = {"Bucket": self.bucket, "Key": self._full(key)}
        if range_header:
            kwargs["Range"] = range_header
        try:
            return self.client.get_object(**kwargs)
        except ClientError as err:
            if _is_missing(err):
                raise FileNotFoundError(f"{self.uri}/{key}: no such object") from err
            raise

    def read_bytes(self, key: str) -> bytes:
        return self._get(key)["Body"].read()

    def read_range(self, key: str, start: int, end_inclusive: int) -> bytes:
        if end_inclusive < start:
            return b""
        return self._get(key, f"bytes={start}-{end_inclusive}")["Body"].read()

    def open_stream(self, key: str, chunk: int = DEFAULT_CHUNK, *, start: int = 0,
                    end_inclusive: int | None = None) -> Iterator[bytes]:
        rng = None
        if start or end_inclusive is not None:
            rng = f"bytes={start}-" + ("" if end_inclusive is None else str(end_inclusive))
        body = self._get(key, rng)["Body"]
        return _body_chunks(body, chunk)

    def write_bytes(self, key: str, data: bytes) -> None:
        # A single PUT: S3 readers see the old object or the new one, never a mix.
        self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)

    def upload_file(self, local_path: str | os.PathLike[str], key: str) -> None:
        self.client.upload_file(str(local_path), self.bucket, self._full(key))

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as err:
            if _is_missing(err):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise FileNotFoundError(f"{self.uri}/{key}: no such object")
        return int(head["ContentLength"])

    def list(self, prefix: str = "") -> list[str]:
        full = self._full_prefix(prefix)
        if self.prefix and not full:
            full = self.prefix + "/"
        keys = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            keys.extend(self._relative(obj["Key"]) for obj in page.get("Contents", []))
        return sorted(keys)

    def subdirs(self, prefix: str) -> list[str]:
        full = self._full_prefix(prefix)
        if self.prefix and not full:
            full = self.prefix + "/"
        names = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                names.append(common["Prefix"][len(full):].rstrip("/"))
        return sorted(names)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        # DeleteObjects takes at most 1000 keys per call.
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self._full(k)} for k in keys[i:i + 1000]]
            response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise OSError(f"{self.uri}: could not delete {first.get('Key')}: {first.get('Message')}")
        return len(keys)


def _body_chunks(body: Any, chunk: int) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(chunk)
    finally:
        body.close()


def _is_missing(err: Any) -> bool:
    code = str(err.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


def _config_get(config: Any, dotted: str) -> Any:
    if config is None:
        return None
    if hasattr(config, "get") and not isinstance(config, dict):
        return config.get(dotted)
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def open_store(uri: str | os.PathLike[str], config: Any = None) -> Store:
    """A store for ``uri``: a local directory, ``file://...`` or ``s3://bucket/prefix``.

    The S3 endpoint comes from ``publish.s3_endpoint`` in ``config`` (a Config or a dict),
    else the ``AWS_ENDPOINT_URL`` environment variable, else AWS itself.
    """
    text = os.fspath(uri)
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://"):].partition("/")
        endpoint = _config_get(config, "publish.s3_endpoint") or os.environ.get("AWS_ENDPOINT_URL") or None
        return S3Store(bucket, prefix, endpoint_url=endpoint)
    if "://" in text and not text.startswith("file://"):
        raise ConfigError(f"store {text!r}: unsupported scheme; use a directory or s3://bucket/prefix")
    if text.startswith("file://"):
        text = text[len("file://"):]
    return LocalStore(text)
