"""Browser tests: headless Chromium (the Debian package) driven by Playwright, against one
real worker on a real Tansu broker and RabbitMQ, shared by the journeys.

- ``shop_worker``: a worker (with an admin account) and its broker, started once for tests/e2e.
- ``browser``: Chromium from /usr/bin/chromium (never a downloaded one), launched once for
  tests/e2e. Package scope, not session: Playwright's sync API keeps an event loop running
  while it is open, and the asyncio tests of the other packages cannot run beside it.
- ``pages``: a factory of browser pages that record console errors and uncaught exceptions
  (each test asserts there were none), the requests that failed or were answered with an
  error status, and save screenshots under ``SCREENSHOTS``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scripts.devstack import Worker, rabbit_vhost, start_tansu
from tests.integration.fixtures import WorkerFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Where the journeys' screenshots go (kept after the run; var/ is not in git).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "test-output" / "screenshots"
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@shop.example", "e2e admin password"
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="package")
def shop_worker(rabbit_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """Start Tansu and one worker with an admin account; stop both at the end."""
    base = tmp_path_factory.mktemp("e2e")
    broker = start_tansu(log_path=base / "tansu.log")
    try:
        with rabbit_vhost(rabbit_url) as vhost_url:
            factory = WorkerFactory(broker, rabbit_url, base, vhost_url)
            try:
                worker = factory.start("w1", SHOP_PASSWORD_HASH_COST="light",
                                       SHOP_ADMIN_EMAIL=ADMIN_EMAIL,
                                       SHOP_ADMIN_PASSWORD=ADMIN_PASSWORD,
                                       SHOP_RATE_LIMIT="1000", SHOP_RATE_BURST="2000")
                worker.wait_ready()
                yield worker
            finally:
                factory.stop_all()
    finally:
        broker.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Launch headless Chromium from the Debian package ``chromium``."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install the Debian package 'chromium' "
                    "(apt-get install -y chromium; `make test` does it)", pytrace=False)
    try:
        from playwright import sync_api as playwright_api
    except ImportError as exc:  # a browser test that cannot run fails: never a silent pass
        pytest.fail(f"Playwright is missing ({exc}): install the test extras "
                    "(pip install -e '.[test]'; `make test` does it)", pytrace=False)
    # Assertions wait up to 15 s (Playwright's default is 5 s; a loaded 2-core machine).
    playwright_api.expect.set_options(timeout=15_000)
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


#: Form controls and buttons of the page without an accessible name (label, aria-label, text).
UNLABELLED_JS = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href]')].filter((el) => {
  if (el.closest('[hidden]')) return false;
  const named = (el.getAttribute('aria-label') || '').trim()
    || (el.getAttribute('aria-labelledby') || '').trim()
    || (el.labels && [...el.labels].some((l) => l.textContent.trim()));
  const text = ['BUTTON', 'A'].includes(el.tagName) && el.textContent.trim();
  return !named && !text;
}).map((el) => el.outerHTML.slice(0, 120))"""


@dataclass
class Tab:
    """A browser page that records its console errors, takes screenshots, and notes for each
    page it took the controls without an accessible name and a page wider than the window."""

    page: Any
    name: str
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)
    too_wide: list[str] = field(default_factory=list)

    def log_in(self, path: str, email: str, password: str, heading: str) -> None:
        """Open the console page ``path``, log in there and wait for its ``heading``."""
        from playwright.sync_api import expect  # see browser(): missing, it fails there

        self.page.goto(path)
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Log in").click()
        expect(self.page.get_by_role("heading", name=heading)).to_be_visible()

    def shot(self, what: str) -> Path:
        """Save a full-page screenshot ``<name>-<what>.png``; check the page's labels."""
        path = SCREENSHOTS / f"{self.name}-{what}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.unlabelled += [f"{what}: {html}" for html in self.page.evaluate(UNLABELLED_JS)]
        wider = self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if wider > 0:
            self.too_wide.append(f"{what}: {wider} px wider than the window")
        return path


@pytest.fixture
def pages(browser: Any) -> Iterator[Any]:
    """Return a factory of recorded pages: ``pages(name, base_url, viewport)``; closed after."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    contexts = []

    def open_tab(name: str, base_url: str, viewport: dict[str, int]) -> Tab:
        context = browser.new_context(base_url=base_url, viewport=viewport)
        context.set_default_timeout(20_000)  # a loaded 2-core machine
        contexts.append(context)
        tab = Tab(context.new_page(), name)
        tab.page.on("console", lambda message: message.type == "error" and tab.errors.append(
            f"console: {message.text} ({message.location.get('url', '')})"))
        tab.page.on("pageerror", lambda error: tab.errors.append(f"pageerror: {error}"))
        tab.page.on("requestfailed", lambda request: tab.failed.append(
            f"{request.method} {request.url}: {request.failure}"))
        tab.page.on("response", lambda response: response.status >= 400 and tab.failed.append(
            f"{response.request.method} {response.url}: {response.status}"))
        return tab

    yield open_tab
    for context in contexts:
        context.close()

