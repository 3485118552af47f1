"""The dev IdP's refresh tokens: rotated on every refresh, and a spent one revokes the whole grant.

That is what Auth0, Okta and Keycloak (with rotation on) do, and what makes a relying party that
refreshes twice at once lose the grant for good: the demo's provider behaves the same, so the
token vault (``accounts.provider_tokens``) is exercised against it too.
"""

from __future__ import annotations

import pytest

from devidp.models import Client, Token, token_digest
from tests.devidp.conftest import basic_auth, code_flow_at_devidp

pytestmark = pytest.mark.django_db


def refresh(http, client_row: Client, refresh_token: str):
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return http.post("/devidp/token", data, HTTP_AUTHORIZATION=basic_auth(client_row))


def userinfo(http, access_token: str) -> int:
    return http.get("/devidp/userinfo", HTTP_AUTHORIZATION=f"Bearer {access_token}").status_code


def test_the_code_flow_issues_a_short_lived_access_token_and_a_refresh_token(client, idp, alice):
    _request, token = code_flow_at_devidp(client, idp, alice)
    assert token["refresh_token"] and token["expires_in"] == 600
    stored = Token.objects.get()
    assert stored.refresh_token == token_digest(token["refresh_token"]) != token["refresh_token"]


def test_a_refresh_rotates_the_refresh_token(client, idp, alice):
    _request, first = code_flow_at_devidp(client, idp, alice)
    response = refresh(client, idp, first["refresh_token"])
    assert response.status_code == 200, response.content
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert userinfo(client, second["access_token"]) == 200
    assert refresh(client, idp, second["refresh_token"]).status_code == 200


def test_a_reused_refresh_token_is_refused_and_revokes_the_whole_grant(client, idp, alice):
    _request, first = code_flow_at_devidp(client, idp, alice)
    second = refresh(client, idp, first["refresh_token"]).json()

    reused = refresh(client, idp, first["refresh_token"])

    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert userinfo(client, second["access_token"]) == 401  # every token of the grant is dead
    assert refresh(client, idp, second["refresh_token"]).json()["error"] == "invalid_grant"


def test_another_client_cannot_use_the_refresh_token(client, idp, alice):
    _request, first = code_flow_at_devidp(client, idp, alice)
    other = Client.objects.create(client_id="other", client_name="Other", redirect_uris=["http://x/cb"])
    assert refresh(client, other, first["refresh_token"]).json()["error"] == "invalid_grant"


@pytest.mark.django_db(transaction=True)
def test_the_demo_s_update_from_button_refreshes_through_the_vault_offline(live_server, capsys):
    """The demo end to end: sign in at the dev IdP, let the access token expire, press "Update from"."""
    import datetime
    import re
    from urllib.parse import urlsplit

    import requests
    from django.core.management import call_command
    from django.utils import timezone

    from accounts.models import ProviderToken
    from devidp.models import DevUser

    call_command("devidp", "setup", "--base-url", live_server.url)
    browser = requests.Session()
    page = browser.get(f"{live_server.url}/accounts/local/login/", timeout=10)
    form_token = re.search(r'name="devidp_form_token" value="([^"]+)"', page.text).group(1)
    alice = DevUser.objects.get(email="alice@example.com")
    profile = browser.post(
        page.url,
        data={"devidp_form_token": form_token, "user": str(alice.pk)},
        headers={"Referer": page.url},
        timeout=10,
    )
    assert urlsplit(profile.url).path == "/accounts/profile/" and "Update from Local dev IdP" in profile.text
    stored = ProviderToken.objects.get()
    assert stored.has_refresh_token and stored.access_token.startswith("fernet:")

    DevUser.objects.filter(pk=alice.pk).update(given_name="Alicia")
    ProviderToken.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    updated = browser.post(
        f"{live_server.url}/accounts/local/refresh-profile/",
        headers={"X-CSRFToken": browser.cookies["csrftoken"], "Referer": profile.url},
        timeout=10,
    )

    assert urlsplit(updated.url).path == "/accounts/profile/", updated.text[:2000]
    assert "Your details were updated from Local dev IdP." in updated.text and "Alicia" in updated.text
    assert ProviderToken.objects.get().last_refresh_at is not None
    assert Token.objects.filter(refresh_used=True).count() == 1  # one refresh, its token spent
