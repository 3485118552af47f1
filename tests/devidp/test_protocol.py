"""The code flow through the Django test client: the sign-in page, errors, tokens, userinfo, logout."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from authlib.oidc.core.util import create_half_hash
from django.test import Client as HttpClient
from django.utils import timezone
from joserfc import jws, jwt
from joserfc.jwk import KeySet

from devidp.models import AuthorizationCode, DevUser, SigningKey, Token
from devidp.views import REMEMBERED_USER_KEY
from tests.devidp.conftest import (
    BASE,
    REDIRECT_URI,
    auth_request,
    callback_params,
    code_flow_at_devidp,
    exchange,
    form_token,
    pick_user,
)

pytestmark = pytest.mark.django_db


def _published_keys(http) -> KeySet:
    return KeySet.import_key_set(http.get("/devidp/jwks").json())


# --- the sign-in page ---------------------------------------------------------------------------


def test_sign_in_page_names_the_client_and_offers_the_test_users(client, idp, alice, bob):
    request = auth_request(idp)

    response = client.get(request.url)

    assert response.status_code == 200
    html = response.content.decode()
    assert "<title>Sign in to Local dev site · Local dev IdP</title>" in html
    assert "Local dev site" in html and "<code>localhost</code>" in html
    for user in (alice, bob):
        assert f'name="user" value="{user.pk}"' in html and user.name in html and user.email in html
    assert "email not verified" in html
    assert 'name="devidp_form_token"' in html
    assert "Someone else" in html
    for field in ("other-name", "other-email", "other-email_verified"):
        assert re.search(rf'<label for="id_{field}">', html), f"{field} has no label"
    assert 'name="cancel"' in html
    assert response["Cache-Control"].startswith("max-age=0")
    # Nothing is fetched from anywhere: no stylesheets, scripts, images, fonts.
    assert not re.search(r"<(link|script|img|iframe)\b|src=|@import|url\(", html)


def test_unknown_client_is_an_error_page_not_a_redirect(client, idp):
    response = client.get(auth_request(idp, client_id="nobody").url)

    assert response.status_code == 400
    assert "Location" not in response
    assert "invalid_client" in response.content.decode()


@pytest.mark.parametrize("redirect_uri", ["https://evil.example/callback", f"{BASE}/accounts/local/callback/x", None])
def test_unregistered_or_missing_redirect_uri_is_never_followed(client, idp, redirect_uri):
    response = client.get(auth_request(idp, redirect_uri=redirect_uri).url)

    assert response.status_code == 400
    assert "Location" not in response
    assert "invalid_request" in response.content.decode()


def test_posting_to_a_bad_request_is_refused_the_same_way(client, idp, alice):
    request = auth_request(idp, redirect_uri="https://evil.example/callback")

    response = client.post(request.url, {"user": alice.pk})

    assert response.status_code == 400 and "Location" not in response
    assert not AuthorizationCode.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),  # PKCE is required
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),  # would default to plain
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"prompt": "none"}, "login_required"),  # nobody remembered yet
    ],
)
def test_errors_about_a_valid_client_go_back_to_it_with_state(client, idp, overrides, error):
    request = auth_request(idp, **overrides)

    params = callback_params(client.get(request.url))

    assert params["error"] == error
    assert params["state"] == request.params["state"]
    assert "code" not in params


def test_cancel_returns_access_denied(client, idp):
    request = auth_request(idp)
    page = client.get(request.url)

    params = callback_params(
        client.post(request.url, {"devidp_form_token": form_token(page.content.decode()), "cancel": "1"})
    )

    assert params["error"] == "access_denied" and params["state"] == request.params["state"]
    assert "code" not in params
    assert not AuthorizationCode.objects.exists()


def test_picking_a_user_issues_a_code_and_remembers_the_choice(client, idp, alice):
    request = auth_request(idp)

    params = callback_params(pick_user(client, request, alice))

    assert set(params) == {"code", "state"} and params["state"] == request.params["state"]
    code = AuthorizationCode.objects.get(code=params["code"])
    assert code.user == alice and code.nonce == request.params["nonce"]
    assert code.expires_at <= timezone.now() + timedelta(seconds=60)
    assert client.session[REMEMBERED_USER_KEY] == alice.pk
    assert "last used" in client.get(auth_request(idp).url).content.decode()


def test_the_form_needs_its_form_token(client, idp, alice):
    http = HttpClient(enforce_csrf_checks=True, HTTP_HOST="localhost")
    request = auth_request(idp)
    http.get(request.url)

    refused = http.post(request.url, {"user": alice.pk})
    assert refused.status_code == 403 and "not sent from this browser" in refused.content.decode()
    assert not AuthorizationCode.objects.exists()


def test_a_post_from_another_site_is_refused_even_with_a_token_of_its_own(client, idp, alice):
    """A page elsewhere can fetch the form itself, but its token is bound to its own browser cookie."""
    attacker = HttpClient(HTTP_HOST="localhost")
    request = auth_request(idp)
    stolen = form_token(attacker.get(request.url).content.decode())

    client.get(request.url)  # the victim's browser has a dev IdP cookie of its own
    assert client.post(request.url, {"devidp_form_token": stolen, "user": alice.pk}).status_code == 403
    no_cookie = HttpClient(HTTP_HOST="localhost")  # SameSite=Lax: a cross-site POST carries no cookie at all
    assert no_cookie.post(request.url, {"devidp_form_token": stolen, "user": alice.pk}).status_code == 403
    assert not AuthorizationCode.objects.exists()


def test_a_token_answers_only_the_request_it_was_shown_for(client, idp, alice):
    first, second = auth_request(idp), auth_request(idp)
    token = form_token(client.get(first.url).content.decode())
    assert client.post(second.url, {"devidp_form_token": token, "user": alice.pk}).status_code == 403
    assert not AuthorizationCode.objects.exists()
    assert callback_params(client.post(first.url, {"devidp_form_token": token, "user": alice.pk}))["code"]


def test_the_form_does_not_depend_on_the_sites_csrf_cookie(client, idp, alice):
    """Signing in rotates the site's CSRF cookie (``login()``); a page open in another tab still posts."""
    http = HttpClient(enforce_csrf_checks=True, HTTP_HOST="localhost")
    request = auth_request(idp)
    token = form_token(http.get(request.url).content.decode())
    http.cookies["csrftoken"] = "rotated-by-a-sign-in-in-another-tab-000000"
    assert callback_params(http.post(request.url, {"devidp_form_token": token, "user": alice.pk}))["code"]


def test_prompt_none_signs_in_the_remembered_user_without_a_page(client, idp, alice):
    pick_user(client, auth_request(idp), alice)
    request = auth_request(idp, prompt="none")

    params = callback_params(client.get(request.url))

    assert AuthorizationCode.objects.get(code=params["code"]).user == alice


def test_someone_else_creates_a_user_then_reuses_it_by_email(client, idp):
    request = auth_request(idp)
    token = form_token(client.get(request.url).content.decode())
    form = {
        "devidp_form_token": token,
        "other": "1",
        "other-name": "Carol Tester",
        "other-email": "carol@example.org",
    }

    first = callback_params(client.post(request.url, {**form, "other-email_verified": "on"}))

    carol = DevUser.objects.get(email="carol@example.org")
    assert (carol.name, carol.given_name, carol.family_name, carol.email_verified) == (
        "Carol Tester", "Carol", "Tester", True,
    )  # fmt: skip
    assert AuthorizationCode.objects.get(code=first["code"]).user == carol

    request = auth_request(idp)
    form["devidp_form_token"] = form_token(client.get(request.url).content.decode())  # each request its own
    second = callback_params(
        client.post(request.url, {**form, "other-name": "Carol Renamed", "other-email": "CAROL@example.org"})
    )

    again = DevUser.objects.get(email="carol@example.org")
    assert again.sub == carol.sub and again.name == "Carol Renamed" and not again.email_verified
    assert AuthorizationCode.objects.get(code=second["code"]).user == again
    assert DevUser.objects.count() == 3


def test_someone_else_with_a_bad_email_shows_the_form_again(client, idp):
    request = auth_request(idp)
    token = form_token(client.get(request.url).content.decode())

    response = client.post(
        request.url, {"devidp_form_token": token, "other": "1", "other-name": "X", "other-email": "not-an-email"}
    )

    assert response.status_code == 400
    html = response.content.decode()
    assert 'aria-invalid="true"' in html and "valid email" in html
    assert not AuthorizationCode.objects.exists()


# --- token endpoint -----------------------------------------------------------------------------


def test_token_response_carries_a_verifiable_rs256_id_token(client, idp, alice):
    request, token = code_flow_at_devidp(client, idp, alice)

    assert token["token_type"] == "Bearer" and token["expires_in"] == 600
    assert token["scope"] == "openid email profile"
    raw = token["id_token"]
    header = jws.extract_compact(raw.encode()).headers()
    active = SigningKey.objects.get(alg="RS256", active=True)
    assert header["alg"] == "RS256" and header["kid"] == active.kid
    claims = jwt.decode(raw, _published_keys(client), algorithms=["RS256"]).claims
    assert claims["iss"] == "http://localhost/devidp"
    assert claims["aud"] == idp.client_id
    assert claims["sub"] == alice.sub
    assert claims["nonce"] == request.params["nonce"]
    assert claims["at_hash"] == create_half_hash(token["access_token"], "RS256").decode()
    assert claims["iat"] <= time.time() < claims["exp"]
    assert "auth_time" in claims
    assert "email" not in claims  # profile and email claims come from userinfo (OIDC Core 5.4)


def test_token_response_is_not_cacheable(client, idp, alice):
    request = auth_request(idp)
    code = callback_params(pick_user(client, request, alice))["code"]

    response = exchange(client, idp, request, code)

    assert response["Cache-Control"] == "no-store"
    assert response["Content-Type"].startswith("application/json")


def test_a_client_registered_for_es256_gets_es256_id_tokens(client, idp, alice):
    idp.id_token_signed_response_alg = "ES256"
    idp.save()

    _request, token = code_flow_at_devidp(client, idp, alice)

    header = jws.extract_compact(token["id_token"].encode()).headers()
    assert header["alg"] == "ES256"
    assert header["kid"] == SigningKey.objects.get(alg="ES256", active=True).kid
    jwt.decode(token["id_token"], _published_keys(client), algorithms=["ES256"])


def test_a_code_works_once(client, idp, alice):
    request = auth_request(idp)
    code = callback_params(pick_user(client, request, alice))["code"]
    assert exchange(client, idp, request, code).status_code == 200

    replay = exchange(client, idp, request, code)

    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def test_a_wrong_pkce_verifier_fails_and_burns_the_code(client, idp, alice):
    request = auth_request(idp)
    code = callback_params(pick_user(client, request, alice))["code"]

    wrong = exchange(client, idp, request, code, code_verifier="x" * 50)
    retry = exchange(client, idp, request, code)

    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert retry.status_code == 400 and retry.json()["error"] == "invalid_grant"
    assert not Token.objects.exists()


def test_a_missing_pkce_verifier_fails(client, idp, alice):
    request = auth_request(idp)
    code = callback_params(pick_user(client, request, alice))["code"]

    response = exchange(client, idp, request, code, code_verifier="")

    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_an_expired_code_fails(client, idp, alice):
    request = auth_request(idp)
    code = callback_params(pick_user(client, request, alice))["code"]
    AuthorizationCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = exchange(client, idp, request, code)

    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_the_redirect_uri_must_match_the_authorization_request(client, idp, alice):
    idp.redirect_uris.append(f"{BASE}/other/")
    idp.save()
    request = auth_request(idp)
    code = callback_params(pick_user(client, request, alice))["code"]
    request.params["redirect_uri"] = f"{BASE}/other/"

    response = exchange(client, idp, request, code)

    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_wrong_client_secret_is_rejected(client, idp, alice):
    request = auth_request(idp)
    code = callback_params(pick_user(client, request, alice))["code"]
    idp.client_secret = "wrong"

    response = exchange(client, idp, request, code)

    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_the_registered_auth_method_is_enforced(client, idp, alice):
    request = auth_request(idp)
    code = callback_params(pick_user(client, request, alice))["code"]
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": request.code_verifier,
        "client_id": idp.client_id,
        "client_secret": idp.client_secret,
    }

    assert client.post("/devidp/token", body).json()["error"] == "invalid_client"  # registered for basic

    idp.token_endpoint_auth_method = "client_secret_post"
    idp.save()
    request = auth_request(idp)
    body.update(code=callback_params(pick_user(client, request, alice))["code"], code_verifier=request.code_verifier)
    assert client.post("/devidp/token", body).status_code == 200


# --- userinfo ---------------------------------------------------------------------------------


def test_userinfo_returns_the_users_claims(client, idp, alice, bob):
    _request, token = code_flow_at_devidp(client, idp, alice)

    response = client.get("/devidp/userinfo", HTTP_AUTHORIZATION=f"Bearer {token['access_token']}")

    assert response.status_code == 200
    assert response.json() == {
        "sub": alice.sub,
        "name": "Alice Example",
        "given_name": "Alice",
        "family_name": "Example",
        "preferred_username": "alice",
        "email": "alice@example.com",
        "email_verified": True,
    }
    _request, token = code_flow_at_devidp(client, idp, bob)
    claims = client.post("/devidp/userinfo", HTTP_AUTHORIZATION=f"Bearer {token['access_token']}").json()
    assert claims["email"] == "bob@example.com" and claims["email_verified"] is False


def test_userinfo_releases_only_what_the_scope_allows(client, idp, alice):
    request = auth_request(idp, scope="openid")
    code = callback_params(pick_user(client, request, alice))["code"]
    token = exchange(client, idp, request, code).json()

    claims = client.get("/devidp/userinfo", HTTP_AUTHORIZATION=f"Bearer {token['access_token']}").json()

    assert claims == {"sub": alice.sub}


@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Basic abc"])
def test_userinfo_needs_a_valid_bearer_token(client, idp, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}

    response = client.get("/devidp/userinfo", **extra)

    assert response.status_code == 401


def test_userinfo_refuses_an_expired_token(client, idp, alice):
    _request, token = code_flow_at_devidp(client, idp, alice)
    Token.objects.update(issued_at=int(time.time()) - 3601)

    response = client.get("/devidp/userinfo", HTTP_AUTHORIZATION=f"Bearer {token['access_token']}")

    assert response.status_code == 401
    assert "invalid_token" in response["WWW-Authenticate"]


# --- logout -------------------------------------------------------------------------------------


def test_logout_with_id_token_hint_returns_to_a_registered_uri(client, idp, alice):
    _request, token = code_flow_at_devidp(client, idp, alice)
    assert client.session.get(REMEMBERED_USER_KEY) == alice.pk

    response = client.get(
        "/devidp/logout",
        {
            "id_token_hint": token["id_token"],
            "post_logout_redirect_uri": f"{BASE}/accounts/login/",
            "state": "s-1",
        },
    )

    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{BASE}/accounts/login/"
    assert dict(parse_qsl(location.query)) == {"state": "s-1"}
    assert REMEMBERED_USER_KEY not in client.session


def test_logout_still_accepts_a_hint_signed_with_a_retired_key(client, idp, alice):
    from django.core.management import call_command

    _request, token = code_flow_at_devidp(client, idp, alice)
    call_command("devidp", "rotate-keys")

    response = client.get(
        "/devidp/logout", {"id_token_hint": token["id_token"], "post_logout_redirect_uri": f"{BASE}/accounts/login/"}
    )

    assert response.status_code == 302


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"client_id": "local-dev-client", "post_logout_redirect_uri": f"{BASE}/accounts/login/"},  # no hint
        {"client_id": "local-dev-client", "post_logout_redirect_uri": "https://evil.example/"},
    ],
)
def test_logout_without_a_provable_registered_uri_shows_a_page(client, idp, params):
    response = client.get("/devidp/logout", params)

    assert response.status_code == 200 and "Location" not in response
    html = response.content.decode()
    assert "signed out" in html and "<title>Signed out · Local dev IdP</title>" in html


def test_logout_with_a_forged_hint_is_an_error_page(client, idp):
    response = client.get(
        "/devidp/logout",
        {"id_token_hint": "eyJhbGciOiJub25lIn0.e30.", "post_logout_redirect_uri": f"{BASE}/accounts/login/"},
    )

    assert response.status_code == 400 and "Location" not in response
