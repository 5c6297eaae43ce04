from __future__ import annotations

import json

import boto3
import pytest
from click.testing import CliRunner

from feedgen.core.config import load_config
from feedgen.core.errors import BadInput
from feedgen.core.runs import read_run
from feedgen.core.serving import read_pointer, serving_store
from feedgen.generator.parts import assemble
from feedgen.jobs.cli import main
from feedgen.jobs.lifecycle import approve_run, release_run
from feedgen.jobs.publish import publish_run
from tests.snapshot_helpers import (
    SMALL_DATA_GATES,
    consume,
    events_of,
    generate_run,
    write_feed_run,
)

DAY1, DAY2, DAY3 = "2026-11-01T03:00:00Z", "2026-11-02T03:00:00Z", "2026-11-03T03:00:00Z"


def _bucket(endpoint: str, name: str):
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=name)
    return s3


def _keys(s3, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_publish_to_the_local_root_switches_the_pointer_to_the_new_run(tmp_path):
    config = load_config(root=str(tmp_path), environ={})
    write_feed_run(tmp_path, "r1", DAY1, {"google-pl": {"o1": {"price": 1}}})
    write_feed_run(tmp_path, "r2", DAY2, {"google-pl": {"o1": {"price": 2}}})
    publish_run(config, "r1")
    pointer = json.loads((tmp_path / "current" / "google-pl.json").read_text())
    assert pointer["run_id"] == "r1"
    assert pointer["manifest"] == "runs/r1/feeds/google-pl/manifest.json"
    publish_run(config, "r2")
    pointer = read_pointer(serving_store(config), "google-pl")
    assert pointer["run_id"] == "r2" and pointer["as_of"] == DAY2
    assert b'"price": 2' in assemble(tmp_path / "runs" / "r2" / "feeds" / "google-pl")
    # republishing the older run never moves a pointer back
    record = publish_run(config, "r1")
    assert record["publication"]["superseded"] == ["google-pl"]
    assert read_pointer(serving_store(config), "google-pl")["run_id"] == "r2"


def test_publish_to_s3_uploads_files_then_the_pointer(tmp_path, s3_endpoint):
    s3 = _bucket(s3_endpoint, "serve-publish")
    config = load_config(root=str(tmp_path), environ={
        "FEEDGEN__PUBLISH__STORE": "s3://serve-publish/feeds", "FEEDGEN__PUBLISH__S3_ENDPOINT": s3_endpoint})
    write_feed_run(tmp_path, "r1", DAY1, {"google-pl": {"o1": {"price": 1}}, "meta": {"o2": {"price": 3}}})
    record = publish_run(config, "r1")
    assert record["status"] == "published"
    keys = _keys(s3, "serve-publish")
    assert "feeds/runs/r1/feeds/google-pl/manifest.json" in keys
    assert "feeds/runs/r1/feeds/meta/part-00000.csv.gz" in keys
    assert "feeds/runs/r1/run.json" in keys
    pointer = json.loads(s3.get_object(Bucket="serve-publish", Key="feeds/current/meta.json")["Body"].read())
    assert pointer["run_id"] == "r1" and pointer["manifest"] == "runs/r1/feeds/meta/manifest.json"
    # every file the manifest names is there, with the size it claims
    manifest = json.loads(s3.get_object(Bucket="serve-publish", Key="feeds/" + pointer["manifest"])["Body"].read())
    part = manifest["files"][0]["parts"][0]
    head = s3.head_object(Bucket="serve-publish", Key=f"feeds/runs/r1/feeds/meta/{part['path']}")
    assert head["ContentLength"] == part["bytes"]


def test_retention_keeps_the_last_k_published_runs_and_any_run_a_pointer_names(tmp_path, s3_endpoint):
    s3 = _bucket(s3_endpoint, "serve-retention")
    config = load_config(root=str(tmp_path), environ={
        "FEEDGEN__PUBLISH__STORE": "s3://serve-retention", "FEEDGEN__PUBLISH__S3_ENDPOINT": s3_endpoint,
        "FEEDGEN__PUBLISH__RETENTION": "2", "FEEDGEN__PUBLISH__RETENTION_GRACE": "0s"})
    # "old" only exists in r1, so its pointer keeps r1 alive
    write_feed_run(tmp_path, "r1", DAY1, {"a": {"o1": {"price": 1}}, "old": {"o9": {"price": 9}}})
    publish_run(config, "r1")
    for n in (2, 3, 4):
        write_feed_run(tmp_path, f"r{n}", DAY1, {"a": {"o1": {"price": n}}})
        publish_run(config, f"r{n}")
    runs_in_s3 = {k.split("/")[1] for k in _keys(s3, "serve-retention") if k.startswith("runs/")}
    assert runs_in_s3 == {"r1", "r3", "r4"}
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r1", "r3", "r4"]
    assert read_pointer(serving_store(config), "old")["run_id"] == "r1"
    assert read_pointer(serving_store(config), "a")["run_id"] == "r4"


def test_garbage_data_is_held_until_approved(spark, tmp_path, s3_endpoint, kafka_bootstrap):
    s3 = _bucket(s3_endpoint, "serve-garbage")
    config = load_config(root=str(tmp_path), environ={
        "FEEDGEN__PUBLISH__STORE": "s3://serve-garbage", "FEEDGEN__PUBLISH__S3_ENDPOINT": s3_endpoint,
        "FEEDGEN__KAFKA__BOOTSTRAP": kafka_bootstrap, "FEEDGEN__KAFKA__TOPIC": "garbage",
        **SMALL_DATA_GATES})
    offers = {f"o{i:02d}": {"price": 10 + i, "title": f"offer {i}"} for i in range(20)}
    generate_run(spark, config, "r1", DAY1, {"google-pl": offers})
    assert release_run(config, "r1")["status"] == "emitted"
    # half the offers lose their price
    broken = {k: ({**v, "price": None} if i % 2 else v) for i, (k, v) in enumerate(offers.items())}
    record = generate_run(spark, config, "r2", DAY2, {"google-pl": broken})
    assert release_run(config, "r2")["status"] == "held"
    breaches = {b["metric"]: b for b in read_run(tmp_path, "r2")["gate"]["breaches"]}
    assert breaches["null_rate.price"]["value"] == 0.5
    assert breaches["share_changed"]["value"] == 0.5
    assert set(breaches["share_changed"]["sample_keys"]) <= {k for k, v in broken.items() if v["price"] is None}
    # the old files stay current, nothing of r2 is served or sent
    assert read_pointer(serving_store(config), "google-pl")["run_id"] == "r1"
    assert not any(k.startswith("runs/r2/feeds") for k in _keys(s3, "serve-garbage"))
    assert len(consume(kafka_bootstrap, "garbage", 21, timeout=3)) == 20
    with pytest.raises(BadInput, match="held by its gates"):
        publish_run(config, "r2")
    record = approve_run(config, "r2", by="marketer")
    assert record["status"] == "emitted" and record["gate"]["decision"] == "approved"
    assert read_pointer(serving_store(config), "google-pl")["run_id"] == "r2"
    sent = [e for e in events_of(consume(kafka_bootstrap, "garbage", 30)) if e["run_id"] == "r2"]
    assert sorted(e["key"] for e in sent) == sorted(k for k, v in broken.items() if v["price"] is None)
    assert {(e["op"], tuple(e["changed"])) for e in sent} == {("update", ("price",))}


def test_reject_discards_a_held_run_and_approve_refuses_a_stale_one(spark, tmp_path):
    config = load_config(root=str(tmp_path), environ=SMALL_DATA_GATES)
    offers = {f"o{i}": {"price": i} for i in range(10)}
    generate_run(spark, config, "r1", DAY1, {"d": offers})
    release_run(config, "r1")
    generate_run(spark, config, "r2", DAY2, {"d": {}})
    assert read_run(tmp_path, "r2")["status"] == "held"
    runner = CliRunner()
    result = runner.invoke(main, ["runs", "show", "r2", "--root", str(tmp_path)])
    assert result.exit_code == 0 and "held: d empty_output" in result.output
    result = runner.invoke(main, ["runs", "reject", "r2", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert read_run(tmp_path, "r2")["status"] == "rejected"
    assert not (tmp_path / "runs" / "r2" / "feeds").exists()
    result = runner.invoke(main, ["runs", "approve", "r2", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "not 'held'" in result.output
    # a held run whose base is no longer current cannot be approved
    generate_run(spark, config, "r3", DAY3, {"d": {"o1": {"price": 1}}})
    generate_run(spark, config, "r4", DAY3, {"d": offers}, gates={"d": {"enabled": False}})
    release_run(config, "r4")
    with pytest.raises(BadInput, match="compared with run r1, but run r4 has been published since"):
        approve_run(config, "r3")
    result = runner.invoke(main, ["runs", "list", "--root", str(tmp_path)])
    assert result.exit_code == 0
    for run_id, status in (("r1", "emitted"), ("r2", "rejected"), ("r3", "held"), ("r4", "emitted")):
        assert run_id in result.output and status in result.output


def test_a_segment_with_an_extra_export_is_published_whole(tmp_path, s3_endpoint):
    from feedgen.core.runs import new_run_record, parse_as_of, write_run
    from feedgen.generator.parts import write_manifest, write_part

    s3 = _bucket(s3_endpoint, "serve-segment")
    config = load_config(root=str(tmp_path), environ={
        "FEEDGEN__PUBLISH__STORE": "s3://serve-segment", "FEEDGEN__PUBLISH__S3_ENDPOINT": s3_endpoint})
    seg = tmp_path / "runs" / "r1" / "segments" / "vip"
    for folder, template in ((seg, "ids_csv"), (seg / "exports" / "meta_custom_audience", "meta_custom_audience")):
        folder.mkdir(parents=True)
        part = write_part(folder, "part-00000.csv.gz", b"c1\nc2\n", 2)
        write_manifest(folder, definition_id="vip", kind="segment", run_id="r1", as_of=DAY1,
                       template=template, fmt="csv", header="id\n", footer="", parts=[part])
    record = new_run_record("r1", parse_as_of(DAY1), "local", status="generating")
    record["definitions"]["vip"] = {"kind": "segment", "entity": "customer", "items": 2}
    write_run(tmp_path, record)
    publish_run(config, "r1")
    keys = _keys(s3, "serve-segment")
    assert "runs/r1/segments/vip/exports/meta_custom_audience/manifest.json" in keys
    assert "runs/r1/segments/vip/exports/meta_custom_audience/part-00000.csv.gz" in keys
    assert read_pointer(serving_store(config), "vip")["manifest"] == "runs/r1/segments/vip/manifest.json"
