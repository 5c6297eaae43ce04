"""The definitions registry at scale: a run's read-and-pin of the published set, and the HTTP API.

    .venv/bin/python benchmarks/registry.py [--definitions 5000] [--versions 20] [--small]
                                            [--db sqlite,postgresql] [--clients 8] [--ops 100]

For each database (SQLite under a temporary root; PostgreSQL started like the tests do,
Debian's initdb + pg_ctl on a loopback port, ``tests/pg_support.py``):

  seed   D definitions (one in five a segment, the others feeds) with V versions each: the
         last published, the others archived. Written in bulk straight into the tables, as
         migration 0002 leaves a registry (texts of live versions, names of all), and not yet
         known valid (the figures below are of reading, not of a day of edits).
  pin    what a run does at its start with ``definitions: registry`` (feedgen.jobs.pinning),
         best of --repeat. "before": the registry's first way (every published version read as
         ORM objects, the set dumped to YAML, the whole set validated). "now": the first run
         after the seed (validates the whole set and records it), then runs that each follow a
         publish (the set stays known valid): open (schema check), read the published set and
         the stored export texts (one query), check the set's digest and the validator's
         fingerprint, write ``runs/<run_id>/definitions.yaml``, build the definitions the run
         uses. The figure the issue bounds (under 2 % of a 1M-offer run's generate stage) is
         set against two references, both measured on this kind of VM: the generate stage of
         the shipped examples at 1M offers (145 s offers + 25 s customers, issue #20), and
         benchmarks/generate.py's single pass over 1M offers (about 11 s).
  http   ``feedgen console`` (gunicorn) on a loopback port, and --clients concurrent clients
         (threads, one keep-alive connection each, a publisher's Bearer token) doing --ops
         rounds of: GET a random definition, GET a random page of 50, PUT a new draft of a
         definition of their own (based on its latest version), POST publish of that draft.
         p50 / p99 per operation, and the errors (a 409 would be a lost race; none expected,
         each client edits its own definitions). Runs only when ``feedgen.console.app`` imports.

Times are wall seconds or milliseconds on a machine that may be shared; CPU is not isolated.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GENERATE_1M = {"the examples' generate stage at 1M offers (145 s + 25 s)": 170.0,
               "benchmarks/generate.py's single pass at 1M offers (~11 s)": 11.0}
PUBLISHER = ("bench-publisher", "publisher")


def body_of(i: int, version: int) -> tuple[str, dict]:
    """(kind, body) of definition ``i`` at ``version``: every version differs from the previous."""
    if i % 5 == 4:
        return "segment", {"id": f"seg-{i:05d}", "description": f"benchmark segment {i}",
                           "where": {"all": [{"history": "orders", "count": {"gte": 1 + version % 7}},
                                             {"field": "country", "eq": "PL"}]},
                           "exports": ["ids_csv"]}
    return "feed", {"id": f"feed-{i:05d}", "description": f"benchmark feed {i}", "template": "generic_csv",
                    "options": {"fields": ["offer_id", "title", "price.amount"]},
                    "where": {"all": [{"field": "seller_id", "eq": f"s-{i % 1000}"},
                                      {"field": "price.amount", "lt": 10 + version},
                                      {"field": "stock", "gt": 0}]}}


def seed(url: str, definitions: int, versions: int) -> float:
    """Bulk-insert the definitions and their versions; returns the seconds it took."""
    from sqlalchemy import insert, select, update

    from feedgen.console.registry import Registry
    from feedgen.console.registry.models import (
        ARCHIVED,
        PUBLISHED,
        DefinitionRow,
        RegistryState,
    )
    from feedgen.console.registry.service import body_digest, item_digest, set_digest
    from feedgen.console.registry.yamlio import dump_definition

    t0 = time.monotonic()
    registry = Registry.open(url)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        with registry.db.write() as s:
            s.execute(insert(DefinitionRow), [
                {"definition_id": body_of(i, 0)[1]["id"], "kind": body_of(i, 0)[0], "head": versions,
                 "draft_number": None, "published_number": versions, "created_at": now, "created_by": "bench",
                 "updated_at": now, "updated_by": "bench"} for i in range(definitions)])
            pks = dict(s.execute(select(DefinitionRow.definition_id, DefinitionRow.id)).all())
            rows, items = [], []
            for i in range(definitions):
                for number in range(1, versions + 1):
                    kind, body = body_of(i, number)
                    last = number == versions
                    rows.append({"definition_pk": pks[body["id"]], "number": number,
                                 "state": PUBLISHED if last else ARCHIVED, "body": body,
                                 "body_sha256": body_digest(body), "expansions": [body["id"]], "references": [],
                                 "author": "bench", "created_at": now, "message": "seed",
                                 "base_number": number - 1 or None,
                                 # as migration 0002 leaves them: texts of live versions only
                                 "export_text": dump_definition(kind, body).decode() if last else None})
                    if last:
                        items.append(item_digest(kind, body["id"], rows[-1]["body_sha256"]))
                if len(rows) >= 5000:
                    _insert_versions(s, rows)
                    rows = []
            if rows:
                _insert_versions(s, rows)
            # seeded, not validated: the first run validates the whole set (and remembers it)
            s.execute(update(RegistryState).values(published_digest=set_digest(items), valid_digest=None))
    finally:
        registry.close()
    return time.monotonic() - t0


def _insert_versions(s, rows: list[dict]) -> None:
    from sqlalchemy import insert, select

    from feedgen.console.registry.models import EXPANDS, VersionNameRow, VersionRow

    s.execute(insert(VersionRow), rows)
    pks = s.execute(select(VersionRow.id, VersionRow.definition_pk, VersionRow.number)
                    .where(VersionRow.definition_pk.in_({r["definition_pk"] for r in rows}))).all()
    by_key = {(d, n): pk for pk, d, n in pks}
    s.execute(insert(VersionNameRow), [{"version_pk": by_key[(r["definition_pk"], r["number"])], "role": EXPANDS,
                                        "name": r["expansions"][0]} for r in rows])


def measure_pin(url: str, root: Path, repeat: int, versions: int) -> dict[str, dict[str, float]]:
    """Seconds of each step of a run's read-and-pin, best of ``repeat``: ``before``, the way the
    first version of the registry did it (every published version read as ORM objects, the set
    dumped to YAML, the whole set validated by the loader), and ``now``, as jobs/pinning.py does it
    for a run after a publish (the stored export texts joined; the set is known valid)."""
    from feedgen.console.registry import Actor, Registry, registry_for
    from feedgen.console.registry.yamlio import PLURAL, dump_document
    from feedgen.core.config import load_config
    from feedgen.generator.validate_body import validator_fingerprint
    from feedgen.jobs.pinning import _load_labelled, pin, read_source

    config = load_config(root=str(root), environ={})
    config.data["registry"]["url"] = url
    config.data["definitions"] = "registry"
    before: dict[str, float] = {}
    for n in range(repeat):
        steps: dict[str, float] = {}
        t = time.monotonic()
        registry = Registry.open(url)
        steps["open (schema check)"] = time.monotonic() - t
        t = time.monotonic()
        published = registry.published()
        steps["read the published set (ORM)"] = time.monotonic() - t
        registry.close()
        t = time.monotonic()
        document: dict[str, list] = {}
        for v in published:
            document.setdefault(PLURAL[v.kind], []).append(v.body)
        (root / f"before-{n}.yaml").write_bytes(dump_document(document))
        steps["dump + write definitions.yaml"] = time.monotonic() - t
        t = time.monotonic()
        _load_labelled([(f"registry:{v.definition_id} v{v.number}", v.kind, v.body) for v in published], None)
        steps["build + validate the whole set"] = time.monotonic() - t
        _keep_best(before, steps)
    # the first run after the seed: nothing vouched for the set yet, so it validates it and remembers
    t = time.monotonic()
    pin(root, {"run_id": "bench-first"}, read_source(config, "registry"))
    first = time.monotonic() - t
    now: dict[str, float] = {}
    cpu_seconds: list[float] = []
    admin = Actor("os:bench", "admin")
    for n in range(repeat):
        registry = Registry.open(url)
        try:  # a marketer publishes an edit between two runs
            _, body = body_of(0, versions + 1 + n)
            draft = registry.save_draft(admin, "feed", body, base_version=registry.definition(body["id"]).latest_version)
            registry.publish(admin, body["id"], draft.number)
        finally:
            registry.close()
        steps = {}
        t = time.monotonic()
        registry = registry_for(config)
        steps["open (schema check)"] = time.monotonic() - t
        t = time.monotonic()
        published_set = registry.published_set()
        steps["read the published set + texts"] = time.monotonic() - t
        registry.close()
        t = time.monotonic()
        known = published_set.valid_fingerprint == validator_fingerprint(None)
        steps["validity: digest + validator fingerprint"] = time.monotonic() - t
        t = time.monotonic()
        (root / f"now-{n}.yaml").write_bytes(published_set.text)
        steps["write definitions.yaml"] = time.monotonic() - t
        t = time.monotonic()
        definitions = _load_labelled([(f"registry:{d} v{num}", k, b) for d, k, num, b in published_set.versions],
                                     None, validate=not known)
        steps["build the definitions" + ("" if known else " + validate (NOT known valid)")] = time.monotonic() - t
        t, cpu = time.monotonic(), time.process_time()
        snapshot = read_source(config, "registry")
        pin(root, {"run_id": f"bench-{n}"}, snapshot)
        steps["total: read_source + pin"] = time.monotonic() - t
        cpu_seconds.append(time.process_time() - cpu)
        _keep_best(now, steps)
    now["first run after the seed (validates, remembers)"] = first
    info = {"definitions.yaml MB": len(snapshot.text) / 1e6, "definitions (after for_each)": len(definitions),
            "cpu": min(cpu_seconds)}
    return {"before": before, "now": now, "info": info}


def _keep_best(best: dict[str, float], steps: dict[str, float]) -> None:
    for key, value in steps.items():
        best[key] = min(best.get(key, value), value)


# -- HTTP ----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_console(url: str, root: Path, clients: int) -> tuple[subprocess.Popen, int]:
    import yaml

    port = _free_port()
    config = root / "console.yaml"
    config.write_text(yaml.safe_dump({"root": str(root), "registry": {"url": url}}), encoding="utf-8")
    workers = max(2, os.cpu_count() or 2)
    proc = subprocess.Popen([sys.executable, "-m", "feedgen.jobs.cli", "console", "--config", str(config),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                             "--threads", str(max(4, clients // workers + 1))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"feedgen console exited ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/v1/openapi.json")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.3)
    stop_console(proc)
    raise RuntimeError("feedgen console did not answer within 120 s")


def stop_console(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def publisher_token(url: str) -> str:
    from feedgen.console.registry import Actor, Registry

    registry = Registry.open(url)
    try:
        admin = Actor("os:bench", "admin")
        registry.accounts.add_user(admin, PUBLISHER[0], PUBLISHER[1], "bench-password-" + os.urandom(4).hex())
        return registry.accounts.issue_token(admin, PUBLISHER[0])
    finally:
        registry.close()


class Client(threading.Thread):
    """One API client: its own connection, its own definitions to edit, latencies per operation."""

    def __init__(self, port: int, token: str, mine: list[int], definitions: int, versions: int, ops: int,
                 seed_: int) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.mine, self.definitions, self.ops = mine, definitions, ops
        self.head = {i: versions for i in mine}
        self.rng = random.Random(seed_)
        self.times: dict[str, list[float]] = {"get": [], "list": [], "save draft": [], "publish": []}
        self.errors: list[str] = []

    def call(self, op: str, method: str, path: str, payload: dict | None = None) -> dict | None:
        data = json.dumps(payload).encode() if payload is not None else None
        t = time.perf_counter()
        self.conn.request(method, path, body=data, headers=self.headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        self.times[op].append(time.perf_counter() - t)
        if resp.status >= 300:
            self.errors.append(f"{op} {path}: HTTP {resp.status} {raw[:200]!r}")
            return None
        return json.loads(raw)

    def run(self) -> None:
        for n in range(self.ops):
            other = self.rng.randrange(self.definitions)
            self.call("get", "GET", f"/api/v1/definitions/{body_of(other, 0)[1]['id']}")
            page = self.rng.randrange(max(1, self.definitions // 50))
            self.call("list", "GET", f"/api/v1/definitions?limit=50&offset={page * 50}")
            i = self.mine[n % len(self.mine)]
            _, body = body_of(i, self.head[i] + 1)
            saved = self.call("save draft", "PUT", f"/api/v1/definitions/{body['id']}/draft",
                              {"body": body, "base_version": self.head[i], "message": "bench"})
            if saved is None:
                continue
            self.head[i] = saved["number"]
            self.call("publish", "POST", f"/api/v1/definitions/{body['id']}/publish",
                      {"version": saved["number"], "message": "bench"})


def measure_http(url: str, root: Path, definitions: int, versions: int, clients: int, ops: int) -> dict:
    token = publisher_token(url)
    proc, port = start_console(url, root, clients)
    try:
        ids = list(range(definitions))
        random.Random(1).shuffle(ids)
        per = max(1, min(50, definitions // clients))
        workers = [Client(port, token, ids[c * per:(c + 1) * per], definitions, versions, ops, c)
                   for c in range(clients)]
        t = time.monotonic()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wall = time.monotonic() - t
    finally:
        stop_console(proc)
    out: dict = {"wall": wall, "errors": [e for w in workers for e in w.errors]}
    for op in ("get", "list", "save draft", "publish"):
        samples = sorted(x for w in workers for x in w.times[op])
        if samples:
            out[op] = {"n": len(samples), "p50": statistics.median(samples) * 1000,
                       "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000}
    return out


def console_importable() -> str | None:
    """None when the console app is there, else why not."""
    try:
        from feedgen.console.app import create_app  # noqa: F401
    except Exception as err:  # any import problem means: no HTTP part
        return f"{type(err).__name__}: {err}"
    return None


# -- main ------------------------------------------------------------------------------------

def database(kind: str, work: Path):
    """(url, stop) for a fresh database of ``kind``."""
    if kind == "sqlite":
        return f"sqlite:///{work}/feedgen.db", lambda: None
    sys.path.insert(0, str(REPO))
    from tests.pg_support import PostgresServer

    server = PostgresServer().start()
    return server.url(), server.stop


def report_pin(kind: str, result: dict[str, dict[str, float]]) -> None:
    info = result["info"]
    print(f"  pin ({kind}): {int(info['definitions (after for_each)']):,} definitions, "
          f"definitions.yaml {info['definitions.yaml MB']:.2f} MB")
    for label, steps in (("before", result["before"]), ("now", result["now"])):
        print(f"   {label}:")
        for key, value in steps.items():
            print(f"    {key:<52} {value * 1000:9.1f} ms")
    before = sum(result["before"].values())
    now = result["now"]
    pin_only = sum(v for k, v in now.items() if k.startswith(("open", "read", "validity", "write")))
    print(f"    (the total's CPU time in this process: {info['cpu'] * 1000:.1f} ms; wall includes waiting "
          "for a shared CPU)")
    total = now["total: read_source + pin"]
    for label, seconds in GENERATE_1M.items():
        print(f"    vs {label}: before {before / seconds:.2%}; now {total / seconds:.2%} "
              f"(read + write + validity check alone {pin_only / seconds:.2%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--definitions", type=int, default=5000)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--small", action="store_true", help="500 definitions x 5 versions, 20 rounds per client")
    parser.add_argument("--db", default="sqlite,postgresql", help="databases to measure (sqlite,postgresql)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--ops", type=int, default=100, help="rounds (get, list, save, publish) per client")
    parser.add_argument("--repeat", type=int, default=3, help="pin runs per database (the best is shown)")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP API part")
    args = parser.parse_args()
    if args.small:
        args.definitions, args.versions, args.ops = 500, 5, 20
    why_not = "--no-http" if args.no_http else console_importable()
    print(f"registry benchmark: {args.definitions:,} definitions x {args.versions} versions; "
          f"HTTP: {'skipped (' + why_not + ')' if why_not else f'{args.clients} clients x {args.ops} rounds'}")
    for kind in [k.strip() for k in args.db.split(",") if k.strip()]:
        work = Path(tempfile.mkdtemp(prefix=f"feedgen-bench-registry-{kind}-"))
        url, stop = database(kind, work)
        try:
            print(f"{kind}: seeded in {seed(url, args.definitions, args.versions):.1f} s")
            report_pin(kind, measure_pin(url, work, args.repeat, args.versions))
            if not why_not:
                result = measure_http(url, work, args.definitions, args.versions, args.clients, args.ops)
                print(f"  http ({kind}, {args.clients} clients, {result['wall']:.1f} s):")
                for op in ("get", "list", "save draft", "publish"):
                    if op in result:
                        r = result[op]
                        print(f"    {op:<11} n={r['n']:<5} p50 {r['p50']:8.1f} ms   p99 {r['p99']:8.1f} ms")
                if result["errors"]:
                    print(f"    {len(result['errors'])} errors, e.g. {result['errors'][0]}")
        finally:
            stop()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
