from __future__ import annotations

import os

import pytest

from tests.support import MotoS3, TansuBroker


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
