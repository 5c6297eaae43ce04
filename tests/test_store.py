from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from feedgen.core.store import LocalStore, S3Store, open_store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return open_store(str(tmp_path / "root"))
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"store-{secrets.token_hex(4)}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return open_store(f"s3://{bucket}/feedgen", {"publish": {"s3_endpoint": endpoint}})


def test_open_store_picks_the_backend_from_the_uri(tmp_path, s3_endpoint):
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    s3 = open_store("s3://bucket/some/prefix", {"publish": {"s3_endpoint": s3_endpoint}})
    assert isinstance(s3, S3Store)
    assert s3.uri == "s3://bucket/some/prefix"


def test_written_bytes_read_back_whole_in_ranges_and_streams(store):
    data = bytes(range(256)) * 40
    store.write_bytes("runs/r1/feeds/f/part-00000.xml.gz", data)
    assert store.read_bytes("runs/r1/feeds/f/part-00000.xml.gz") == data
    assert store.read_range("runs/r1/feeds/f/part-00000.xml.gz", 10, 19) == data[10:20]
    assert store.read_range("runs/r1/feeds/f/part-00000.xml.gz", len(data) - 3, len(data) + 50) == data[-3:]
    chunks = list(store.open_stream("runs/r1/feeds/f/part-00000.xml.gz", chunk=1000))
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= 1000
    part = b"".join(store.open_stream("runs/r1/feeds/f/part-00000.xml.gz", 100, start=5, end_inclusive=504))
    assert part == data[5:505]
    assert store.size("runs/r1/feeds/f/part-00000.xml.gz") == len(data)
    assert store.exists("runs/r1/feeds/f/part-00000.xml.gz")
    assert not store.exists("runs/r1/feeds/f/part-00001.xml.gz")


def test_missing_keys_raise_file_not_found(store):
    with pytest.raises(FileNotFoundError):
        store.read_bytes("current/nope.json")
    with pytest.raises(FileNotFoundError):
        store.read_range("current/nope.json", 0, 10)
    with pytest.raises(FileNotFoundError):
        store.size("current/nope.json")


def test_overwrite_replaces_the_object_and_readers_never_see_half(store):
    store.write_bytes("current/f.json", b"A" * 200_000)
    seen = set()
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            data = store.read_bytes("current/f.json")
            seen.add((len(data), len(set(data))))

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(5):
        store.write_bytes("current/f.json", b"B" * 200_000)
        store.write_bytes("current/f.json", b"A" * 200_000)
    stop.set()
    t.join()
    # every read was one whole object: full length and a single distinct byte value
    assert seen and seen == {(200_000, 1)}


def test_list_is_a_prefix_listing_relative_to_the_root(store):
    for key in ["runs/r1/run.json", "runs/r1/feeds/a/manifest.json", "runs/r2/run.json",
                "current/a.json", "runs-old/x"]:
        store.write_bytes(key, b"{}")
    assert store.list("runs/") == ["runs/r1/feeds/a/manifest.json", "runs/r1/run.json", "runs/r2/run.json"]
    assert store.list("runs/r1/feeds") == ["runs/r1/feeds/a/manifest.json"]
    assert store.list("runs") == ["runs-old/x", "runs/r1/feeds/a/manifest.json",
                                  "runs/r1/run.json", "runs/r2/run.json"]
    assert store.list("nothing/") == []
    assert store.subdirs("runs/") == ["r1", "r2"]
    assert "current/a.json" in store.list()


def test_s3_list_pages_past_one_thousand_keys_and_delete_batches(s3_endpoint):
    bucket = f"many-{secrets.token_hex(4)}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    store = open_store(f"s3://{bucket}", {"publish": {"s3_endpoint": s3_endpoint}})
    keys = [f"runs/r1/feeds/f/part-{i:05d}.xml.gz" for i in range(1105)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.write_bytes(k, b"x"), keys))
    store.write_bytes("runs/r2/run.json", b"{}")
    assert store.list("runs/r1/") == keys
    assert store.delete_prefix("runs/r1/") == 1105
    assert store.list("runs/") == ["runs/r2/run.json"]


def test_delete_prefix_removes_a_run_and_leaves_the_others(store):
    for key in ["runs/r1/run.json", "runs/r1/feeds/a/part-00000.xml.gz", "runs/r2/run.json"]:
        store.write_bytes(key, b"1")
    assert store.delete_prefix("runs/r1/") == 2
    assert store.list("runs/") == ["runs/r2/run.json"]
    assert store.subdirs("runs/") == ["r2"]


def test_upload_file_copies_a_local_file(store, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 1000)
    store.upload_file(src, "runs/r1/feeds/a/part-00000.xml.gz")
    assert store.read_bytes("runs/r1/feeds/a/part-00000.xml.gz") == b"payload" * 1000


@pytest.mark.parametrize("key", ["../etc/passwd", "/etc/passwd", "runs/../../x", "runs//x", "a/./b",
                                 "", "a\\b"])
def test_keys_that_could_leave_the_root_are_refused(store, key):
    with pytest.raises(ValueError):
        store.read_bytes(key)
    with pytest.raises(ValueError):
        store.write_bytes(key, b"x")


def test_local_store_writes_leave_no_temp_files(tmp_path):
    store = open_store(str(tmp_path))
    store.write_bytes("current/a.json", b"{}")
    store.write_bytes("current/a.json", b"{}")
    assert sorted(p.name for p in (tmp_path / "current").iterdir()) == ["a.json"]
