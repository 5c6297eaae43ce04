"""File server benchmark: feedgen (gunicorn) vs nginx serving the same gzip feed.

    .venv/bin/python benchmarks/serve.py [--small]

Builds a feed of about 100 MB of gzip members (10 MB with --small) with
``feedgen.generator.parts`` and publishes it for real, then in one run:

1. full-download throughput of ``feedgen serve`` (gunicorn, gthread workers, the stored
   gzip members streamed as they are from ``/feeds/<id>.gz``) and of nginx serving the
   assembled bytes as one static file (sendfile on), alternating rounds, each download
   made by a separate client process;
2. 304 revalidation latency (If-None-Match) with 50 concurrent keep-alive clients in a
   separate process, each revalidating at a steady rate (``--rate`` per client per
   second), and the same load against nginx and against gunicorn running a no-op app
   that only answers 304 (the floor of any gunicorn-served answer); then the same 50 clients
   closed-loop (each sends its next request as soon as the answer arrives) to show the
   saturation throughput.

Targets (issue 6): feedgen downloads at >= 50% of nginx's throughput; 304 p99 < 5 ms.

nginx is the Debian package: ``apt-get install -y nginx-light``. The benchmark installs
nothing; it runs ``nginx`` from PATH (or /usr/sbin/nginx) as a non-daemon on a loopback
port with a temporary config (``feedgen.jobs.deploy.start_nginx``).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
FEED_ID = "bench-feed"
RUN_ID = "20260101T000000Z-bbbbbb"


# ----------------------------------------------------------------------------- clients

def client_download(url: str, headers: dict[str, str], repeat: int) -> dict:
    """Download ``url`` ``repeat`` times over fresh connections (curl when installed)."""
    curl = shutil.which("curl")
    if curl:
        # curl (C, writes to /dev/null) keeps the client from being the bottleneck
        runs = []
        hdrs = [x for k, v in {"Accept-Encoding": "gzip", **headers}.items() for x in ("-H", f"{k}: {v}")]
        for _ in range(repeat):
            done = subprocess.run([curl, "-s", "-f", "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
                                   *hdrs, url], capture_output=True, text=True, check=True)
            size, total = done.stdout.split()
            runs.append({"bytes": int(float(size)), "seconds": float(total), "client": "curl"})
        return {"runs": runs}
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    buf = memoryview(bytearray(4 << 20))
    runs = []
    for _ in range(repeat):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        started = time.perf_counter()
        conn.request("GET", path, headers={"Accept-Encoding": "gzip", **headers})
        response = conn.getresponse()
        if response.status != 200:
            raise SystemExit(f"download {url}: HTTP {response.status}")
        total = 0
        while True:
            n = response.readinto(buf)
            if not n:
                break
            total += n
        runs.append({"bytes": total, "seconds": time.perf_counter() - started, "client": "python"})
        conn.close()
    return {"runs": runs}


def client_digest(url: str, headers: dict[str, str]) -> dict:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("GET", parts.path, headers={"Accept-Encoding": "gzip", **headers})
    response = conn.getresponse()
    digest = hashlib.sha256()
    while chunk := response.read(1 << 20):
        digest.update(chunk)
    return {"status": response.status, "sha256": digest.hexdigest()}


def client_revalidate(url: str, headers: dict[str, str], clients: int, seconds: float,
                      rate: float) -> dict:
    """``clients`` keep-alive connections sending conditional GETs; latency of each answer.

    ``rate`` > 0: each client sends one request every 1/rate s (open loop, the steady
    revalidation of a fleet of fetchers); ``rate`` == 0: closed loop (saturation). One
    thread drives every connection with ``selectors``, so client threads never wait for
    the GIL and the figures are the server's.
    """
    import heapq
    import selectors

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    interval = 1.0 / rate if rate > 0 else 0.0
    sel = selectors.DefaultSelector()
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    reconnects = 0

    def connect() -> socket.socket:
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock

    socks = [connect() for _ in range(clients)]
    pending = [b""] * clients
    sent_at = [0.0] * clients
    start_at = time.perf_counter() + 0.3
    stop_at = start_at + seconds
    due = [(start_at + (random.random() * interval), i) for i in range(clients)]
    heapq.heapify(due)
    for i, sock in enumerate(socks):
        sel.register(sock, selectors.EVENT_READ, i)
    in_flight = 0
    while True:
        now = time.perf_counter()
        while due and due[0][0] <= now:
            _, i = heapq.heappop(due)
            if now >= stop_at:
                continue
            sent_at[i] = time.perf_counter()
            try:
                socks[i].send(request)  # small: fits the empty send buffer at once
            except OSError:  # closed by the server since the last answer: reconnect, resend
                sel.unregister(socks[i])
                socks[i].close()
                socks[i] = connect()
                sel.register(socks[i], selectors.EVENT_READ, i)
                pending[i] = b""
                reconnects += 1
                socks[i].send(request)
            in_flight += 1
        if not due and in_flight == 0:
            break
        timeout = max(0.0, due[0][0] - time.perf_counter()) if due else 1.0
        for key, _ in sel.select(timeout):
            i = key.data
            try:
                chunk = socks[i].recv(65536)
            except OSError:
                chunk = b""
            done_at = time.perf_counter()
            if not chunk:  # the server closed the connection: reconnect and resend
                sel.unregister(socks[i])
                socks[i].close()
                socks[i] = connect()
                sel.register(socks[i], selectors.EVENT_READ, i)
                pending[i] = b""
                reconnects += 1
                in_flight -= 1
                heapq.heappush(due, (done_at, i))
                continue
            pending[i] += chunk
            if b"\r\n\r\n" not in pending[i]:
                continue
            head, _, pending[i] = pending[i].partition(b"\r\n\r\n")
            in_flight -= 1
            status = head[9:12].decode()
            statuses[status] = statuses.get(status, 0) + 1
            if sent_at[i] >= start_at:
                latencies.append(done_at - sent_at[i])
            nxt = (sent_at[i] + interval) if interval else done_at
            heapq.heappush(due, (max(nxt, done_at), i))
    for sock in socks:
        sock.close()
    flat = sorted(latencies)
    return {"count": len(flat), "seconds": seconds, "statuses": statuses, "reconnects": reconnects,
            "p50_ms": _pct(flat, 50) * 1e3, "p99_ms": _pct(flat, 99) * 1e3,
            "max_ms": (flat[-1] if flat else 0) * 1e3}


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(pct / 100 * (len(values) - 1))))]


def _run_client(mode: str, **kwargs) -> dict:
    """Run a client in a separate process so it does not share the server's interpreter."""
    done = subprocess.run([sys.executable, __file__, "--client", mode, json.dumps(kwargs)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"client {mode} failed:\n{done.stderr}")
    return json.loads(done.stdout)


# ----------------------------------------------------------------------------- setup

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def build_feed(root: Path, target_gz_bytes: int) -> tuple[Path, int]:
    """Publish a synthetic RSS feed of about ``target_gz_bytes`` gzip bytes; its folder and items."""
    import base64

    from feedgen.core.config import load_config
    from feedgen.core.runs import new_run_record, parse_as_of, write_run
    from feedgen.generator.parts import write_manifest, write_part
    from feedgen.jobs.publish import publish_run

    config = load_config(None, root=str(root), environ={})
    folder = root / "runs" / RUN_ID / "feeds" / FEED_ID
    rng = random.Random(42)
    parts, size, items, n = [], 0, 0, 0
    while size < target_gz_bytes:
        # random descriptions keep the gzip size close to the text size, as real catalog text
        rows = [
            f"<item><g:id>{items + i}</g:id><title>Offer {items + i}</title>"
            f"<description>{base64.b64encode(rng.randbytes(1200)).decode()}</description>"
            f"<g:price>{rng.randint(100, 99999) / 100:.2f} PLN</g:price></item>\n"
            for i in range(2000)
        ]
        part = write_part(folder, f"part-{n:05d}.xml.gz", "".join(rows).encode(), len(rows))
        parts.append(part)
        size += part.bytes
        items += len(rows)
        n += 1
    header = ('<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
              'xmlns:g="http://base.google.com/ns/1.0"><channel><title>bench</title>\n')
    write_manifest(folder, definition_id=FEED_ID, kind="feed", run_id=RUN_ID,
                   as_of="2026-01-01T00:00:00Z", template="google_merchant_rss", fmt="xml",
                   header=header, footer="</channel></rss>\n", parts=parts)
    record = new_run_record(RUN_ID, parse_as_of("2026-01-01T00:00:00Z"), "local[1]", status="generating")
    record["definitions"] = {FEED_ID: {"kind": "feed", "items": items}}
    write_run(str(root), record)
    publish_run(config, RUN_ID)
    return folder, items


def start_feedgen(tmp: Path, root: Path, port: int, workers: int, threads: int) -> subprocess.Popen:
    import yaml

    cfg = tmp / "serve.yaml"
    cfg.write_text(yaml.safe_dump({
        "root": str(root),
        "server": {"tokens": {FEED_ID: hashlib.sha256(TOKEN.encode()).hexdigest()},
                   "workers": workers, "threads": threads},
    }))
    exe = Path(sys.executable).parent / "feedgen"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "feedgen.jobs.cli"]
    proc = subprocess.Popen([*cmd, "serve", "--config", str(cfg), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for_port(port)
    return proc


_NOOP_APP = """def app(environ, start_response):
    start_response("304 NOT MODIFIED", [("ETag", '"floor"'), ("Cache-Control", "private, no-cache")])
    return []
"""


def start_gunicorn_noop(tmp: Path, port: int, workers: int, threads: int) -> subprocess.Popen:
    """The floor: gunicorn, as ``feedgen serve`` runs it, with an app that only answers 304."""
    folder = tmp / "noop"
    folder.mkdir()
    (folder / "noop_app.py").write_text(_NOOP_APP)
    exe = Path(sys.executable).parent / "gunicorn"
    proc = subprocess.Popen([str(exe), "--workers", str(workers), "--threads", str(threads),
                             "--worker-class", "gthread", "--bind", f"127.0.0.1:{port}",
                             "--chdir", str(folder), "--log-level", "warning", "noop_app:app"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for_port(port)
    return proc


def start_nginx(tmp: Path, static: Path, port: int, workers: int) -> subprocess.Popen:
    from feedgen.jobs.deploy import start_nginx as run_nginx

    http = f"""    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    types {{ application/gzip gz; }}
    server {{
        listen 127.0.0.1:{port};
        root {static};
        etag on;
    }}"""
    return run_nginx(tmp / "nginx", http, port, workers=workers)


def _stop(proc: subprocess.Popen) -> None:
    from feedgen.jobs.deploy import stop_process

    stop_process(proc)


def _etag(url: str, headers: dict[str, str]) -> str:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("HEAD", parts.path, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.getheader("ETag")


# ----------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="10 MB feed, shorter latency runs")
    parser.add_argument("--workers", type=int, default=None,
                        help="gunicorn workers (default: config server.workers)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per gunicorn worker (default: config server.threads)")
    parser.add_argument("--nginx-workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10.0,
                        help="revalidations per second per client in the paced run")
    args = parser.parse_args()
    from feedgen.core.config import DEFAULTS

    args.workers = args.workers or DEFAULTS["server"]["workers"]
    args.threads = args.threads or DEFAULTS["server"]["threads"]
    target = (10 if args.small else 100) * 1_000_000
    rounds = 3 if args.small else 5
    seconds = 5.0 if args.small else 10.0

    tmp = Path(tempfile.mkdtemp(prefix="feedgen-bench-serve-"))
    os.chmod(tmp, 0o755)  # nginx workers must reach the static file
    procs: list[subprocess.Popen] = []
    try:
        t0 = time.perf_counter()
        root = tmp / "root"
        from feedgen.generator.parts import assemble

        folder, items = build_feed(root, target)
        static = tmp / "static"
        static.mkdir()
        whole = assemble(folder, compressed=True)
        (static / f"{FEED_ID}.xml.gz").write_bytes(whole)
        want = hashlib.sha256(whole).hexdigest()
        del whole
        print(f"feed: {items} items, {(static / f'{FEED_ID}.xml.gz').stat().st_size / 1e6:.1f} MB gzip "
              f"in {len(list(folder.glob('part-*')))} parts (built in {time.perf_counter() - t0:.1f}s)")

        fg_port, ng_port, noop_port = _free_port(), _free_port(), _free_port()
        procs.append(start_feedgen(tmp, root, fg_port, args.workers, args.threads))
        procs.append(start_nginx(tmp, static, ng_port, args.nginx_workers))
        procs.append(start_gunicorn_noop(tmp, noop_port, args.workers, args.threads))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        fg_url = f"http://127.0.0.1:{fg_port}/feeds/{FEED_ID}.xml.gz"
        ng_url = f"http://127.0.0.1:{ng_port}/{FEED_ID}.xml.gz"
        for name, url, hdrs in (("feedgen", fg_url, auth), ("nginx", ng_url, {})):
            got = _run_client("digest", url=url, headers=hdrs)
            if got != {"status": 200, "sha256": want}:
                raise SystemExit(f"{name} served different bytes: {got}")
        print("both servers send identical bytes (sha256 checked)")

        tput: dict[str, list[float]] = {"feedgen": [], "nginx": []}
        for _ in range(rounds):
            for name, url, hdrs in (("feedgen", fg_url, auth), ("nginx", ng_url, {})):
                out = _run_client("download", url=url, headers=hdrs, repeat=2)
                tput[name].extend(r["bytes"] / r["seconds"] / 1e6 for r in out["runs"])
        fg_mbs, ng_mbs = statistics.median(tput["feedgen"]), statistics.median(tput["nginx"])
        identity = _run_client("download", url=f"http://127.0.0.1:{fg_port}/feeds/{FEED_ID}",
                               headers={**auth, "Accept-Encoding": "identity"}, repeat=1)["runs"][0]

        fg_tag = _etag(fg_url, auth)
        ng_tag = _etag(ng_url, {})
        paced = {
            "feedgen": _run_client("revalidate", url=fg_url, headers={**auth, "If-None-Match": fg_tag},
                                   clients=args.clients, seconds=seconds, rate=args.rate),
            "nginx": _run_client("revalidate", url=ng_url, headers={"If-None-Match": ng_tag},
                                 clients=args.clients, seconds=seconds, rate=args.rate),
            "gunicorn no-op app": _run_client("revalidate", url=f"http://127.0.0.1:{noop_port}/feeds/x",
                                              headers={"If-None-Match": '"floor"'},
                                              clients=args.clients, seconds=seconds, rate=args.rate),
        }
        closed = _run_client("revalidate", url=fg_url, headers={**auth, "If-None-Match": fg_tag},
                             clients=args.clients, seconds=seconds / 2, rate=0)
        single = {
            "feedgen": _run_client("revalidate", url=fg_url, headers={**auth, "If-None-Match": fg_tag},
                                   clients=1, seconds=2.0, rate=0),
            "nginx": _run_client("revalidate", url=ng_url, headers={"If-None-Match": ng_tag},
                                 clients=1, seconds=2.0, rate=0),
        }
        for name, res in [*paced.items(), ("feedgen closed-loop", closed), *single.items()]:
            if set(res["statuses"]) != {"304"}:
                raise SystemExit(f"{name}: expected only 304 answers, got {res['statuses']}")

        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (1 min) "
              "(other work on the machine inflates tail latencies of both servers)")
        client = _run_client("download", url=ng_url, headers={}, repeat=1)["runs"][0]["client"]
        print(f"\nfull download of the gzip feed ({client} client), median of {rounds * 2} per server "
              f"(feedgen {args.workers} workers x {args.threads} threads, nginx {args.nginx_workers} workers)")
        print(f"  feedgen (gunicorn)   {fg_mbs:8.0f} MB/s")
        print(f"  nginx (static file)  {ng_mbs:8.0f} MB/s")
        ratio = fg_mbs / ng_mbs
        print(f"  ratio feedgen/nginx  {ratio:8.2f}   target >= 0.50: {'MET' if ratio >= 0.5 else 'MISSED'}")
        print(f"  (feedgen decompressing while streaming: "
              f"{identity['bytes'] / identity['seconds'] / 1e6:.0f} MB/s of XML)")
        print(f"\n304 revalidation (If-None-Match), {args.clients} keep-alive clients in a separate process")
        for name, res in paced.items():
            print(f"  {name:18s} paced {args.rate:g}/s per client: {res['count'] / res['seconds']:6.0f} req/s  "
                  f"p50 {res['p50_ms']:6.2f} ms  p99 {res['p99_ms']:6.2f} ms  max {res['max_ms']:6.1f} ms")
        fg, floor = paced["feedgen"], paced["gunicorn no-op app"]
        print(f"  ratio p99 feedgen/nginx {fg['p99_ms'] / paced['nginx']['p99_ms']:6.1f}   "
              f"feedgen/gunicorn no-op {fg['p99_ms'] / floor['p99_ms']:4.2f}   "
              f"target p99 < 5 ms: {'MET' if fg['p99_ms'] < 5 else 'MISSED'}")
        print("  (the no-op app is gunicorn with the same workers and threads answering 304 without any "
              "work: the floor feedgen's 304s stand on)")
        for name, res in single.items():
            print(f"  {name:8s} one client, back to back:  p50 {res['p50_ms']:6.2f} ms  p99 {res['p99_ms']:6.2f} ms "
                  f"({res['count'] / res['seconds']:.0f} req/s)")
        print(f"  feedgen closed loop (saturation): {closed['count'] / closed['seconds']:6.0f} req/s  "
              f"p50 {closed['p50_ms']:6.2f} ms  p99 {closed['p99_ms']:6.2f} ms")
    finally:
        for proc in procs:
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--client":
        kwargs = json.loads(sys.argv[3])
        fn = {"download": client_download, "digest": client_digest,
              "revalidate": client_revalidate}[sys.argv[2]]
        print(json.dumps(fn(**kwargs)))
    else:
        sys.path.insert(0, str(REPO))
        main()
