"""The dev IdP's access tokens: RFC 9068 JWTs, for sign-ins and for the client-credentials grant.

The last tests close the loop offline: the dev IdP's tokens, fetched over real HTTP from a live
server, are accepted by ``accounts.api`` as a user's (the same user a browser sign-in gives) and
as a machine's.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from django.core.management import CommandError, call_command
from django.test import RequestFactory
from joserfc import jwt

from accounts.api import BearerPolicy, MachinePrincipal, UserPrincipal, authenticate
from accounts.models import Identity
from devidp import keys
from devidp.models import Client, DevUser, Token
from tests.devidp.conftest import basic_auth, code_flow_at_devidp
from tests.devidp.test_end_to_end import _sign_in_over_http

TIMEOUT = 10


def decoded(token: str) -> jwt.Token:
    """The token verified with the dev IdP's own published keys."""
    return jwt.decode(token, keys.verification_keys(), algorithms=["RS256"])


def client_credentials(http, client_row: Client, **data):
    return http.post(
        "/devidp/token",
        {"grant_type": "client_credentials", **data},
        HTTP_AUTHORIZATION=basic_auth(client_row),
    )


def test_discovery_lists_the_client_credentials_grant(client, idp):
    data = client.get("/devidp/.well-known/openid-configuration").json()
    assert data["grant_types_supported"] == ["authorization_code", "client_credentials", "refresh_token"]


def test_client_credentials_give_the_client_an_rfc_9068_token_of_its_own(client, idp):
    response = client_credentials(client, idp, scope="openid")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert "refresh_token" not in body and "id_token" not in body
    token = decoded(body["access_token"])
    assert token.header["typ"] == "at+jwt"
    assert token.header["kid"] == keys.signing_keys("RS256").keys[0].kid
    claims = token.claims
    assert claims["iss"] == "http://localhost/devidp"
    assert claims["aud"] == "http://localhost/api/"
    assert claims["sub"] == claims["client_id"] == idp.client_id  # RFC 9068 2.2: the client itself
    assert claims["scope"] == "openid"
    assert claims["exp"] - claims["iat"] == 600
    assert len(claims["jti"]) >= 24


def test_client_credentials_need_the_client_secret(client, idp):
    response = client_credentials(client, Client(client_id=idp.client_id, client_secret="wrong"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert not Token.objects.exists()


def test_client_credentials_scope_is_limited_to_the_clients(client, idp):
    token = client_credentials(client, idp, scope="openid admin").json()["access_token"]
    assert decoded(token).claims["scope"] == "openid"


def test_the_audience_is_configurable(client, idp, settings):
    settings.DEVIDP_ACCESS_TOKEN_AUDIENCE = "https://api.example.test"
    token = client_credentials(client, idp, scope="openid").json()["access_token"]
    assert decoded(token).claims["aud"] == "https://api.example.test"


def test_each_token_has_its_own_jti(client, idp):
    tokens = [client_credentials(client, idp).json()["access_token"] for _ in range(2)]
    assert decoded(tokens[0]).claims["jti"] != decoded(tokens[1]).claims["jti"]


def test_the_code_flow_gives_an_rfc_9068_access_token_for_the_user(client, idp, alice):
    _request, body = code_flow_at_devidp(client, idp, alice)
    token = decoded(body["access_token"])
    assert token.header["typ"] == "at+jwt"
    assert token.claims["sub"] == alice.sub and token.claims["client_id"] == idp.client_id
    assert token.claims["aud"] == "http://localhost/api/"
    assert token.claims["scope"] == "openid email profile"
    # ... and it still reads userinfo.
    info = client.get("/devidp/userinfo", HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    assert info.json()["sub"] == alice.sub


def test_tokens_are_stored_as_digests_only(client, idp):
    token = client_credentials(client, idp).json()["access_token"]
    stored = Token.objects.get()
    assert stored.access_token != token and len(stored.access_token) == 64
    assert stored.user is None


def test_a_client_token_reads_no_userinfo(client, idp):
    token = client_credentials(client, idp, scope="openid").json()["access_token"]
    response = client.get("/devidp/userinfo", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


# --- the whole thing, offline: the dev IdP's tokens at this site's API ---------------------------------


def _api_request(token: str):
    return RequestFactory().get("/api/", HTTP_AUTHORIZATION=f"Bearer {token}")


def _user_access_token(live_url: str, client_row: Client, user: DevUser) -> str:
    """The code flow over real HTTP, stopping at the callback to redeem the code ourselves."""
    with requests.Session() as http:  # closed, so no kept-alive connection outlives the test
        verifier = secrets.token_urlsafe(48)
        params = {
            "response_type": "code",
            "client_id": client_row.client_id,
            "redirect_uri": f"{live_url}/accounts/local/callback/",
            "scope": "openid email profile",
            "state": "s",
            "nonce": "n",
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        page = http.get(f"{live_url}/devidp/authorize", params=params, timeout=TIMEOUT)
        csrf = re.search(r'name="devidp_form_token" value="([^"]+)"', page.text).group(1)
        picked = http.post(
            page.url,
            data={"devidp_form_token": csrf, "user": str(user.pk)},
            headers={"Referer": page.url},
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        code = dict(parse_qsl(urlsplit(picked.headers["Location"]).query))["code"]
        response = http.post(
            f"{live_url}/devidp/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": params["redirect_uri"]}
            | {"code_verifier": verifier},
            auth=(client_row.client_id, client_row.client_secret),
            timeout=TIMEOUT,
        )
        assert response.status_code == 200, response.text
        return response.json()["access_token"]


@pytest.mark.django_db(transaction=True)
def test_the_sites_api_accepts_the_dev_idps_tokens(live_server):
    call_command("devidp", "setup", "--base-url", live_server.url)
    assert _sign_in_over_http(live_server.url, "alice@example.com").status_code == 200  # Alice has an account
    policy = BearerPolicy(audience=f"{live_server.url}/api/")
    client_row = Client.objects.get()

    machine = requests.post(
        f"{live_server.url}/devidp/token",
        data={"grant_type": "client_credentials", "scope": "openid"},
        auth=(client_row.client_id, client_row.client_secret),
        timeout=TIMEOUT,
    ).json()["access_token"]
    principal = authenticate(_api_request(machine), policy)
    assert isinstance(principal, MachinePrincipal)
    assert principal.client_id == client_row.client_id and principal.scopes == {"openid"}

    alice = DevUser.objects.get(email="alice@example.com")
    principal = authenticate(_api_request(_user_access_token(live_server.url, client_row, alice)), policy)
    assert isinstance(principal, UserPrincipal)
    identity = Identity.objects.get(subject=alice.sub)  # the one her browser sign-in made
    assert principal.user.pk == identity.user_id and principal.identity.pk == identity.pk
    assert identity.issuer == f"{live_server.url}/devidp"


def test_credentials_prints_what_curl_needs(idp, capsys):
    call_command("devidp", "credentials", "--base-url", "http://localhost")
    out = capsys.readouterr().out
    assert f"client_secret: {idp.client_secret}" in out
    assert f"curl -s -u '{idp.client_id}:{idp.client_secret}' -d grant_type=client_credentials" in out
    assert "http://localhost/devidp/token" in out


@pytest.mark.django_db
def test_credentials_before_setup_is_one_clear_line():
    with pytest.raises(CommandError, match=r"run `manage\.py devidp setup` first"):
        call_command("devidp", "credentials")
