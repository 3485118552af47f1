"""The dev IdP's stand-in for Google Identity Services, over real HTTP: the button's whole path.

The login page renders Google's markup for a provider with the button endpoint on; the stand-in's
chooser signs a credential with the dev IdP's keys and posts it, with the ``g_csrf_token``
cookie/field pair, to ``/accounts/local/credential/``, where it is verified like any ID token.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from django.core.management import call_command

from accounts.models import Identity, Provider
from devidp.models import DevUser

TIMEOUT = 10
STAND_IN = "/devidp/gsi/client.js"


def _attribute(page: str, name: str) -> str:
    return html.unescape(re.search(rf'{name}="([^"]*)"', page).group(1))


@pytest.fixture
def gis_site(live_server, settings):
    settings.ACCOUNTS_GIS_CLIENT_SCRIPT = STAND_IN
    call_command("devidp", "setup", "--base-url", live_server.url)
    Provider.objects.filter(slug="local").update(credential_endpoint=True)
    return live_server.url


def _chooser(browser: requests.Session, site: str) -> tuple[requests.Response, dict[str, str]]:
    login = browser.get(f"{site}/accounts/login/?next=/accounts/profile/", timeout=TIMEOUT)
    assert f'src="{STAND_IN}"' in login.text
    data = {key: _attribute(login.text, f"data-{key}") for key in ("client_id", "login_uri", "nonce")}
    assert _attribute(login.text, "data-use_fedcm_for_prompt") == "true"
    assert urlsplit(data["login_uri"]).path == "/accounts/local/credential/"
    assert browser.get(f"{site}{STAND_IN}", timeout=TIMEOUT).headers["Content-Type"].startswith("text/javascript")
    chooser = browser.get(f"{site}/devidp/gsi/select?{urlencode(data)}", timeout=TIMEOUT)
    return chooser, data


@pytest.mark.django_db(transaction=True)
def test_button_stand_in_signs_in_through_the_credential_endpoint(gis_site):
    browser = requests.Session()
    chooser, _data = _chooser(browser, gis_site)
    assert chooser.status_code == 200, chooser.text[:1000]
    alice = DevUser.objects.get(email="alice@example.com")
    token = re.search(r'name="devidp_form_token" value="([^"]+)"', chooser.text).group(1)
    posting = browser.post(chooser.url, data={"devidp_form_token": token, "user": str(alice.pk)}, timeout=TIMEOUT)
    assert browser.cookies.get("g_csrf_token")
    form = {name: _attribute(posting.text, f'name="{name}" value') for name in ("credential", "g_csrf_token")}
    assert form["g_csrf_token"] == browser.cookies.get("g_csrf_token")
    landed = browser.post(_attribute(posting.text, 'id="gis-post" method="post" action'), data=form, timeout=TIMEOUT)
    assert landed.status_code == 200, landed.text[:2000]
    assert urlsplit(landed.url).path == "/accounts/profile/"
    assert Identity.objects.get(provider__slug="local").subject == alice.sub
    # The same credential again, from a browser that copied the pair: single use.
    again = requests.Session()
    again.cookies.set("g_csrf_token", form["g_csrf_token"])
    replay = again.post(f"{gis_site}/accounts/local/credential/", data=form, timeout=TIMEOUT, allow_redirects=False)
    assert replay.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_stand_in_posts_only_to_an_origin_of_the_clients_redirect_uris(gis_site):
    browser = requests.Session()
    _chooser(browser, gis_site)
    client_id = _attribute(browser.get(f"{gis_site}/accounts/login/", timeout=TIMEOUT).text, "data-client_id")
    query = urlencode({"client_id": client_id, "login_uri": "https://evil.example/steal", "nonce": "n"})
    refused = browser.get(f"{gis_site}/devidp/gsi/select?{query}", timeout=TIMEOUT)
    assert refused.status_code == 400
    assert "login_uri is not on the origin" in refused.text
