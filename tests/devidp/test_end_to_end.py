"""The relying party signing in against the dev IdP over real HTTP, as `make run` serves it.

One live server plays both parts: the browser (a ``requests.Session``) walks the front channel,
and the ``accounts`` app calls the token, userinfo and JWKS endpoints on the same server.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import requests
from django.core.management import call_command

from accounts.models import Identity, Provider
from accounts.oidc import discovery
from devidp.models import DevUser, SigningKey

TIMEOUT = 10


def _sign_in_over_http(live_url: str, email: str) -> requests.Response:
    """Sign in at the relying party through the dev IdP's page, over real HTTP; returns the last response."""
    browser = requests.Session()
    page = browser.get(f"{live_url}/accounts/local/login/", timeout=TIMEOUT)
    assert page.status_code == 200, page.text[:2000]
    assert urlsplit(page.url).path == "/devidp/authorize"
    assert "Local dev IdP" in page.text

    csrf = re.search(r'name="devidp_form_token" value="([^"]+)"', page.text).group(1)
    assert browser.cookies.get("devidp_browser")
    user = DevUser.objects.get(email=email)
    assert f'name="user" value="{user.pk}"' in page.text

    return browser.post(
        page.url,
        data={"devidp_form_token": csrf, "user": str(user.pk)},
        headers={"Referer": page.url},
        timeout=TIMEOUT,
    )


def _assert_on_profile(response: requests.Response, name: str) -> None:
    assert response.status_code == 200, response.text[:2000]
    assert [urlsplit(r.headers["Location"]).path for r in response.history] == [
        "/accounts/local/callback/",
        "/accounts/profile/",
    ]
    assert urlsplit(response.url).path == "/accounts/profile/"
    assert name in response.text


@pytest.mark.django_db(transaction=True)
def test_sign_in_with_the_dev_idp_then_again_after_a_key_rotation(live_server, capsys):
    call_command("devidp", "setup", "--base-url", live_server.url)
    assert f"Open {live_server.url}/accounts/login/" in capsys.readouterr().out
    provider = Provider.objects.get(slug="local")

    _assert_on_profile(_sign_in_over_http(live_server.url, "alice@example.com"), "Alice Example")

    alice = DevUser.objects.get(email="alice@example.com")
    identity = Identity.objects.get(provider=provider)
    assert (identity.issuer, identity.subject) == (f"{live_server.url}/devidp", alice.sub)
    assert identity.email_verified and identity.user.email == "alice@example.com"

    # The relying party now holds the JWKS in its cache; a new key has a kid it has never seen.
    old_kid = SigningKey.objects.get(alg="RS256", active=True).kid
    call_command("devidp", "rotate-keys")
    new_kid = SigningKey.objects.get(alg="RS256", active=True).kid

    _assert_on_profile(_sign_in_over_http(live_server.url, "alice@example.com"), "Alice Example")

    cached_kids = {k["kid"] for k in discovery.cached_data(f"{live_server.url}/devidp/jwks")["keys"]}
    assert new_kid in cached_kids and old_kid not in cached_kids  # it refetched the key set
    assert Identity.objects.get(provider=provider).pk == identity.pk  # same person, same identity


@pytest.mark.django_db(transaction=True)
def test_an_unverified_user_signs_in_too(live_server):
    call_command("devidp", "setup", "--base-url", live_server.url)

    _assert_on_profile(_sign_in_over_http(live_server.url, "bob@example.com"), "Bob Unverified")

    identity = Identity.objects.get(subject=DevUser.objects.get(email="bob@example.com").sub)
    assert identity.email == "bob@example.com" and not identity.email_verified
