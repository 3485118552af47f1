"""The dev IdP's page in a real browser: keyboard only, no external requests, CSRF as browsers send it.

Uses the shared browser fixtures of ``tests/browser/conftest.py`` (Debian's Chromium through
Playwright; skipped, saying so, only when Chromium is not installed).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from accounts.models import Identity
from tests.browser.conftest import browser, dev_idp, open_site  # noqa: F401 -- fixtures shared with tests/browser

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_keyboard_sign_in_with_the_dev_idp(open_site, dev_idp):  # noqa: F811 -- the imported fixtures
    site = open_site(javascript=False)  # the page must not need JavaScript
    page = site.page
    site.goto("/accounts/login/")
    page.get_by_role("link", name="Continue with Local dev IdP").click()

    assert site.path.startswith("/devidp/authorize?")
    assert "Local dev IdP" in page.title()
    page.keyboard.press("Tab")  # skip link
    page.keyboard.press("Tab")  # first test user
    focused = page.evaluate("document.activeElement.textContent")
    assert "Alice Example" in focused
    site.screenshot("dev-idp-keyboard-focus")
    page.keyboard.press("Enter")

    page.wait_for_url(site.url("/accounts/profile/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Alice Example")
    assert site.elsewhere == []
    assert Identity.objects.get().email == "alice@example.com"
