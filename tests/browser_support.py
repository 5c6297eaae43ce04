"""Browser tests: Playwright (from PyPI) driving Debian's chromium (``/usr/bin/chromium``), never a download.

The fixtures live in tests/conftest.py: ``chromium_browser`` (one browser per session) and
``browser_page`` (a new context and page per test; at teardown the last page is saved as
``<tmp_path>/last-page.png``). Serve the console with ``tests.console_support.start_console``
(users ``<role>`` with password ``password-<role>`` for every role) and sign in with
:func:`login`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.console_support import Console, password_of

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 15_000


def launch(playwright: Any) -> Any:
    """Debian's chromium, headless."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (make test installs it: "
                           "apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def new_page(browser: Any) -> Any:
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def login(page: Any, console: Console, role: str, path: str = "/") -> Any:
    """Sign in through the login form as the user ``role`` (who has that role), then open ``path``."""
    page.goto(console.server.url(f"/login?next={path}"))
    page.get_by_label("User name").fill(role)
    page.get_by_label("Password").fill(password_of(role))
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    if "/login" in page.url:
        raise AssertionError(f"could not sign in as {role}: {page.locator('main').inner_text()[:300]}")
    return page


def screenshot(page: Any, path: Path, *, full_page: bool = True) -> Path:
    """Save what ``page`` shows as a PNG at ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path
