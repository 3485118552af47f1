"""Browser fixtures: Debian's Chromium, driven by Playwright, against pytest-django's live server.

* ``browser`` -- one Chromium per test module (launched with ``executable_path``: never
  ``playwright install``). Skipped, saying so, only when Chromium is not installed.
* ``open_site`` -- a fresh browser context (cookies, viewport, colour scheme, JavaScript on or off)
  on the live server, as a ``Site``: its page, every URL the page requested, and screenshots.
  ``site`` is one with the defaults.
* ``dev_idp`` -- ``manage.py devidp setup`` for the live server's URL: the ``local`` provider and
  the test users Alice (verified email) and Bob (unverified).

Playwright's sync API runs an asyncio loop in the test's thread while a browser is open, inside
which Django refuses synchronous ORM calls; ``DJANGO_ALLOW_ASYNC_UNSAFE`` is set for exactly as
long as the browser runs (Django's documented switch for this case). Every wait is bounded.

Screenshots go to ``artifacts/screenshots/<test>/`` (git-ignored); the README's two images are
written to ``docs/screenshots/`` by the same run.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Response

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
DOC_SCREENSHOTS = ROOT / "docs" / "screenshots"

CHROMIUM = next(
    (path for path in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")) if path),
    None,
)
CHROMIUM = CHROMIUM if CHROMIUM and os.access(CHROMIUM, os.X_OK) else None
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1100, "height": 800}
DOC_VIEWPORT = {"width": 900, "height": 640}
TIMEOUT_MS = 5_000

#: URL schemes that reach no host at all (inline icons, blank pages).
_HOSTLESS_SCHEMES = {"data", "about", "blob"}


def is_elsewhere(url: str, origin: str) -> bool:
    """True when ``url`` goes to any host other than ``origin`` (scheme://host:port)."""
    parts = urlsplit(url)
    if parts.scheme in _HOSTLESS_SCHEMES:
        return False
    return f"{parts.scheme}://{parts.netloc}" != origin


@dataclass
class Site:
    """One browser context on the live server."""

    page: Page
    origin: str
    screenshot_dir: Path
    requested: list[str] = field(default_factory=list)
    _shots: int = 0

    def url(self, path: str) -> str:
        return self.origin + path

    def goto(self, path: str) -> Response | None:
        """Open ``path`` on the live server; returns Playwright's main-resource response."""
        return self.page.goto(self.url(path))

    @property
    def path(self) -> str:
        parts = urlsplit(self.page.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @property
    def elsewhere(self) -> list[str]:
        """Every URL this site's pages requested from another host: must stay empty."""
        return [url for url in self.requested if is_elsewhere(url, self.origin)]

    def screenshot(self, name: str) -> Path:
        """A full-page screenshot, numbered in the order the test took them."""
        self._shots += 1
        self.screenshot_dir.mkdir(parents=True, exist_ok=True)
        target = self.screenshot_dir / f"{self._shots:02d}-{name}.png"
        self.page.screenshot(path=target, full_page=True, animations="disabled")
        return target

    def doc_screenshot(self, name: str) -> Path | None:
        """A small screenshot of the visible part for the README (docs/screenshots/<name>.png).

        Only with UPDATE_DOC_SCREENSHOTS=1 (``make screenshots``): the committed images should change
        when the pages do, not on every test run.
        """
        if os.environ.get("UPDATE_DOC_SCREENSHOTS") != "1":
            return None
        size = self.page.viewport_size
        self.page.set_viewport_size(DOC_VIEWPORT)
        try:
            DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            target = DOC_SCREENSHOTS / f"{name}.png"
            self.page.screenshot(path=target, animations="disabled", caret="hide")
        finally:
            self.page.set_viewport_size(size)
        return target


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (`make browser-deps` installs Debian's chromium package)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=15_000)
            try:
                yield chromium
            finally:
                chromium.close()


@pytest.fixture
def open_site(browser, live_server, request) -> Iterator[Callable[..., Site]]:
    """Open a new browser context on the live server: ``open_site(javascript=False, color_scheme="dark")``."""
    test_dir = SCREENSHOTS / re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
    shutil.rmtree(test_dir, ignore_errors=True)
    contexts = []

    def open_site(
        *, javascript: bool = True, viewport: dict[str, int] | None = None, color_scheme: str = "light"
    ) -> Site:
        context = browser.new_context(
            viewport=viewport or VIEWPORT,
            java_script_enabled=javascript,
            color_scheme=color_scheme,
            locale="en-US",
            timezone_id="UTC",
        )
        contexts.append(context)
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        page = context.new_page()
        suffix = f"-{len(contexts)}" if len(contexts) > 1 else ""
        site = Site(page=page, origin=live_server.url, screenshot_dir=test_dir.with_name(test_dir.name + suffix))
        page.on("request", lambda r: site.requested.append(r.url))
        return site

    yield open_site
    for context in contexts:
        context.close()


@pytest.fixture
def site(open_site) -> Site:
    return open_site()


@pytest.fixture
def dev_idp(transactional_db, live_server) -> str:
    """The development provider set up for the live server, as ``make run`` does; returns the login URL."""
    call_command("devidp", "setup", "--base-url", live_server.url, stdout=io.StringIO())
    return f"{live_server.url}/accounts/login/"


def sign_in_in_browser(site: Site, person: str = "Alice Example") -> None:
    """From the sign-in page through the dev IdP's page (picking ``person``) to the profile."""
    page = site.page
    site.goto("/accounts/login/")
    page.get_by_role("link", name="Continue with Local dev IdP").click()
    page.wait_for_url(re.compile(r"/devidp/authorize\?"))
    page.get_by_role("button", name=person).click()
    page.wait_for_url(site.url("/accounts/profile/"))


def sign_out_in_browser(site: Site) -> None:
    """Press the profile's Sign out button; ends back on the sign-in page (via the dev IdP's logout)."""
    site.page.get_by_role("main").get_by_role("button", name="Sign out").click()
    site.page.wait_for_url(site.url("/accounts/login/"))
