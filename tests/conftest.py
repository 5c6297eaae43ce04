from __future__ import annotations

import os

import pytest

from tests.pg_support import PostgresServer
from tests.support import TEST_JVM_OPTS, MotoS3, TansuBroker

# Spark's launcher adds SPARK_SUBMIT_OPTS to the driver's java command: the session below and
# every `feedgen` subprocess (they inherit this environment) start with TEST_JVM_OPTS.
os.environ.setdefault("SPARK_SUBMIT_OPTS", TEST_JVM_OPTS)


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the whole suite: UI off, few shuffle partitions."""
    from feedgen.jobs.spark import spark_session

    session = spark_session({"master": "local[2]", "shuffle_partitions": 2, "driver_memory": "2g"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """A real Kafka-protocol broker: KAFKA_BOOTSTRAP if set, else tansu on a free loopback port."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    broker = TansuBroker().start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API (moto's server) on loopback; credentials are dummies set in the env."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = MotoS3().start()
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (Debian's initdb + pg_ctl) on a free loopback port."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request, tmp_path):
    """A fresh, empty registry database URL: a SQLite file, then a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/feedgen.db"
        return
    server = request.getfixturevalue("postgres")
    schema = server.create_schema()
    try:
        yield server.schema_url(schema)
    finally:
        server.drop_schema(schema)


@pytest.fixture(scope="session")
def chromium_browser():
    """One headless Debian chromium for the session, driven by Playwright (tests/browser_support.py)."""
    from playwright.sync_api import sync_playwright

    from tests.browser_support import launch

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium_browser, tmp_path):
    """A fresh browser context and page; the last page is saved as ``tmp_path/last-page.png``."""
    import contextlib

    from tests.browser_support import new_page, screenshot

    page = new_page(chromium_browser)
    try:
        yield page
    finally:
        with contextlib.suppress(Exception):  # a screenshot must not hide the test's own failure
            screenshot(page, tmp_path / "last-page.png")
        page.context.close()
