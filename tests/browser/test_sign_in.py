"""Signing in and out through the development provider, in Chromium, as a person would.

JavaScript is off in these contexts: the sign-in pages must work without it. Every test also
checks that no page asked any host other than the live server for anything.
"""

from __future__ import annotations

import io
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from accounts.models import Identity
from devidp.models import SigningKey
from tests.browser.conftest import sign_in_in_browser, sign_out_in_browser

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(open_site):
    return open_site(javascript=False)


def test_sign_in_with_the_dev_idp_shows_the_profile(site, dev_idp):
    page = site.page
    site.goto("/")
    page.wait_for_url(dev_idp)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    site.screenshot("login")
    site.doc_screenshot("login")

    page.get_by_role("link", name="Continue with Local dev IdP").click()
    page.wait_for_url(re.compile(r"/devidp/authorize\?"))
    site.screenshot("dev-idp")
    page.get_by_role("button", name="Alice Example").click()

    page.wait_for_url(site.url("/accounts/profile/"))
    expect(page.get_by_role("status")).to_have_text("Signed in with Local dev IdP.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Alice Example")
    expect(page.get_by_role("main")).to_contain_text("alice@example.com")
    expect(page.get_by_role("row").filter(has_text="Local dev IdP")).to_contain_text("alice@example.com")
    expect(page.get_by_role("navigation", name="Account")).to_contain_text("alice")
    site.screenshot("profile")
    site.doc_screenshot("profile")

    assert site.elsewhere == []
    identity = Identity.objects.get()
    assert (identity.provider.slug, identity.email, identity.email_verified) == ("local", "alice@example.com", True)


def test_sign_out_ends_the_session(site, dev_idp):
    page = site.page
    sign_in_in_browser(site)
    sign_out_in_browser(site)

    expect(page.get_by_role("status")).to_have_text("You have been signed out.")
    expect(page.get_by_role("link", name="Continue with Local dev IdP")).to_be_visible()
    site.screenshot("signed-out")

    site.goto("/accounts/profile/")  # no longer signed in: back to the sign-in page, which keeps `next`
    assert site.path == "/accounts/login/?next=/accounts/profile/"
    expect(page.get_by_role("main")).to_contain_text("Sign in to continue where you left off.")
    assert site.elsewhere == []


def test_a_tampered_callback_ends_on_an_error_page_with_a_way_back(site, dev_idp):
    page = site.page
    site.goto("/accounts/login/")
    page.get_by_role("link", name="Continue with Local dev IdP").click()
    page.wait_for_url(re.compile(r"/devidp/authorize\?"))

    # Take the dev IdP's redirect back to the callback without following it (a 204 keeps the
    # browser where it is; routes do not see redirects, so the request to the IdP is routed) ...
    redirects: list[str] = []

    def hold_redirect(route):
        redirects.append(route.fetch(max_redirects=0).headers["location"])
        route.fulfill(status=204)

    page.route(re.compile(r"/devidp/authorize"), hold_redirect)
    with page.expect_response(lambda r: r.request.method == "POST"):
        page.get_by_role("button", name="Alice Example").click()
    page.unroute(re.compile(r"/devidp/authorize"))
    assert redirects and redirects[0].startswith(site.url("/accounts/local/callback/?"))

    # ... and follow it with another state, as a forged link or a stale tab would.
    parts = urlsplit(redirects[0])
    params = dict(parse_qsl(parts.query))
    params["state"] = params["state"][::-1]
    response = page.goto(urlunsplit(parts._replace(query=urlencode(params))))

    assert response.status == 400
    expect(page.get_by_role("heading", level=1)).to_have_text("This sign-in link is not valid")
    expect(page.get_by_role("alert")).to_contain_text("did not match a sign-in started from this browser")
    site.screenshot("tampered-state")

    page.get_by_role("link", name="Back to sign-in").click()
    page.wait_for_url(site.url("/accounts/login/"))
    expect(page.get_by_role("link", name="Continue with Local dev IdP")).to_be_visible()
    assert site.elsewhere == []
    assert not Identity.objects.exists()


def test_sign_in_again_after_the_dev_idp_rotates_its_keys(site, dev_idp):
    page = site.page
    sign_in_in_browser(site)
    sign_out_in_browser(site)
    old_kid = SigningKey.objects.get(alg="RS256", active=True).kid

    call_command("devidp", "rotate-keys", stdout=io.StringIO())
    assert SigningKey.objects.get(alg="RS256", active=True).kid != old_kid

    sign_in_in_browser(site)  # the relying party has only the old key cached: it must fetch the new one
    expect(page.get_by_role("status")).to_have_text("Signed in with Local dev IdP.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Alice Example")
    site.screenshot("profile-after-key-rotation")
    assert site.elsewhere == []
    assert get_user_model().objects.count() == 1 and Identity.objects.count() == 1


def test_bob_signs_in_without_a_verified_email(site, dev_idp):
    page = site.page
    sign_in_in_browser(site, "Bob Unverified")
    expect(page.get_by_role("heading", level=1)).to_have_text("Bob Unverified")
    row = page.get_by_role("row").filter(has_text="Local dev IdP")
    expect(row).to_contain_text("bob@example.com")
    expect(row).to_contain_text("unverified")
    expect(page.get_by_role("main")).to_contain_text("(none verified)")
    site.screenshot("profile-unverified")
    assert site.elsewhere == []
