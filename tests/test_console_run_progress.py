"""A run in progress in a real browser: the runs page and the run page show its stage and
follow it by themselves until it finishes, then stop refreshing.

The run is test data written the way the pipeline writes it (``write_run`` under the root's
lock, held as ``feedgen run`` holds it); the console polls nothing else.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from feedgen.core.runs import new_run_record, parse_as_of, root_lock, write_run
from feedgen.jobs.pipeline import STAGES
from tests.browser_support import login
from tests.console_support import start_console

REFRESH = 1  # seconds; console.refresh_seconds
WAIT_MS = 8_000  # a few refresh intervals on a loaded machine


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    live = start_console(tmp_path_factory.mktemp("progress"))
    live.config.data["console"]["refresh_seconds"] = REFRESH
    yield live
    live.stop()


def _advance(root: Path, record: dict, done: tuple[str, ...], status: str) -> dict:
    """What the pipeline writes when stages finish: their entries, timings and the run's status."""
    for name in done:
        record["stages"][name] = {"status": "done", "seconds": 1.5}
        record["timings"][name] = 1.5
    record["status"] = status
    write_run(root, record)
    return record


def _run(run_id: str) -> dict:
    record = new_run_record(run_id, parse_as_of("2026-11-02T06:00:00Z"), "local[2]")
    record["started_by"] = "schedule:1h"
    return record


def test_a_run_in_progress_shows_its_stage_and_the_pages_follow_it_until_it_finishes(console, browser_page):
    root = Path(console.config.root)
    killed = _advance(root, _run("20261102T050000Z-killed"), ("aggregate",), "generating")
    live = _run("20261102T060000Z-live")
    with root_lock(root, live["run_id"]):
        _advance(root, live, ("aggregate",), "generating")
        runs_page = login(browser_page, console, "viewer", "/runs")
        row = runs_page.locator(f"tr[data-run='{live['run_id']}']")
        assert "generate · 1/5 stages" in row.inner_text()
        assert row.locator("progress").get_attribute("value") == "1"
        assert runs_page.locator("body").get_attribute("data-refresh") == str(REFRESH)
        # no process runs the killed one: it says so and does not keep the page refreshing
        assert "interrupted before generate" in runs_page.locator(f"tr[data-run='{killed['run_id']}']").inner_text()

        run_page = runs_page.context.new_page()
        run_page.goto(console.server.url(f"/runs/{live['run_id']}"))
        progress = run_page.locator(".run-progress")
        assert "In progress: generate (1 of 5 stages done)" in progress.inner_text()

        _advance(root, live, ("generate", "gate"), "generating")
        expect(row).to_contain_text("publish · 3/5 stages", timeout=WAIT_MS)
        expect(progress).to_contain_text("In progress: publish (3 of 5 stages done)", timeout=WAIT_MS)

        _advance(root, live, STAGES, "emitted")
    for page, status in ((runs_page, row.locator(".status")), (run_page, run_page.locator("main .status").first)):
        expect(status).to_contain_text("emitted", timeout=WAIT_MS)
        assert page.locator("body").get_attribute("data-refresh") is None
        page.evaluate("window.stillHere = true")
    assert run_page.locator(".run-progress").count() == 0
    time.sleep(REFRESH * 2.5)  # a page that still refreshed would have reloaded by now
    for page in (runs_page, run_page):
        assert page.evaluate("window.stillHere === true"), page.url
    assert re.search(r"generate 1\.5 s", row.inner_text())
