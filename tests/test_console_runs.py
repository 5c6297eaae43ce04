"""The operators' console in a real browser on a real held run, and alerts to a real HTTP receiver.

One small held run is built once for the module the way the demo builds it: a run on clean
sample data is published, then a run on the "broken export" (half the offers lost their
image) is held by the gates. A copy of the held run (its run.json, deltas and snapshots under
another id) is there to be rejected. The console runs on the same root.
"""

from __future__ import annotations

import getpass
import json
import re
import shutil
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from feedgen.core.config import load_config
from feedgen.core.runs import parse_as_of, read_run, write_run
from feedgen.jobs import alerts
from feedgen.jobs.pipeline import run_pipeline
from tests.browser_support import login, new_page, screenshot
from tests.console_support import start_console
from tests.pipeline_support import DAY1, DAY2, feedgen, pointer_runs, write_sample

DOCS = Path(__file__).resolve().parent.parent / "docs"
OFFERS = 300  # fewer saves no time (Spark's per-job cost dominates) and ties the top categories
FEED = "google-all"
DEFINITIONS = f"""\
feeds:
  - id: {FEED}
    template: google_merchant_rss
    where:
      all:
        - {{field: availability, eq: in_stock}}
    delivery: {{events: true, destinations: [google_merchant_api]}}
    gates: {{max_share_removed: 0.2, min_base_items: 10}}
"""


class Receiver:
    """An HTTP receiver on a loopback port: answers 500 to the first ``fail`` POSTs of each path."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.failures: dict[str, int] = {}
        self.tries: Counter = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.tries[self.path] += 1
                if outer.tries[self.path] <= outer.failures.get(self.path, 0):
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def received(self, path: str) -> list[dict]:
        return [body for p, body in self.posts if p == path]


def _config(root: Path, receiver: Receiver, **extra: dict) -> object:
    config = load_config(root=str(root), environ={})
    config.data["definitions"] = str(root / "definitions")
    config.data["spark"].update({"master": "local[2]", "shuffle_partitions": 2, "driver_memory": "1g"})
    config.data["console"]["public_url"] = "http://console.example"
    config.data["alerts"].update({"backoff_seconds": 0.05, "retries": 2, "timeout_seconds": 5, "webhooks": [
        {"url": receiver.url("/ok"), "events": ["held", "failed"]},
        {"url": receiver.url("/flaky"), "events": ["held"]},
        {"url": receiver.url("/down"), "events": ["held"]}]})
    for section, values in extra.items():
        config.data[section].update(values)
    return config


@pytest.fixture(scope="module")
def site(tmp_path_factory, spark):
    root = tmp_path_factory.mktemp("console-runs")
    receiver = Receiver()
    receiver.failures = {"/flaky": 2, "/down": 1000}
    console = start_console(root)
    (root / "definitions").mkdir()
    (root / "definitions" / "feeds.yaml").write_text(DEFINITIONS, encoding="utf-8")
    config = _config(root, receiver)
    runs = []
    for variant, as_of, run_id in ((0, DAY1, "20261102T060000Z-clean"), (2, DAY2, "20261103T060000Z-broken")):
        write_sample(root, variant, offers=OFFERS, customers=100)
        runs.append(run_pipeline(config, run_id=run_id, as_of=parse_as_of(as_of))["run_id"])
    assert alerts.wait(30)
    yield {"console": console, "root": root, "receiver": receiver, "published": runs[0], "held": runs[1],
           "to_reject": _copy_run(root, runs[1], "20261103T070000Z-rejected"), "config": config}
    console.stop()
    receiver.server.shutdown()


def _copy_run(root: Path, run_id: str, copy_id: str) -> str:
    """The same held run under another id: its run.json (with the new id), deltas and snapshots."""
    shutil.copytree(root / "runs" / run_id, root / "runs" / copy_id)
    record = read_run(str(root), copy_id)
    record["run_id"] = copy_id
    write_run(str(root), record)
    return copy_id


def _removed_by_category(root: Path, held: str) -> tuple[int, str]:
    """Independently of the console: the removed offers and their most common category."""
    import pyarrow.dataset as ds

    delta = ds.dataset(str(root / "runs" / held / "deltas" / FEED), format="parquet").to_table().to_pylist()
    removed = [r["key"] for r in delta if r["op"] == "remove"]
    path = read_run(str(root), held)["aggregates"]["offer"]["path"]
    rows = ds.dataset(path, format="parquet").to_table(filter=ds.field("offer_id").isin(removed)).to_pylist()
    return len(removed), Counter(r["category"]["top"] for r in rows).most_common(1)[0][0]


def test_a_held_run_shows_its_evidence_and_a_viewer_cannot_decide(site, browser_page):
    console, held = site["console"], site["held"]
    assert read_run(str(site["root"]), held)["status"] == "held"
    removed, top_category = _removed_by_category(site["root"], held)
    page = login(browser_page, console, "viewer", f"/runs/{held}/review")
    section = page.locator(f"#breach-{FEED}")
    assert "share_removed" in section.inner_text()
    first = section.locator("table[data-breakdown=category] tbody tr").first.inner_text()
    assert first.split("\t")[0].strip() == top_category
    assert f"image_link on {removed} of {removed}" in section.locator(".changed-field").first.inner_text()
    assert section.locator("table.samples a[href^='/inspect/offer/']").count() > 0
    assert "google_merchant_api" in page.locator("table.events").inner_text()
    assert page.get_by_role("button", name=re.compile("Approve")).count() == 0
    r = console.call("POST", f"/runs/{held}/approve", "viewer", json={"reason": "looks fine"})
    assert r.status_code == 403 and "runs decide" in r.json()["error"]


def test_the_diagnostics_page_lists_the_reasons_with_the_counts_runs_show_reports(site, browser_page):
    console, held, root = site["console"], site["held"], site["root"]
    shown = feedgen("runs", "show", held, "--root", str(root))
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.strip().startswith(f"{FEED}:"))
    reported = {m[0]: int(m[1]) for m in re.findall(r"(\w+) (\d+)", line.split("excluded:")[1])}
    assert reported.get("missing_image_link"), line
    page = login(browser_page, console, "viewer", f"/definitions/{FEED}/diagnostics?run={held}")
    rows = page.locator("table.reasons tbody tr")
    listed = {rows.nth(i).get_attribute("data-reason"): int(rows.nth(i).locator("td").nth(2).inner_text().replace(",", ""))
              for i in range(rows.count())}
    assert listed == reported
    samples = page.locator("table.samples").inner_text()
    assert "image_link = (empty)" in samples and "<g:" not in samples
    screenshot(page, DOCS / "console-diagnostics.png", full_page=False)


def test_an_approver_approves_with_a_reason_and_sees_the_pointers_switch_and_the_audit_entry(site, browser_page):
    console, held, root = site["console"], site["held"], site["root"]
    assert pointer_runs(root)[FEED] == site["published"]
    page = login(browser_page, console, "approver", f"/runs/{held}/review")
    screenshot(page, DOCS / "console-review.png", full_page=False)
    page.get_by_label(re.compile("Reason")).fill("images come back tomorrow; the feed stays valid")
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("Approve")).click()
    assert page.url.endswith(f"/runs/{held}?decided=approve")
    assert "approved by approver" in page.get_by_role("status").first.inner_text()
    assert pointer_runs(root)[FEED] == held
    page.goto(console.server.url(f"/audit?object_id={held}"))
    audit = page.locator("table.audit").inner_text()
    assert "run.approve" in audit and "approver" in audit and "images come back tomorrow" in audit
    again = console.call("POST", f"/runs/{held}/approve", "admin", json={"reason": "twice"})
    assert again.status_code == 409 and "already approved by approver" in again.json()["error"]


def test_two_approvers_at_the_same_moment_get_one_decision_and_one_refusal(site):
    console = site["console"]
    run_id = console.held_run("race")
    results: list[int] = []
    go = threading.Barrier(2)

    def decide(action: str) -> None:
        go.wait()
        results.append(console.call("POST", f"/runs/{run_id}/{action}", "approver",
                                    json={"reason": action}).status_code)

    threads = [threading.Thread(target=decide, args=(a,)) for a in ("approve", "reject")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [200, 409]


def test_held_and_failed_runs_alert_once_retrying_and_dead_lettering(site, tmp_path):
    receiver, held, root = site["receiver"], site["held"], site["root"]
    ok = receiver.received("/ok")
    assert [b["feedgen"]["event"] for b in ok] == ["held"] and ok[0]["feedgen"]["run_id"] == held
    assert ok[0]["text"].endswith(f"http://console.example/runs/{held}/review") and ok[0]["blocks"]
    flaky = receiver.received("/flaky")
    assert len(flaky) == 1 and receiver.tries["/flaky"] == 3
    assert receiver.tries["/down"] == 3
    dead = [json.loads(x) for x in (root / "runs" / held / alerts.DEAD_LETTER).read_text().splitlines()]
    assert [(d["event"], d["attempts"]) for d in dead] == [("held", 3)]
    entries = site["console"].call("GET", f"/audit?object_id={held}", "viewer").json()["entries"]
    assert Counter(e["action"] for e in entries if e["action"].startswith("run.alert")) == \
        {"run.alert_delivered": 2, "run.alert_dead_letter": 1}

    config = _config(root, receiver, aggregate={"quarantine_tolerance": 0.0})
    with pytest.raises(Exception, match="quarantine"):
        run_pipeline(config, run_id="20261104T060000Z-failed", as_of=parse_as_of("2026-11-04T06:00:00Z"))
    assert alerts.wait(30)
    assert read_run(str(root), "20261104T060000Z-failed")["status"] == "failed"
    failed = [b for b in receiver.received("/ok") if b["feedgen"]["event"] == "failed"]
    assert len(failed) == 1 and "aggregate" in failed[0]["text"]


def test_the_runs_page_and_the_run_page_say_who_started_each_run_and_its_totals(site, browser_page):
    console, held = site["console"], site["held"]
    me = f"os:{getpass.getuser()}"  # run_pipeline from this process, as `feedgen run` from a shell
    record = read_run(str(site["root"]), held)
    assert record["started_by"] == me
    items, events = record["stages"]["generate"]["items"], record["stages"]["generate"]["events"]
    page = login(browser_page, console, "viewer", "/runs")
    for run_id in (site["published"], held):
        assert page.locator(f"tr[data-run='{run_id}'] .started-by").inner_text() == me
    cells = page.locator(f"tr[data-run='{held}'] td.num")
    # (approved by an earlier test, it also says how many were sent)
    assert [cells.nth(0).inner_text(), cells.nth(1).inner_text().split("\n")[0]] == [f"{items:,}", f"{events:,}"]
    page.goto(console.server.url(f"/runs/{held}"))
    assert page.locator("main .started-by").inner_text() == me
    assert f"{items:,} items · {events:,} events" in page.locator("main > p").nth(1).inner_text()
    shown = page.locator(f"#def-{FEED} td.num").first.inner_text().split()
    assert shown[0] == f"{record['definitions'][FEED]['items']:,}" and shown[-1] == \
        f"{record['definitions'][FEED]['delta']['base_items']:,}"


def test_a_rejected_run_keeps_its_evidence_and_says_who_rejected_it_and_why(site, browser_page, chromium_browser,
                                                                             tmp_path):
    console, root, run_id = site["console"], site["root"], site["to_reject"]
    removed, top_category = _removed_by_category(root, run_id)
    page = login(browser_page, console, "approver", f"/runs/{run_id}/review")
    page.get_by_label(re.compile("Reason")).fill("half the images are gone: the export is broken")
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("Reject")).click()
    assert read_run(str(root), run_id)["status"] == "rejected"
    assert not (root / "runs" / run_id / "deltas").exists()  # the run's files are discarded

    auditor = login(new_page(chromium_browser), console, "viewer", f"/runs/{run_id}/review")
    try:
        assert auditor.get_by_role("heading", level=1).inner_text().startswith("Rejected run")
        decided = auditor.locator(".decided").inner_text()
        assert "Rejected by approver" in decided and "because: “half the images are gone" in decided
        assert "the evidence below was kept when it was rejected" in decided
        section = auditor.locator(f"#breach-{FEED}")
        first = section.locator("table[data-breakdown=category] tbody tr").first.inner_text()
        assert first.split("\t")[0].strip() == top_category
        assert f"image_link on {removed} of {removed}" in section.locator(".changed-field").first.inner_text()
        assert section.locator("table.samples a[href^='/inspect/offer/']").count() > 0
        assert auditor.get_by_role("button", name=re.compile("Approve|Reject")).count() == 0
    finally:
        screenshot(auditor, tmp_path / "auditor.png")
        auditor.context.close()
