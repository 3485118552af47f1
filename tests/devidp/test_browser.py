"""The dev IdP's page in a real browser: keyboard only, no external requests, CSRF as browsers send it.

Skipped when Chromium or Playwright is missing (``make browser-deps`` installs Chromium). The
ORM is only used before and after the browser runs: Playwright's sync API keeps an event loop
running, inside which Django refuses synchronous database calls.
"""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command

from accounts.models import Identity

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make browser-deps)"),
]


@pytest.mark.django_db(transaction=True)
def test_keyboard_sign_in_with_the_dev_idp(live_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    call_command("devidp", "setup", "--base-url", live_server.url)
    live_origin = urlsplit(live_server.url).netloc
    elsewhere: list[str] = []

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(java_script_enabled=False)  # the page must not need JavaScript
            page.set_default_timeout(10_000)
            page.on("request", lambda r: elsewhere.append(r.url) if urlsplit(r.url).netloc != live_origin else None)
            page.goto(f"{live_server.url}/accounts/login/")
            page.get_by_role("link", name="Continue with Local dev IdP").click()

            assert urlsplit(page.url).path == "/devidp/authorize"
            assert "Local dev IdP" in page.title()
            page.keyboard.press("Tab")  # skip link
            page.keyboard.press("Tab")  # first test user
            focused = page.evaluate("document.activeElement.textContent")
            assert "Alice Example" in focused
            page.keyboard.press("Enter")

            page.wait_for_url(f"{live_server.url}/accounts/profile/")
            assert "Alice Example" in page.content()
        finally:
            browser.close()

    assert elsewhere == []
    assert Identity.objects.get().email == "alice@example.com"
