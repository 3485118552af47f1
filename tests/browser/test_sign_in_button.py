"""Google's button in Chromium, against the development provider's offline stand-in for Google.

The login page renders Google Identity Services' markup; the stand-in script (``devidp/gsi.py``)
plays Google's part: a button, an account chooser, and a credential posted with the
``g_csrf_token`` cookie/field pair to ``/accounts/local/credential/``. JavaScript is on, as
Google's button needs it. No page may ask any host other than the live server for anything.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from accounts.models import Identity, Provider, SignInEvent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STAND_IN = "/devidp/gsi/client.js"


@pytest.fixture
def gis(dev_idp, settings):
    settings.ACCOUNTS_GIS_CLIENT_SCRIPT = STAND_IN
    Provider.objects.filter(slug="local").update(credential_endpoint=True)
    return dev_idp


def test_sign_in_with_the_button_lands_on_next_signed_in(site, gis):
    page = site.page
    site.goto("/accounts/login/?next=/accounts/profile/")
    button = page.get_by_test_id("gis-button")
    expect(button).to_have_text("Sign in with Google (development stand-in)")
    site.screenshot("login-with-button")
    button.click()
    page.wait_for_url(re.compile(r"/devidp/gsi/select\?"))
    site.screenshot("chooser")
    page.get_by_role("button", name=re.compile("Alice Example")).click()

    page.wait_for_url(site.url("/accounts/profile/"))
    expect(page.get_by_role("status")).to_have_text("Signed in with Local dev IdP.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Alice Example")
    site.screenshot("profile")
    assert site.elsewhere == []
    assert Identity.objects.get().email == "alice@example.com"
    event = SignInEvent.objects.latest("pk")
    assert (event.outcome, event.provider_slug) == ("success", "local")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert "g_csrf_token" in cookies and "sessionid" in cookies


def test_the_posted_form_replayed_by_the_back_button_is_refused(site, gis):
    page = site.page
    site.goto("/accounts/login/")
    page.get_by_test_id("gis-button").click()
    page.wait_for_url(re.compile(r"/devidp/gsi/select\?"))
    # Stop the auto-post, to keep the credential form as Google's page would have posted it.
    page.route(re.compile(r"/devidp/gsi/post\.js"), lambda route: route.abort())
    page.get_by_role("button", name=re.compile("Alice Example")).click()
    page.wait_for_selector("#gis-post")
    form_html = page.inner_html("#gis-post")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(site.url("/accounts/profile/"))

    site.goto("/accounts/login/")  # a page of this site, to post from as the same browser
    page.evaluate(
        """(inner) => { const f = document.createElement('form'); f.method = 'post';
           f.action = '/accounts/local/credential/'; f.innerHTML = inner;
           document.body.appendChild(f); f.submit(); }""",
        form_html,
    )
    page.wait_for_load_state()
    expect(page.get_by_role("heading", level=1)).to_have_text("We could not verify your sign-in")
    refused = SignInEvent.objects.filter(outcome="failure").latest("pk")
    assert refused.code == "token_rejected"
