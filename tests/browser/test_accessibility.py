"""axe-core in the browser: the sign-in pages, the admin's add-provider page and the dev IdP's pages.

axe-core is pinned in ``tests/browser/package-lock.json`` and installed by ``make browser-deps``
(``npm ci``). No serious or critical violation is allowed, in light and in dark mode; the dev
IdP's pages must also fit a 390-px phone. Skipped, saying why, when axe-core is not installed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from accounts.models import Identity, Provider
from tests.browser.conftest import Site, sign_in_in_browser
from tests.browser.test_pages import PHONE, fits_horizontally

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
#: The impacts that fail a page (axe's "minor" and "moderate" are reported in the message only).
FAILING = {"serious", "critical"}
SCHEMES = ["light", "dark"]


@pytest.fixture(autouse=True)
def _axe_installed():
    if not AXE.is_file():
        pytest.skip(f"axe-core is not installed ({AXE} is missing): `make browser-deps` runs npm ci in tests/browser")


def violations(site: Site) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line each."""
    page = site.page
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations.map(v => ({
            id: v.id, impact: v.impact, targets: v.nodes.slice(0, 3).map(n => n.target.join(" ")),
        }))"""
    )
    return [f"{v['id']} ({v['impact']}) at {v['targets']} on {site.path}" for v in found if v["impact"] in FAILING]


def assert_accessible(site: Site) -> None:
    assert violations(site) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sign_in_profile_and_error_pages_have_no_serious_violation(open_site, dev_idp, scheme):
    site = open_site(color_scheme=scheme)
    site.goto("/accounts/login/")
    assert_accessible(site)

    sign_in_in_browser(site, "Bob Unverified")  # the profile with its "Signed in" message and Bob's email note
    expect(site.page.get_by_role("status")).to_contain_text("Signed in with Local dev IdP")
    expect(site.page.get_by_role("main")).to_contain_text("has not verified it")
    assert_accessible(site)

    site.goto(f"/accounts/identities/{Identity.objects.get().pk}/disconnect/")  # the question it asks first
    expect(site.page.get_by_role("heading", level=1)).to_have_text("Disconnect Local dev IdP?")
    assert_accessible(site)

    site.goto("/accounts/local/callback/?state=forged&code=forged")
    expect(site.page.get_by_role("heading", level=1)).to_have_text("This sign-in link is not valid")
    assert_accessible(site)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_provider_error_page_has_no_serious_violation(open_site, dev_idp, scheme):
    site = open_site(color_scheme=scheme)
    site.goto("/accounts/local/login/")  # starts a sign-in, so the callback's state is this browser's
    state = re.search(r"[?&]state=([^&]+)", site.page.url).group(1)
    site.goto(f"/accounts/local/callback/?state={state}&error=server_error")
    expect(site.page.get_by_role("heading", level=1)).to_have_text("The provider had a problem")
    assert_accessible(site)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_admin_add_provider_page_has_no_serious_violation(open_site, live_server, transactional_db, scheme):
    get_user_model().objects.create_superuser("admin", "admin@example.com", "a long test password")
    site = open_site(color_scheme=scheme)
    page = site.page
    site.goto("/admin/login/?next=/admin/oidc_signin/provider/add/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("a long test password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(site.url("/admin/oidc_signin/provider/add/"))
    assert_accessible(site)
    assert not Provider.objects.exists()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_dev_idp_pages_have_no_serious_violation_and_fit_a_phone(open_site, dev_idp, scheme):
    site = open_site(color_scheme=scheme, viewport=PHONE)
    page = site.page
    site.goto("/accounts/login/")
    page.get_by_role("link", name="Continue with Local dev IdP").click()
    page.wait_for_url(re.compile(r"/devidp/authorize\?"))
    assert fits_horizontally(page)
    assert_accessible(site)
    background = page.evaluate("getComputedStyle(document.querySelector('.card')).backgroundColor")
    assert (background == "rgb(255, 255, 255)") == (scheme == "light"), background  # it follows dark mode
    site.screenshot(f"devidp-phone-{scheme}")

    page.get_by_label("Name").fill("X")
    page.get_by_label("Email", exact=True).fill("x@y")  # the browser lets it through, the form does not
    page.get_by_role("button", name="Continue as this person").click()
    expect(page.locator(".errorlist").first).to_be_visible()
    assert fits_horizontally(page)
    assert_accessible(site)

    site.goto("/devidp/authorize?client_id=nobody&response_type=code")  # the dev IdP's own error page
    expect(page.get_by_role("heading", level=1)).to_have_text("This sign-in request cannot be completed")
    assert fits_horizontally(page)
    assert_accessible(site)
