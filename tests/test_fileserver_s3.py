from __future__ import annotations

import gzip
import secrets
import shutil

import boto3
import pytest
import requests
from lxml import etree

from feedgen.core.config import load_config
from feedgen.fileserver.app import create_app
from tests.fileserver_support import (
    TOKENS,
    LiveServer,
    expected,
    publish_definition,
    server_section,
    xml_items,
)

RUN_A = "20260101T000000Z-aaaaaa"
RUN_B = "20260102T000000Z-bbbbbb"
BEARER_A = {"Authorization": f"Bearer {TOKENS['feed-a']}"}
IDENTITY = {"Accept-Encoding": "identity"}


@pytest.fixture
def s3_config(tmp_path, s3_endpoint):
    bucket = f"serve-{secrets.token_hex(4)}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    cfg = load_config(None, root=str(tmp_path / "root"), environ={})
    cfg.data["publish"].update({"store": f"s3://{bucket}/published", "s3_endpoint": s3_endpoint})
    cfg.data["server"].update(server_section())
    return cfg


@pytest.fixture
def live(s3_config):
    server = LiveServer(create_app(s3_config))
    yield server
    server.stop()


def test_s3_backend_serves_whole_feeds_both_ways(live, s3_config):
    folder = publish_definition(s3_config, RUN_A, "feed-a", xml_items("A", 60, payload=300, seed=5))
    want_xml, want_gz = expected(folder), expected(folder, compressed=True)
    # the local copy goes away: everything served must come from the bucket
    shutil.rmtree(folder)
    r = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY})
    assert r.status_code == 200
    assert r.content == want_xml
    assert len(etree.fromstring(r.content).findall("channel/item")) == 60
    gz = requests.get(live.url("/feeds/feed-a.xml.gz"), headers=BEARER_A)
    assert gz.content == want_gz
    assert gzip.decompress(gz.content) == want_xml
    assert requests.get(live.url("/healthz")).json() == {"status": "ok"}  # the store's address is not shown


def test_s3_backend_ranges_and_revalidation(live, s3_config):
    folder = publish_definition(s3_config, RUN_A, "feed-a", xml_items("A", 60, payload=300, seed=6))
    whole_gz = expected(folder, compressed=True)
    r = requests.get(live.url("/feeds/feed-a.gz"), headers={**BEARER_A, "Range": "bytes=1000-5999"})
    assert r.status_code == 206
    assert r.content == whole_gz[1000:6000]
    tail = requests.get(live.url("/feeds/feed-a"), headers={**BEARER_A, **IDENTITY, "Range": "bytes=-100"})
    assert tail.content == expected(folder)[-100:]
    etag = r.headers["ETag"]
    assert requests.get(live.url("/feeds/feed-a.gz"),
                        headers={**BEARER_A, "If-None-Match": etag}).status_code == 304


def test_s3_pointer_switch_mid_download_keeps_the_first_run(live, s3_config):
    folder_a = publish_definition(s3_config, RUN_A, "feed-a", xml_items("A", 200, payload=12_000, seed=7),
                                  items_per_part=25)
    r = requests.get(live.url("/feeds/feed-a.gz"), headers=BEARER_A, stream=True)
    chunks = r.raw.stream(64 * 1024, decode_content=False)
    got = [next(chunks) for _ in range(3)]
    folder_b = publish_definition(s3_config, RUN_B, "feed-a", xml_items("B", 20, seed=8))
    got.extend(chunks)
    assert b"".join(got) == expected(folder_a, compressed=True)
    after = requests.get(live.url("/feeds/feed-a.gz"), headers=BEARER_A)
    assert after.content == expected(folder_b, compressed=True)


def test_s3_unknown_and_unauthorised_look_the_same(live, s3_config):
    publish_definition(s3_config, RUN_A, "feed-a", xml_items("A", 5))
    assert requests.get(live.url("/feeds/feed-a")).status_code == 401
    assert requests.get(live.url("/feeds/nope")).status_code == 401
    wrong = requests.get(live.url("/feeds/feed-a"), headers={"Authorization": "Bearer x"})
    unknown = requests.get(live.url("/feeds/nope"), headers=BEARER_A)
    assert (wrong.status_code, wrong.content) == (unknown.status_code, unknown.content) == (404, unknown.content)
