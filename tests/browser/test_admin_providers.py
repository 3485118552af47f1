"""The admin as a site admin uses it: add a provider from a preset, see what is wrong, read its health, refresh keys."""

from __future__ import annotations

import dataclasses
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from accounts.models import Provider
from accounts.presets import PRESETS
from devidp.models import SigningKey
from tests.browser.conftest import Site, sign_in_in_browser

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long admin password"


def admin_sign_in(site: Site) -> None:
    get_user_model().objects.create_superuser("admin", "admin@example.com", PASSWORD)
    page = site.page
    site.goto("/admin/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(site.url("/admin/"))


def test_adding_google_from_its_preset_takes_only_a_client_id_and_secret(site, live_server, dev_idp, monkeypatch):
    # The suite has no internet: the Google preset's issuer is the dev IdP served by the live server.
    monkeypatch.setitem(PRESETS, "google", dataclasses.replace(PRESETS["google"], issuer=f"{live_server.url}/devidp"))
    page = site.page
    admin_sign_in(site)

    site.goto("/admin/oidc_signin/provider/add/")
    expect(page.locator(".field-slug .help")).to_contain_text("Used in URLs: /accounts/<slug>/login/.")
    page.locator("#id_preset").select_option("google")
    page.locator("#id_client_id").fill("1234.apps.googleusercontent.com")
    page.locator("#id_client_secret").fill("GOCSPX-a-client-secret")
    site.screenshot("add-google-from-preset")
    page.get_by_role("button", name="Save", exact=True).click()

    page.wait_for_url(site.url("/admin/oidc_signin/provider/"))
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    row = page.locator("#result_list tr", has_text="Google")
    expect(row.locator(".oidc-health")).to_have_text("Working")  # checked on save
    site.screenshot("provider-list-with-status")
    added = Provider.objects.get(slug="google")
    assert (added.name, added.preset, added.reveal_client_secret()) == ("Google", "google", "GOCSPX-a-client-secret")
    assert site.elsewhere == []


def test_a_discovery_error_is_shown_on_the_issuer_and_the_typed_secret_is_kept(site, live_server, dev_idp):
    page = site.page
    admin_sign_in(site)

    site.goto("/admin/oidc_signin/provider/add/")
    page.locator("#id_name").fill("Typo SSO")
    page.locator("#id_issuer").fill(f"{live_server.url}/devidp-typo")
    page.locator("#id_client_id").fill("typo")
    page.locator("#id_client_secret").fill("typed once")
    page.get_by_role("button", name="Save", exact=True).click()

    issuer_errors = page.locator(".field-issuer .errorlist")
    expect(issuer_errors).to_contain_text("Checking the provider failed: discovery document answered HTTP 404")
    expect(page.locator("#id_client_secret")).to_have_value("typed once")  # nothing to type again
    site.screenshot("inline-discovery-error")

    page.locator("#id_issuer").fill(f"{live_server.url}/devidp")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(site.url("/admin/oidc_signin/provider/"))
    assert Provider.objects.get(slug="typo-sso").reveal_client_secret() == "typed once"
    assert site.elsewhere == []


def test_health_view_lists_the_keys_and_refresh_keys_follows_a_rotation(open_site, dev_idp):
    site = open_site()
    page = site.page
    admin_sign_in(site)
    local = Provider.objects.get(slug="local")
    first_kid = SigningKey.objects.get(active=True, alg="RS256").kid

    site.goto(f"/admin/oidc_signin/provider/{local.pk}/change/")
    page.get_by_role("link", name="Health").click()
    page.wait_for_url(re.compile(r"/health/$"))
    keys = page.locator("#health-keys")
    expect(keys).to_contain_text(first_kid)
    expect(keys).to_contain_text("2048 bits")
    expect(page.locator("#health-status")).to_contain_text("Working")
    expect(page.locator("#health-endpoints")).to_contain_text("/devidp/token")
    site.screenshot("health-view")

    call_command("devidp", "rotate-keys", stdout=io.StringIO())
    new_kid = SigningKey.objects.get(active=True, alg="RS256").kid
    page.get_by_role("button", name="Refresh keys").click()
    expect(page.locator(".messagelist")).to_contain_text("Fetched the discovery document and keys again")
    expect(keys).to_contain_text(new_kid)
    expect(keys).not_to_contain_text(first_kid)
    site.screenshot("health-after-refresh")

    person = open_site()  # someone else, in another browser, signs in with the new key
    sign_in_in_browser(person)
    expect(person.page.get_by_role("heading", level=1)).to_have_text("Alice Example")
    assert site.elsewhere == [] and person.elsewhere == []
