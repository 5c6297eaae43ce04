"""The console's page skeleton in a real browser: sign in, the layout, sign out, errors as pages."""

from __future__ import annotations

import pytest

from tests.browser_support import login
from tests.console_support import start_console


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    live = start_console(tmp_path_factory.mktemp("pages"))
    yield live
    live.stop()


def test_an_anonymous_visitor_signs_in_and_lands_on_the_page_they_asked_for(console, browser_page):
    page = browser_page
    page.goto(console.server.url("/runs?status=held"))
    assert "/login" in page.url
    page.get_by_label("User name").fill("viewer")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    assert "unknown user or wrong password" in page.get_by_role("alert").inner_text()

    page.get_by_label("Password").fill("password-viewer")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/runs?status=held")
    assert page.locator("body").get_attribute("class") == "page-runs"
    assert page.get_by_role("navigation", name="Main").inner_text().split() == ["Definitions", "Runs", "Audit"]
    assert "viewer" in page.locator(".who").inner_text()
    assert "No runs match these filters" in page.locator("main").inner_text()

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    page.goto(console.server.url("/runs"))
    assert "/login" in page.url


def test_an_unknown_page_is_a_sentence_not_json(console, browser_page):
    login(browser_page, console, "viewer")
    response = browser_page.goto(console.server.url("/no/such/page"))
    assert response.status == 404
    assert "no such page" in browser_page.get_by_role("alert").inner_text()
