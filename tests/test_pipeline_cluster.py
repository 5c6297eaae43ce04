"""`feedgen run --master spark://...` on a standalone cluster publishes what a local run does."""

from __future__ import annotations

import shutil

import pytest

from feedgen.core.config import load_config
from feedgen.core.runs import new_run_id, parse_as_of, root_lock
from feedgen.jobs.pipeline import run_pipeline
from tests.pipeline_support import (
    DAY1,
    StandaloneSpark,
    event_content,
    feedgen,
    only_new_run,
    outbox_events,
    published_docs,
    published_exports,
    run_json,
    write_config,
    write_definitions,
    write_sample,
)
from tests.support import TEST_JVM_OPTS

DEFINITIONS = """\
feeds:
  - id: electronics
    template: google_merchant_rss
    where: {field: category.path, starts_with: "Electronics"}
    delivery: {destinations: [meta_catalog_batch]}
  - id: home-one-per-product
    template: meta_catalog_csv
    where: {field: category.top, eq: "Home & Garden"}
    pick_one_per: product_id
    order_by: [price.amount]
segments:
  - id: buyers
    where: {history: orders, count: {gte: 1}}
    exports: [google_customer_match, meta_custom_audience]
    delivery: {destinations: [meta_custom_audience]}
"""


@pytest.fixture
def cluster(tmp_path):
    spark = StandaloneSpark(tmp_path / "cluster").start()
    try:
        yield spark
    finally:
        spark.stop()


def test_a_run_on_a_standalone_cluster_publishes_the_same_items_as_a_local_run(spark, tmp_path, cluster):
    defs = write_definitions(tmp_path / "defs", DEFINITIONS)
    config_path = write_config(tmp_path, "  conf: {spark.executor.memory: 512m, spark.cores.max: 2, "
                                         f"spark.executor.extraJavaOptions: '{TEST_JVM_OPTS}'}}\n")
    local = tmp_path / "local"
    write_sample(local, variant=0)
    shutil.copytree(local, tmp_path / "remote")

    config = load_config(config_path, root=str(local), environ={})
    run_id = new_run_id()
    with root_lock(config.root, run_id):
        local_record = run_pipeline(config, run_id=run_id, as_of=parse_as_of(DAY1), definitions_dir=str(defs))
    assert local_record["status"] == "emitted"

    # a relative root: every path handed to the executors must be made absolute first
    done = feedgen("run", "--config", str(config_path), "--root", "remote", "--definitions",
                   str(defs), "--as-of", DAY1, "--master", cluster.url, env=cluster.env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    remote = tmp_path / "remote"
    remote_run = only_new_run(remote, set())
    record = run_json(remote, remote_run)
    assert record["status"] == "emitted"
    assert record["spark_master"] == cluster.url
    assert record["stages"]["generate"]["items"] == local_record["stages"]["generate"]["items"] > 0

    assert published_docs(remote) == published_docs(local)
    assert set(published_docs(remote)) == {"buyers", "electronics", "home-one-per-product"}
    assert published_exports(remote) == published_exports(local) != {}
    assert sorted(event_content(e) for e in outbox_events(remote, remote_run)) == sorted(
        event_content(e) for e in outbox_events(local, run_id))
