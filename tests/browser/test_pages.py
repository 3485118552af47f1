"""The pages around signing in: error pages, the admin adding a provider, logos, focus, phones, dark mode."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from django.views.defaults import server_error
from playwright.sync_api import expect

from accounts.models import Provider
from tests.browser.conftest import sign_in_in_browser

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def fits_horizontally(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_error_pages_explain_what_happened_and_offer_a_way_back(site, dev_idp):
    page = site.page
    response = site.goto("/no-such-page/")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    expect(page.get_by_role("link", name="Go to sign-in")).to_be_visible()
    site.screenshot("404")

    # A form posted without its CSRF cookie (an expired session, or another site) gets a friendly 403.
    sign_in_in_browser(site)
    page.context.clear_cookies(name="csrftoken")
    with page.expect_response(site.url("/accounts/logout/")) as posted:
        page.get_by_role("main").get_by_role("button", name="Sign out").click()
    assert posted.value.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Please try that again")
    expect(page.get_by_role("main")).to_contain_text("Your session expired or the form was submitted from another site")
    site.screenshot("403-csrf")
    page.get_by_role("link", name="Back to your profile").click()
    page.wait_for_url(site.url("/accounts/profile/"))  # still signed in: nothing was changed

    # The 500 page exactly as Django's handler renders it (no context, no request), shown in the browser.
    html = server_error(RequestFactory().get("/")).content.decode()
    page.route(site.url("/server-error-preview/"), lambda r: r.fulfill(status=500, body=html, content_type="text/html"))
    assert site.goto("/server-error-preview/").status == 500
    expect(page.get_by_role("heading", level=1)).to_have_text("Something went wrong on our side")
    expect(page.get_by_role("link", name="Back to the home page")).to_have_attribute("href", "/")
    site.screenshot("500")
    assert site.elsewhere == []


def test_an_admin_adds_a_provider_and_it_appears_on_the_sign_in_page(site, live_server, transactional_db):
    page = site.page
    get_user_model().objects.create_superuser("admin", "admin@example.com", "a long admin password")

    site.goto("/accounts/login/")
    expect(page.get_by_role("main")).to_contain_text("No sign-in provider is configured yet.")
    site.screenshot("login-without-providers")

    site.goto("/admin/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("a long admin password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(site.url("/admin/"))

    site.goto("/admin/oidc_signin/provider/add/")
    page.locator("#id_name").press_sequentially("Staff SSO")
    expect(page.locator("#id_slug")).to_have_value("staff-sso")  # the admin's JavaScript fills it in as one types
    page.locator("#id_issuer").fill(f"{live_server.url}/devidp")
    page.locator("#id_client_id").fill("staff-portal")
    page.locator("#id_client_secret").fill("a client secret")
    site.screenshot("admin-add-provider")
    page.get_by_role("button", name="Save", exact=True).click()

    page.wait_for_url(site.url("/admin/oidc_signin/provider/"))
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.locator("#result_list")).to_contain_text("Staff SSO")
    site.screenshot("admin-provider-list")

    site.goto("/accounts/login/")
    link = page.get_by_role("link", name="Continue with Staff SSO")
    expect(link).to_have_attribute("href", "/accounts/staff-sso/login/")
    site.screenshot("login-with-the-new-provider")
    assert site.elsewhere == []
    assert Provider.objects.get(slug="staff-sso").reveal_client_secret() == "a client secret"


def test_provider_buttons_draw_their_logos_and_show_where_the_focus_is(open_site, dev_idp):
    for order, name in enumerate(["Google", "Microsoft", "GitHub", "GitLab"], start=1):
        preset = name.lower()
        Provider.objects.create(slug=preset, name=name, preset=preset, issuer=f"https://{preset}.example",
                                client_id="x", display_order=order)  # fmt: skip
    site = open_site(javascript=False)
    page = site.page
    site.goto("/accounts/login/")
    buttons = page.get_by_role("link", name=re.compile(r"^Continue with "))
    expect(buttons).to_have_count(5)
    expect(page.locator(".provider-logo svg")).to_have_count(5)

    page.keyboard.press("Tab")  # the skip link
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")  # the site's name
    page.keyboard.press("Tab")  # the first provider
    expect(buttons.first).to_be_focused()
    page.keyboard.press("Tab")
    focused = buttons.nth(1)
    expect(focused).to_be_focused()
    outline = focused.evaluate("e => [getComputedStyle(e).outlineStyle, parseFloat(getComputedStyle(e).outlineWidth)]")
    assert outline[0] == "solid" and outline[1] >= 2
    site.screenshot("login-logos-keyboard-focus")
    assert site.elsewhere == []


def test_pages_fit_a_phone_in_dark_mode(open_site, dev_idp):
    site = open_site(javascript=False, viewport=PHONE, color_scheme="dark")
    page = site.page
    site.goto("/accounts/login/")
    assert fits_horizontally(page)
    site.screenshot("login-phone-dark")

    sign_in_in_browser(site, "Bob Unverified")
    expect(page.get_by_role("heading", level=1)).to_have_text("Bob Unverified")
    assert fits_horizontally(page)
    site.screenshot("profile-phone-dark")

    site.goto("/accounts/local/callback/?state=forged&code=forged")
    expect(page.get_by_role("heading", level=1)).to_have_text("This sign-in link is not valid")
    assert fits_horizontally(page)
    site.screenshot("error-phone-dark")
    assert site.elsewhere == []
