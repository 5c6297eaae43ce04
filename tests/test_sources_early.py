"""Source problems stop early and clearly; an empty source holds the run instead of publishing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from feedgen.aggregator.sources import check_source_path
from feedgen.core.errors import SourceSchemaError

FEEDGEN = [sys.executable, "-m", "feedgen.jobs.cli", "--text-logs"]
DEFS = """\
feeds:
  - id: all-offers
    entity: offer
    template: google_merchant_rss
    where: {field: stock, gt: 0}
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FEEDGEN") and k != "KAFKA_BOOTSTRAP"}


def test_a_missing_path_names_the_source_the_path_the_key_and_where_it_was_set(tmp_path):
    with pytest.raises(SourceSchemaError) as err:
        check_source_path("offers", str(tmp_path / "nope"), "environment variable FEEDGEN__SOURCES__OFFERS__PATH")
    assert str(err.value).startswith(
        f"source 'offers': path {tmp_path / 'nope'} does not exist (sources.offers.path, set in "
        "environment variable FEEDGEN__SOURCES__OFFERS__PATH); point sources.offers.path at the offers export")


def test_a_folder_without_data_files_or_a_pattern_matching_nothing_is_refused(tmp_path):
    empty = tmp_path / "offers"
    (empty / "_temporary").mkdir(parents=True)
    (empty / "_SUCCESS").write_text("")
    (empty / ".part-0.crc").write_text("")
    with pytest.raises(SourceSchemaError, match=r"source 'offers': .*/offers holds no data files \(sources.offers.path"):
        check_source_path("offers", str(empty))
    with pytest.raises(SourceSchemaError, match="does not exist"):
        check_source_path("offers", str(tmp_path / "exports" / "*.parquet"))
    (empty / "date=2026-11-02").mkdir()
    (empty / "date=2026-11-02" / "part-0.parquet").write_bytes(b"PAR1")
    check_source_path("offers", str(empty))  # partitioned folders count
    check_source_path("offers", str(empty / "*" / "*.parquet"))
    check_source_path("offers", "s3a://bucket/offers")  # remote paths are Spark's to read


@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_feedgen_run_stops_before_spark_with_exit_2_and_leaves_no_run(tmp_path, problem):
    root = tmp_path / "root"
    offers = tmp_path / "exports" / "offers"
    if problem == "empty":
        offers.mkdir(parents=True)
        (offers / "_SUCCESS").write_text("")
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "feeds.yaml").write_text(DEFS, encoding="utf-8")
    env = {**_env(), "FEEDGEN__SOURCES__OFFERS__PATH": str(offers)}
    for command in (["run", "--definitions", str(defs)], ["aggregate"]):
        t0 = time.monotonic()
        done = subprocess.run([*FEEDGEN, *command, "--root", str(root)], capture_output=True, text=True,
                              env=env, timeout=120)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("feedgen: error: source 'offers': "), done.stderr
        assert str(offers) in lines[0] and "sources.offers.path" in lines[0]
        assert "FEEDGEN__SOURCES__OFFERS__PATH" in lines[0]
        assert ("does not exist" if problem == "missing" else "holds no data files") in lines[0]
        assert time.monotonic() - t0 < 15  # Spark never started
        assert not (root / "runs").exists()


def test_a_source_with_zero_rows_warns_and_holds_even_a_first_run(spark, tmp_path, caplog):
    import pyarrow.parquet as pq

    from feedgen.aggregator.sample_data import write_sample_data
    from feedgen.core.config import load_config
    from feedgen.core.runs import new_run_id, parse_as_of
    from feedgen.jobs.pipeline import run_pipeline

    root = tmp_path / "root"
    write_sample_data(root / "sample", offers=40, customers=10, seed=7)
    offers = root / "sample" / "offers"
    schema = pq.read_schema(next(offers.glob("*.parquet")))
    for part in offers.glob("*.parquet"):
        part.unlink()
    pq.write_table(schema.empty_table(), offers / "part-00000.parquet")
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "feeds.yaml").write_text(DEFS, encoding="utf-8")
    config = load_config(root=str(root), environ={})
    run_id = new_run_id()
    record = run_pipeline(config, run_id=run_id, as_of=parse_as_of("2026-11-02T06:00:00Z"),
                          definitions_dir=str(defs))

    assert record["status"] == "held"
    assert not (root / "current").exists() or not list((root / "current").glob("*.json"))
    saved = json.loads((root / "runs" / run_id / "run.json").read_text(encoding="utf-8"))
    assert saved["status"] == "held" and saved["gate"]["first_run"] == ["all-offers"]
    assert [(b["definition_id"], b["metric"]) for b in saved["gate"]["breaches"]] == [("all-offers", "empty_output")]
    assert saved["warnings"] == [saved["stages"]["aggregate"]["warnings"][0]]
    assert saved["warnings"][0].startswith(f"source 'offers' ({offers}) has zero rows")
    assert any("source 'offers'" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)

    from click.testing import CliRunner

    from feedgen.jobs.cli import main

    shown = CliRunner().invoke(main, ["runs", "show", run_id, "--root", str(root)])
    assert "warning: source 'offers'" in shown.output and "held: all-offers empty_output" in shown.output


# -- a source in another format than declared, or that Spark cannot read --------------------------

def _parquet_bytes() -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.table({"offer_id": ["o1"]}), out)
    return out.getvalue()


WRONG_FORMAT = [
    ("parquet", "offers.parquet", b"hello", "offers.parquet is not a Parquet file (5 bytes, looks like text (CSV?)); "
     "sources.offers.format is parquet: point sources.offers.path (set in environment variable "
     "FEEDGEN__SOURCES__OFFERS__PATH) at the offers export in Parquet, or set sources.offers.format to csv"),
    ("parquet", "part-0.parquet", b"PAR1" + b"\0" * 100, "part-0.parquet is not a Parquet file (104 bytes"),
    ("parquet", "part-0.json", b'{"offer_id": "o1"}\n', "looks like JSON); sources.offers.format is parquet"),
    ("csv", "offers.csv", None, "offers.csv is a Parquet file but sources.offers.format is csv; set "
     "sources.offers.format to parquet"),
    ("json", "offers.json.gz", b'{"offer_id": "o1"}\n', "offers.json.gz is named .gz but is not gzip-compressed"),
]


@pytest.mark.parametrize(("fmt", "name", "content", "needle"), WRONG_FORMAT, ids=[w[1] + "-" + w[0] for w in WRONG_FORMAT])
def test_a_file_in_another_format_than_declared_stops_before_spark_with_exit_2(tmp_path, fmt, name, content, needle):
    root = tmp_path / "root"
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / name).write_bytes(_parquet_bytes() if content is None else content)
    (exports / "_SUCCESS").write_text("")  # Spark's marker files are not data
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "feeds.yaml").write_text(DEFS, encoding="utf-8")
    path = str(exports / name) if name.startswith("offers") else str(exports)
    env = {**_env(), "FEEDGEN__SOURCES__OFFERS__PATH": path, "FEEDGEN__SOURCES__OFFERS__FORMAT": fmt}
    for command in (["run", "--definitions", str(defs)], ["aggregate"]):
        t0 = time.monotonic()
        done = subprocess.run([*FEEDGEN, *command, "--root", str(root)], capture_output=True, text=True,
                              env=env, timeout=120)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("feedgen: error: source 'offers': "), done.stderr
        assert needle in lines[0], lines[0]
        assert time.monotonic() - t0 < 15  # Spark never started
        assert not (root / "runs").exists()


def _root_with_broken_offers(tmp_path):
    """Sample sources whose offers folder holds a file Spark fails on: Parquet magic, no valid footer."""
    from feedgen.aggregator.sample_data import write_sample_data

    root = tmp_path / "root"
    write_sample_data(root / "sample", offers=20, customers=5, seed=7)
    offers = root / "sample" / "offers"
    good = next(offers.glob("*.parquet")).read_bytes()
    (offers / "part-99999.parquet").write_bytes(good[:4] + b"x" * 200 + good[-4:])
    return root, offers


def test_a_source_spark_cannot_read_fails_feedgen_run_in_one_line_and_marks_the_run_failed(spark, tmp_path):
    from feedgen.core.config import load_config
    from feedgen.core.runs import new_run_id, parse_as_of
    from feedgen.jobs.pipeline import run_pipeline

    root, offers = _root_with_broken_offers(tmp_path)
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "feeds.yaml").write_text(DEFS, encoding="utf-8")
    run_id = new_run_id()
    with pytest.raises(SourceSchemaError) as err:
        run_pipeline(load_config(root=str(root), environ={}), run_id=run_id, definitions_dir=str(defs),
                     as_of=parse_as_of("2026-11-02T06:00:00Z"))
    message = str(err.value)
    assert message.startswith(f"source 'offers': {offers} could not be read as parquet (corrupted file: ")
    assert "sources.offers.format is parquet, so the path must hold Parquet files" in message
    assert "\n" not in message and "at org.apache" not in message
    saved = json.loads((root / "runs" / run_id / "run.json").read_text(encoding="utf-8"))
    assert saved["status"] == "failed" and saved["stages"]["aggregate"]["error"] == message


def test_json_lines_that_are_not_json_name_the_format(spark, tmp_path):
    from feedgen.aggregator.sources import read_source, type_source

    folder = tmp_path / "offers"
    folder.mkdir()
    (folder / "part-0.json").write_text("offer_id,price\no1,10\n", encoding="utf-8")
    with pytest.raises(SourceSchemaError, match=r"source 'offers' \(.*\): no line is a JSON object .*"
                                                r"sources.offers.format is json, so write JSON lines"):
        type_source("offers", str(folder), read_source(spark, "offers", {"path": str(folder), "format": "json"}))


def test_feedgen_aggregate_on_a_source_spark_cannot_read_exits_2_and_never_stays_aggregating(tmp_path):
    root, offers = _root_with_broken_offers(tmp_path)
    done = subprocess.run([*FEEDGEN, "aggregate", "--root", str(root)], capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"feedgen: error: source 'offers': {offers} could not be read as parquet"), lines[-1]
    # Spark's start-up notes may precede it, but no trace: not Python's, not Java's
    assert not [line for line in lines if "Traceback" in line or line.startswith("\tat ") or "Py4J" in line
                or "Caused by" in line], done.stderr[-3000:]
    assert len(lines) < 20, done.stderr
    (record,) = [json.loads(p.read_text()) for p in (root / "runs").glob("*/run.json")]
    assert record["status"] == "failed"
    assert record["stages"]["aggregate"]["error"] == lines[-1].removeprefix("feedgen: error: ")
