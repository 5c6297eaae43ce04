"""Engine and sessions for a registry URL, with the settings each database needs.

SQLite (the default, one file under the data root): WAL so readers never wait for the
writer, foreign keys on, a busy timeout, and write transactions that start with
``BEGIN IMMEDIATE`` so two writers queue instead of failing half-way. feedgen's own writers
also queue on an OS file lock beside the database (``<file>.write-lock``): a waiting writer
wakes as soon as the lock is free, instead of polling with SQLite's growing back-off (which
under load leaves some writers waiting seconds while others get through). PostgreSQL
(``postgresql+psycopg://``): a pool, and row locks taken by the service.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from feedgen.core.errors import ConfigError

DEFAULT_URL = "sqlite:///{root}/feedgen.db"
BUSY_TIMEOUT_MS = 30_000
_WRITE = {"registry_write": True}


def registry_url(config, override: str | None = None) -> str:
    """``--registry URL``, else config ``registry.url``, else ``sqlite:///{root}/feedgen.db``."""
    if override:
        return override
    url = config.get("registry.url") if config is not None else None
    root = config.root if config is not None else "./var"
    return str(url or DEFAULT_URL).replace("{root}", root)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; ConfigError naming the fix when the URL cannot work."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise ConfigError(f"registry.url: {url!r} is not a database URL; write e.g. "
                          "sqlite:///var/feedgen.db or postgresql+psycopg://user@host/db") from err
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=10)
    raise ConfigError(f"registry.url: {backend!r} databases are not supported; use sqlite:/// or postgresql+psycopg://")


def _sqlite_engine(parsed) -> Engine:
    database = parsed.database or ""
    if "://" in database:
        raise ConfigError(f"registry.url: {parsed.render_as_string()} is not a local file (is the data root on S3?); "
                          "set registry.url to a local sqlite:///PATH or a postgresql+psycopg:// URL")
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event emits BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # A writer takes the write lock up front: a deferred transaction that reads first and
        # writes later fails with "database is locked" instead of waiting its turn.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("registry_write") else "BEGIN")

    return engine


class Database:
    """Sessions on one engine: ``read()`` for queries, ``write()`` for one atomic change."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reader = sessionmaker(engine, expire_on_commit=False)
        self._writer = sessionmaker(engine.execution_options(**_WRITE), expire_on_commit=False)
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._write_lock = f"{database}.write-lock" if database and database != ":memory:" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        lock = _file_lock(self._write_lock) if self._write_lock else nullcontext()
        with lock, self._writer() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the block (threads and processes queue on it)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: SQLite's busy timeout alone
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
