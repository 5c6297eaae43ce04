"""Retention never deletes a file that a download is still reading.

A superseded run stays on the serving store for ``publish.retention_grace`` after it stops
being current; a download in flight either finishes or fails visibly (never a clean end of
a short body). Real runs published for real, served by ``feedgen serve`` (gunicorn) on
loopback, read by clients that take their time.
"""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests
import yaml

from feedgen.core.config import load_config
from feedgen.core.runs import new_run_record, parse_as_of, write_run
from feedgen.generator.parts import write_manifest, write_part
from feedgen.jobs.publish import apply_retention, publish_run
from tests.fileserver_support import TOKENS, expected, server_section, xml_items
from tests.support import free_port, wait_for_port

FEEDGEN = [sys.executable, "-m", "feedgen.jobs.cli"]
AUTH = {"Authorization": f"Bearer {TOKENS['feed-a']}"}
R1, R2, R3 = "20260101T000000Z-aaaaaa", "20260102T000000Z-bbbbbb", "20260103T000000Z-cccccc"
# ~12 MB of gzip in 1 MB parts: far more than loopback socket buffers hold, so the server is
# still reading parts while the slow client waits
BIG = {"count": 4000, "payload": 3000, "items_per_part": 330}


def write_feed(config, run_id: str, items: list[str], *, status: str = "generating",
               items_per_part: int = 10) -> Path:
    """Run ``run_id`` with one feed, ``feed-a``, as the generator leaves it (not yet published)."""
    folder = Path(config.root) / "runs" / run_id / "feeds" / "feed-a"
    parts = [write_part(folder, f"part-{n:05d}.xml.gz", "".join(items[i:i + items_per_part]).encode(),
                        len(items[i:i + items_per_part]))
             for n, i in enumerate(range(0, len(items), items_per_part))]
    as_of = f"{run_id[0:4]}-{run_id[4:6]}-{run_id[6:8]}T00:00:00Z"
    write_manifest(folder, definition_id="feed-a", kind="feed", run_id=run_id, as_of=as_of,
                   template="google_merchant_rss", fmt="xml", header="<rss><channel>\n",
                   footer="</channel></rss>\n", parts=parts)
    record = new_run_record(run_id, parse_as_of(as_of), "local[1]", status=status)
    record["definitions"] = {"feed-a": {"kind": "feed", "items": len(items)}}
    if status == "held":
        record["gate"] = {"status": "held", "breaches": [{"definition_id": "feed-a", "metric": "share_changed",
                                                          "value": 1.0, "threshold": 0.3}]}
    write_run(config.root, record)
    return folder


def big_feed(config, run_id: str, *, status: str = "generating") -> Path:
    items = xml_items(run_id, BIG["count"], payload=BIG["payload"], seed=hash(run_id) % 1000)
    return write_feed(config, run_id, items, status=status, items_per_part=BIG["items_per_part"])


def configure(tmp_path: Path, publish: dict, server: dict | None = None) -> Path:
    cfg = tmp_path / "feedgen.yaml"
    cfg.write_text(yaml.safe_dump({"root": str(tmp_path / "root"), "publish": publish,
                                   "server": {**server_section(), **(server or {})}}))
    return cfg


class Server:
    """``feedgen serve`` (gunicorn, 2 workers x 4 threads) on a free loopback port."""

    def __init__(self, cfg: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([*FEEDGEN, "serve", "--config", str(cfg), "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.port)

    def get(self, path: str, **headers: str) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.port}{path}", headers={**AUTH, **headers}, timeout=30)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _out, err = self.proc.communicate(timeout=40)
        return err.decode()


@pytest.fixture
def serve():
    started: list[Server] = []

    def start(cfg: Path) -> Server:
        started.append(Server(cfg))
        return started[-1]

    yield start
    for server in started:
        server.stop()


class SlowDownload:
    """A GET that reads its status, headers and first bytes, then waits until told to read on."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self.sock = socket.socket()
        # a small receive window: the server can only run a little ahead of this reader
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.sock.settimeout(60)
        self.sock.connect(("127.0.0.1", port))
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
                 *(f"{k}: {v}" for k, v in headers.items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.response = http.client.HTTPResponse(self.sock)
        self.response.begin()
        self.first = self.response.read(65536)

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def length(self) -> int:
        return int(self.response.getheader("Content-Length"))

    def finish(self) -> bytes:
        """The whole body; http.client raises IncompleteRead if the server cut it short."""
        try:
            return self.first + self.response.read()
        finally:
            self.sock.close()


def slow_downloads(port: int) -> list[SlowDownload]:
    gz = {**AUTH, "Accept-Encoding": "gzip"}
    plain = {**AUTH, "Accept-Encoding": "identity"}
    return [SlowDownload(port, "/feeds/feed-a.gz", gz), SlowDownload(port, "/feeds/feed-a.gz", gz),
            SlowDownload(port, "/feeds/feed-a", plain)]


def assert_complete(downloads: list[SlowDownload], folder: Path) -> None:
    want_gz, want_raw = expected(folder, compressed=True), expected(folder)
    for n, download in enumerate(downloads):
        body = download.finish()
        want = want_raw if n == 2 else want_gz
        assert download.status == 200 and download.length == len(want)
        assert len(body) == len(want), f"download {n}: {len(body)} of {len(want)} bytes"
        assert body == want, f"download {n}: same length, different bytes"


def test_a_slow_download_of_the_old_feed_completes_when_a_held_run_is_approved(tmp_path, serve):
    cfg = configure(tmp_path, {"retention": 1})  # the default grace: 1h
    config = load_config(cfg, environ={})
    old = big_feed(config, R1)
    publish_run(config, R1)
    new = write_feed(config, R2, xml_items("R2", 30), status="held")
    server = serve(cfg)
    downloads = slow_downloads(server.port)

    done = subprocess.run([*FEEDGEN, "runs", "approve", R2, "--config", str(cfg)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # new requests get the approved run at once, while the old one stays for the slow readers
    fresh = server.get("/feeds/feed-a", **{"Accept-Encoding": "identity"})
    assert fresh.status_code == 200 and fresh.content == expected(new)
    assert old.is_dir()
    assert_complete(downloads, old)
    assert "FileNotFoundError" not in server.stop()


def test_retention_deletes_a_superseded_run_once_its_grace_has_passed(tmp_path):
    cfg = configure(tmp_path, {"retention": 1, "retention_grace": "1s"})
    config = load_config(cfg, environ={})
    runs = tmp_path / "root" / "runs"
    for run_id in (R1, R2):
        write_feed(config, run_id, xml_items(run_id, 20))
        publish_run(config, run_id)
    # R1 stopped being current a moment ago: still inside its grace
    assert sorted(p.name for p in runs.iterdir()) == [R1, R2]
    assert apply_retention(config) == []
    time.sleep(1.2)
    write_feed(config, R3, xml_items(R3, 20))
    publish_run(config, R3)
    # R1's grace has passed; R2 only just stopped being current
    assert sorted(p.name for p in runs.iterdir()) == [R2, R3]
    time.sleep(1.2)
    assert apply_retention(config) == [R2]
    assert sorted(p.name for p in runs.iterdir()) == [R3]


def test_a_download_that_outlasts_the_grace_still_completes_on_a_local_store(tmp_path, serve):
    cfg = configure(tmp_path, {"retention": 1, "retention_grace": "0s"})
    config = load_config(cfg, environ={})
    old = big_feed(config, R1)
    publish_run(config, R1)
    server = serve(cfg)
    want_gz, want_raw = expected(old, compressed=True), expected(old)
    downloads = slow_downloads(server.port)

    write_feed(config, R2, xml_items("R2", 30))
    publish_run(config, R2)
    # no grace: R1 is gone from the store while the downloads are still reading it
    assert not old.exists()
    for n, download in enumerate(downloads):
        body = download.finish()
        want = want_raw if n == 2 else want_gz
        assert download.status == 200 and len(body) == len(want) and body == want, f"download {n}"
    assert "FileNotFoundError" not in server.stop()


def test_a_download_cut_by_a_vanished_part_on_s3_fails_visibly(tmp_path, serve, s3_endpoint):
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="grace-s3")
    cfg = configure(tmp_path, {"retention": 1, "retention_grace": "0s", "store": "s3://grace-s3/serve",
                               "s3_endpoint": s3_endpoint})
    config = load_config(cfg, environ={})
    big_feed(config, R1)
    publish_run(config, R1)
    server = serve(cfg)
    downloads = slow_downloads(server.port)

    write_feed(config, R2, xml_items("R2", 30))
    publish_run(config, R2)
    # the parts the server has not fetched yet are gone: each download must end in an error
    # the client notices, never a 200 whose body just stops
    for n, download in enumerate(downloads):
        assert download.status == 200
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            body = download.finish()
            print(f"download {n}: {len(body)} of {download.length} bytes, clean end")
    fresh = server.get("/feeds/feed-a.gz", **{"Accept-Encoding": "gzip"})
    assert fresh.status_code == 200


def test_a_part_shorter_than_its_manifest_says_ends_the_download_with_an_error(tmp_path):
    from feedgen.core.store import LocalStore
    from feedgen.fileserver.published import IncompleteDocument, ManifestCache, gzip_stream, resolve

    config = load_config(root=str(tmp_path), environ={})
    folder = write_feed(config, R1, xml_items(R1, 40))
    publish_run(config, R1)
    part = folder / "part-00001.xml.gz"
    part.write_bytes(part.read_bytes()[:-10])  # a damaged copy on the serving store
    store = LocalStore(tmp_path)
    doc = resolve(store, ManifestCache(store), "feed-a", "feed", 0)
    got = bytearray()
    with pytest.raises(IncompleteDocument, match=f"run {R1}, feed-a file 0: stored parts gave"):
        for data in gzip_stream(store, doc, 0, doc.gz_length - 1):
            got += data
    assert len(got) == doc.gz_length - 10
