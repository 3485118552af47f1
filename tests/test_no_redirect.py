"""Sign-in without a redirect (``accounts.no_redirect``), as attacks: each refusal names its rule.

Google's button and One Tap post a ``credential`` with the ``g_csrf_token`` pair; an app posts JSON.
The ID tokens are really signed by the provider double's keys and verified over real HTTP.
"""

from __future__ import annotations

import html
import json
import logging
import re
import secrets
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from django.contrib.sessions.models import Session
from django.core import signing
from django.http import JsonResponse
from django.middleware.csrf import _get_new_csrf_string
from django.template import engines
from django.test import Client, RequestFactory, override_settings

from accounts import no_redirect
from accounts.api import bearer_token_required
from accounts.models import Identity, SignInEvent
from tests.conftest import (
    assert_error_page,
    assert_reason,
    claims_for,
    logout_token,
    made_up_kid_token,
    post_logout_token,
    signed_in,
    signed_in_user,
)

pytestmark = pytest.mark.django_db

CREDENTIAL = "/accounts/test-op/credential/"
TOKEN = "/accounts/test-op/token/"
APP_CLIENT = "app-client-1"
APP_REDIRECT = "com.example.app:/oauth2redirect"


@pytest.fixture
def gis(provider):
    """The provider with Google's button endpoint turned on."""
    provider.credential_endpoint = True
    provider.save()
    return provider


@pytest.fixture
def app(provider):
    """The provider with an app client id (the app endpoint is on) and an app redirect URI."""
    provider.app_client_ids = f"{APP_CLIENT}, other-app"
    provider.app_redirect_uris = APP_REDIRECT
    provider.save()
    return provider


@pytest.fixture
def browser():
    """A browser that enforces CSRF as a real one would be checked, with a CSRF cookie of its own."""
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = _get_new_csrf_string()
    return client


def page_nonce(client: Client) -> str:
    """The nonce a page with Google's button gives this browser (bound to its CSRF secret)."""
    request = RequestFactory().get("/")
    request.META["CSRF_COOKIE"] = client.cookies["csrftoken"].value
    return no_redirect.page_nonce(request)


def id_token(op, **overrides) -> str:
    claims = claims_for(op, email="alice@example.com", email_verified=True, jti=secrets.token_urlsafe(8))
    claims.update(overrides)
    return op.sign({k: v for k, v in claims.items() if v is not None})


def post_credential(client: Client, token: str, *, pair: str | None = "pair-1", field: str | None = None, **extra):
    """POST as Google Identity Services does: the credential, and the g_csrf_token cookie and field."""
    if pair is not None:
        client.cookies["g_csrf_token"] = pair
    data = {"credential": token, "select_by": "btn"}
    if (field if field is not None else pair) is not None:
        data["g_csrf_token"] = field if field is not None else pair
    return client.post(CREDENTIAL + extra.pop("query", ""), data, **extra)


def post_app(client: Client, body: dict, **extra):
    return client.post(TOKEN, body, content_type="application/json", **extra)


def assert_json_refused(response, status: int, *, code: str, reason: str) -> None:
    assert response.status_code == status, response.content[:300]
    assert response.json()["error"] == code
    assert "error_description" in response.json()
    event = SignInEvent.objects.latest("pk")
    assert event.outcome == "failure"
    assert_reason(event.code, event.reason, code=code, reason=reason)


# --- Google Identity Services: the credential endpoint ----------------------------------------------


def test_credential_signs_in_with_the_redirect_flows_mapping_session_and_audit(op, gis, browser):
    token = id_token(op, nonce=page_nonce(browser))
    response = post_credential(browser, token, query="?next=/accounts/profile/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/profile/"
    assert signed_in_user(browser).email == "alice@example.com"
    assert Identity.objects.get().subject == "user-1"
    event = SignInEvent.objects.latest("pk")
    assert (event.outcome, event.action, event.subject) == ("success", "login", "user-1")
    assert browser.session.get("oidc_signin_provider") == "test-op"


def test_credential_refuses_a_next_that_leaves_the_site(op, gis, browser):
    response = post_credential(browser, id_token(op, nonce=page_nonce(browser)), query="?next=https://evil.example/")
    assert response.status_code == 302
    assert urlsplit(response["Location"]).netloc == ""


def test_credential_endpoint_is_off_by_default(op, provider, browser):
    response = post_credential(browser, id_token(op, nonce=page_nonce(browser)))
    assert_error_page(response, 404, code="endpoint_disabled", reason="credential endpoint turned off")
    assert not signed_in(browser)


def test_credential_refuses_a_token_for_another_client_id(op, gis, browser):
    response = post_credential(browser, id_token(op, aud=APP_CLIENT, nonce=page_nonce(browser)))
    assert_error_page(response, 400, code="token_rejected", reason="aud claim")
    assert not signed_in(browser)


def test_credential_refuses_a_token_without_nonce(op, gis, browser):
    response = post_credential(browser, id_token(op, nonce=None))
    assert_error_page(response, 400, code="token_rejected", reason="missing nonce")
    assert not signed_in(browser)


def test_credential_refuses_a_nonce_another_browser_was_given(op, gis, browser):
    other = Client()
    other.cookies["csrftoken"] = _get_new_csrf_string()
    response = post_credential(browser, id_token(op, nonce=page_nonce(other)))
    assert_error_page(response, 400, code="token_rejected", reason="nonce was not issued to this browser")


def test_credential_refuses_a_reused_nonce(op, gis, browser):
    nonce, secret = page_nonce(browser), browser.cookies["csrftoken"].value
    assert post_credential(browser, id_token(op, nonce=nonce)).status_code == 302
    again = same_browser_before_sign_in(secret)
    response = post_credential(again, id_token(op, nonce=nonce))
    assert_error_page(response, 400, code="token_rejected", reason="reused nonce")
    assert not signed_in(again)


def same_browser_before_sign_in(csrf_secret: str) -> Client:
    """A browser holding the CSRF cookie another had before its sign-in rotated it."""
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = csrf_secret
    return client


def test_credential_refuses_a_replayed_token(op, gis, browser):
    token, secret = id_token(op, nonce=page_nonce(browser)), browser.cookies["csrftoken"].value
    assert post_credential(browser, token).status_code == 302
    thief = same_browser_before_sign_in(secret)
    response = post_credential(thief, token)
    assert_error_page(response, 400, code="token_rejected", reason="already used")
    assert not signed_in(thief)


def test_credential_without_jti_is_single_use_by_its_hash(op, gis, browser):
    token, secret = id_token(op, nonce=page_nonce(browser), jti=None), browser.cookies["csrftoken"].value
    assert post_credential(browser, token).status_code == 302
    again = same_browser_before_sign_in(secret)
    assert_error_page(post_credential(again, token), 400, code="token_rejected", reason="already used")


def test_credential_refuses_a_post_without_the_g_csrf_token_pair(op, gis, browser):
    response = post_credential(browser, id_token(op, nonce=page_nonce(browser)), pair=None)
    assert_error_page(response, 400, code="invalid_request", reason="credential posted without the g_csrf_token")
    assert not signed_in(browser)


def test_credential_refuses_a_field_that_does_not_match_the_cookie(op, gis, browser):
    response = post_credential(browser, id_token(op, nonce=page_nonce(browser)), pair="pair-1", field="forged")
    assert_error_page(response, 400, code="invalid_request", reason="does not match the g_csrf_token cookie")
    assert not signed_in(browser)


def test_credential_refuses_a_cross_site_post_without_the_pair(op, gis, browser):
    token = id_token(op, nonce=page_nonce(browser))
    response = post_credential(
        browser, token, pair=None, HTTP_SEC_FETCH_SITE="cross-site", HTTP_ORIGIN="https://evil.example"
    )
    assert_error_page(response, 400, code="invalid_request", reason="cross-site credential POST")
    assert not signed_in(browser)


def test_credential_refuses_a_cross_site_post_by_its_origin_alone(op, gis, browser):
    response = post_credential(browser, id_token(op), pair=None, HTTP_ORIGIN="https://evil.example")
    assert_error_page(response, 400, code="invalid_request", reason="cross-site credential POST")


def test_credential_refuses_an_expired_token(op, gis, browser):
    now = int(time.time())
    response = post_credential(browser, id_token(op, nonce=page_nonce(browser), iat=now - 900, exp=now - 600))
    assert_error_page(response, 400, code="token_rejected", reason="has expired")
    assert not signed_in(browser)


def test_credential_refuses_a_token_of_another_issuer(op, op2, gis, browser):
    token = op2.sign(claims_for(op2, aud=op.client_id, nonce=page_nonce(browser)))
    assert_error_page(post_credential(browser, token), 400, code="token_rejected")


def test_credential_refusal_logs_one_line_naming_the_rule(op, gis, browser, caplog):
    caplog.set_level(logging.WARNING)
    post_credential(browser, id_token(op, nonce=page_nonce(browser)), pair=None)
    lines = [r.getMessage() for r in caplog.records if r.name == "accounts.views"]
    assert len(lines) == 1
    assert "code=invalid_request" in lines[0] and "g_csrf_token" in lines[0]
    token_part = id_token(op).split(".")[1]
    assert all(token_part not in r.getMessage() for r in caplog.records)


@override_settings(ACCOUNTS_NO_REDIRECT_FAILURES_PER_MINUTE=2)
def test_refusals_are_rate_limited_per_address(op, gis, browser):
    for _ in range(2):
        post_credential(browser, id_token(op, nonce=page_nonce(browser)), pair=None)
    response = post_credential(browser, id_token(op, nonce=page_nonce(browser)))
    assert_error_page(response, 429, code="too_many_attempts")
    assert not signed_in(browser)
    elsewhere = Client(REMOTE_ADDR="192.0.2.7")
    elsewhere.cookies["csrftoken"] = _get_new_csrf_string()
    assert post_credential(elsewhere, id_token(op, nonce=page_nonce(elsewhere))).status_code == 302


# --- native and single-page apps: the token endpoint -----------------------------------------------


def test_app_id_token_signs_in_and_answers_user_and_identity_with_the_session_cookie(op, app):
    client = Client(enforce_csrf_checks=True)
    response = post_app(client, {"id_token": id_token(op, aud=APP_CLIENT, nonce="app-nonce-1"), "nonce": "app-nonce-1"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["identity"] == {"provider": "test-op", "issuer": op.issuer, "sub": "user-1"}
    assert body["user"]["email"] == "alice@example.com"
    assert "sessionid" in response.cookies
    assert signed_in(client)
    assert SignInEvent.objects.latest("pk").outcome == "success"


def test_app_endpoint_is_off_without_app_client_ids(op, provider):
    response = post_app(Client(), {"id_token": id_token(op, nonce="n"), "nonce": "n"})
    assert_json_refused(response, 404, code="endpoint_disabled", reason="app endpoint turned off")


def test_app_refuses_a_token_for_a_client_id_not_on_the_list(op, app):
    # The site's own web client id is not an app's: its tokens belong to the button and the redirect flow.
    response = post_app(Client(), {"id_token": id_token(op, nonce="n-1"), "nonce": "n-1"})
    assert_json_refused(response, 400, code="token_rejected", reason="aud claim")


def test_app_refuses_a_request_without_nonce(op, app):
    response = post_app(Client(), {"id_token": id_token(op, aud=APP_CLIENT, nonce="n-1")})
    assert_json_refused(response, 400, code="invalid_request", reason="missing nonce")


def test_app_refuses_a_nonce_other_than_the_tokens(op, app):
    response = post_app(Client(), {"id_token": id_token(op, aud=APP_CLIENT, nonce="n-1"), "nonce": "n-2"})
    assert_json_refused(response, 400, code="token_rejected", reason="nonce claim")


def test_app_refuses_a_reused_nonce(op, app):
    first = {"id_token": id_token(op, aud=APP_CLIENT, nonce="n-1"), "nonce": "n-1"}
    assert post_app(Client(), first).status_code == 200
    response = post_app(Client(), {"id_token": id_token(op, aud=APP_CLIENT, nonce="n-1"), "nonce": "n-1"})
    assert_json_refused(response, 400, code="token_rejected", reason="reused nonce")


def test_app_refuses_a_replayed_token(op, app):
    body = {"id_token": id_token(op, aud=APP_CLIENT, nonce="n-1"), "nonce": "n-1"}
    assert post_app(Client(), body).status_code == 200
    assert_json_refused(post_app(Client(), body), 400, code="token_rejected", reason="already used")


def test_app_refuses_an_expired_token(op, app):
    now = int(time.time())
    token = id_token(op, aud=APP_CLIENT, nonce="n-1", iat=now - 900, exp=now - 600)
    response = post_app(Client(), {"id_token": token, "nonce": "n-1"})
    assert_json_refused(response, 400, code="token_rejected", reason="has expired")


def test_app_refuses_a_body_that_is_not_json(op, app):
    # A form post is what another site's page can send without a preflight.
    client = Client()
    response = client.post(TOKEN, {"id_token": id_token(op, aud=APP_CLIENT, nonce="n-1"), "nonce": "n-1"})
    assert_json_refused(response, 400, code="invalid_request", reason="not application/json")
    assert not signed_in(client)


def _app_code(op, *, redirect_uri: str = APP_REDIRECT) -> tuple[str, str]:
    """The app's own authorization request with PKCE: the code and its verifier."""
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code", "client_id": op.client_id, "redirect_uri": redirect_uri, "scope": "openid email",
        "state": "s", "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256",
    }  # fmt: skip
    return op.authorize(params)["code"], verifier


def test_app_code_with_pkce_signs_in(op, app):
    code, verifier = _app_code(op)
    client = Client()
    response = post_app(client, {"code": code, "code_verifier": verifier, "redirect_uri": APP_REDIRECT})
    assert response.status_code == 200, response.content
    assert response.json()["identity"]["sub"] == op.next_user["sub"]
    assert signed_in(client)


def test_app_code_refuses_a_redirect_uri_not_on_the_list(op, app):
    code, verifier = _app_code(op, redirect_uri="https://evil.example/cb")
    response = post_app(Client(), {"code": code, "code_verifier": verifier, "redirect_uri": "https://evil.example/cb"})
    assert_json_refused(response, 400, code="invalid_request", reason="not on test-op's app list")


def test_app_code_refuses_a_wrong_verifier(op, app):
    code, _verifier = _app_code(op)
    body = {"code": code, "code_verifier": secrets.token_urlsafe(48), "redirect_uri": APP_REDIRECT}
    assert_json_refused(post_app(Client(), body), 400, code="token_rejected", reason="refused the code")


def test_page_nonce_sets_the_csrf_cookie_it_is_bound_to():
    request = RequestFactory().get("/")
    nonce = no_redirect.page_nonce(request)
    assert request.META["CSRF_COOKIE_NEEDS_UPDATE"]
    assert no_redirect.check_page_nonce(request, nonce) == nonce


def test_query_of_login_uri_is_only_next(gis, rf):
    url = no_redirect.login_uri(rf.get("/"), gis)
    assert dict(parse_qsl(urlsplit(url).query)) == {}


# --- the template tag ------------------------------------------------------------------------------


def _render_button(provider, source: str = "{% oidc_google_button provider next='/after/?a=1&b=2' %}"):
    request = RequestFactory().get("/")
    page = engines["django"].from_string("{% load oidc_signin %}" + source).render({"provider": provider}, request)
    return page, request


def test_google_button_renders_nothing_for_a_provider_with_the_endpoint_off(provider):
    page, _request = _render_button(provider)
    assert "g_id_onload" not in page and "gsi" not in page


def test_google_button_renders_gis_markup_with_a_nonce_bound_to_the_browser(gis):
    page, request = _render_button(gis)
    data = {name: html.unescape(value) for name, value in re.findall(r'data-([a-z_]+)="([^"]*)"', page)}
    assert data["client_id"] == gis.client_id
    assert data["login_uri"] == "http://testserver/accounts/test-op/credential/?next=%2Fafter%2F%3Fa%3D1%26b%3D2"
    assert data["use_fedcm_for_prompt"] == "true" and data["auto_prompt"] == "false"
    assert 'src="https://accounts.google.com/gsi/client"' in page
    assert no_redirect.check_page_nonce(request, data["nonce"]) == data["nonce"]


def test_google_button_with_one_tap_prompts(gis):
    page, _request = _render_button(gis, "{% oidc_google_button provider one_tap=True %}")
    assert 'data-auto_prompt="true"' in page


def test_login_page_offers_the_button_only_for_a_provider_that_has_it_on(provider, client):
    assert "g_id_onload" not in client.get("/accounts/login/").content.decode()
    provider.credential_endpoint = True
    provider.save()
    assert "g_id_onload" in client.get("/accounts/login/").content.decode()


# --- session tokens for apps that keep no cookies (accounts.app_sessions) ---------------------------


@bearer_token_required(profile="app-session")
def whoami(request):
    return JsonResponse({"user": request.user.get_username(), "sub": request.bearer.subject})


def call_api(token: str):
    return whoami(RequestFactory().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {token}"))


def app_session_token(op) -> dict:
    body = {"id_token": id_token(op, aud=APP_CLIENT, nonce="n-1"), "nonce": "n-1", "session": "token"}
    response = post_app(Client(), body)
    assert response.status_code == 200, response.content
    assert "sessionid" not in response.cookies  # the token instead of the cookie
    return response.json()


def test_app_session_token_is_checked_by_the_bearer_profile(op, app):
    answer = app_session_token(op)
    assert (answer["token_type"], answer["expires_in"]) == ("Bearer", 3600)
    response = call_api(answer["session_token"])
    assert response.status_code == 200, response.content
    assert json.loads(response.content) == {"user": answer["user"]["username"], "sub": "user-1"}


def test_app_session_token_is_revoked_by_the_apps_sign_out(op, app):
    token = app_session_token(op)["session_token"]
    assert Client().delete(TOKEN, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 204
    response = call_api(token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_app_session_token_ends_with_its_session(op, app):
    token = app_session_token(op)["session_token"]
    Session.objects.all().delete()  # an admin, a back-channel logout, a disconnect: the session is gone
    assert call_api(token).status_code == 401


@override_settings(ACCOUNTS_APP_SESSION_TTL=1)
def test_app_session_token_is_short_lived(op, app):
    token = app_session_token(op)["session_token"]
    time.sleep(2.1)
    assert call_api(token).status_code == 401


def test_app_session_token_forged_is_refused(op, app):
    token = app_session_token(op)["session_token"]
    session_key = signing.TimestampSigner(salt="oidc_signin.app-session", sep=".").unsign_object(token)["k"]
    forged = signing.TimestampSigner(salt="another-salt", sep=".").sign_object({"k": session_key})
    assert call_api(forged).status_code == 401


def test_an_app_session_token_is_no_access_token(op, app):
    token = app_session_token(op)["session_token"]

    @bearer_token_required(audience="https://api.example")
    def api(request):
        return JsonResponse({})

    assert api(RequestFactory().get("/api", HTTP_AUTHORIZATION=f"Bearer {token}")).status_code == 401


def test_app_session_request_with_an_unknown_session_kind_is_refused(op, app):
    body = {"id_token": id_token(op, aud=APP_CLIENT, nonce="n-1"), "nonce": "n-1", "session": "forever"}
    assert_json_refused(post_app(Client(), body), 400, code="invalid_request", reason="session")


# --- the same guarantees as the redirect flow ---------------------------------------------------------


@override_settings(ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN=0)  # the back channel's budget would refetch every time
def test_posted_tokens_with_made_up_kids_spend_the_strict_refetch_budget(op, gis, app, browser):
    """Anyone can post a credential: invented kids may refetch the JWKS once per interval, no more."""
    first = {"id_token": id_token(op, aud=APP_CLIENT, nonce="first"), "nonce": "first"}
    assert post_app(Client(), first).status_code == 200  # the JWKS is cached now
    fetched = op.hits["/jwks"]
    assert fetched == 1
    for n in range(3):
        claims = claims_for(op, nonce=page_nonce(browser), jti=f"j-{n}")
        response = post_credential(browser, made_up_kid_token(claims, kid=f"invented-{n}"))
        assert_error_page(response, 400, code="unknown_key", reason="matches no RS256 key")
        body = {"id_token": made_up_kid_token(claims_for(op, aud=APP_CLIENT, nonce="n"), kid=f"x-{n}"), "nonce": "n"}
        assert_json_refused(post_app(Client(), body), 400, code="unknown_key", reason="matches no RS256 key")
    assert op.hits["/jwks"] - fetched <= 1


def test_credential_sign_in_obeys_the_providers_admission_policy(op, gis, browser):
    gis.allowed_email_domains = "corp.example"
    gis.save()
    response = post_credential(browser, id_token(op, nonce=page_nonce(browser)))
    assert_error_page(response, 403, code="sign_in_refused", reason="verified email domain")
    assert not signed_in(browser)


def test_credential_sign_in_is_recorded_for_back_channel_logout(op, gis, browser):
    post_credential(browser, id_token(op, nonce=page_nonce(browser), sid="op-session-1"))
    assert signed_in(browser)
    assert post_logout_token(logout_token(op)).status_code == 200
    assert not signed_in(browser)


def test_app_endpoint_answers_an_unknown_provider_in_json(db):
    response = post_app(Client(), {"id_token": "x", "nonce": "n"})
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_provider"


def test_a_disabled_provider_takes_no_credential(op, gis, browser):
    gis.enabled = False
    gis.save()
    response = post_credential(browser, id_token(op, nonce=page_nonce(browser)))
    assert_error_page(response, 404, code="unknown_provider")


def test_app_session_token_authenticates_a_drf_view_with_the_profile(op, app):
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from accounts.drf import BearerTokenAuthentication

    class Me(APIView):
        authentication_classes = [BearerTokenAuthentication]
        permission_classes = []
        bearer_profile = "app-session"

        def get(self, request):
            return Response({"user": request.user.get_username()})

    answer = app_session_token(op)
    request = RequestFactory().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {answer['session_token']}")
    response = Me.as_view()(request)
    assert response.status_code == 200
    assert response.data == {"user": answer["user"]["username"]}


def test_a_forged_credential_post_costs_the_provider_nothing(op, gis, browser):
    post_credential(browser, id_token(op, nonce=page_nonce(browser)), pair=None, HTTP_SEC_FETCH_SITE="cross-site")
    assert sum(op.hits.values()) == 0


def test_app_sign_out_without_a_session_token_is_refused(db, caplog):
    response = Client().delete(TOKEN)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_request"
    assert any("app sign-out refused" in r.getMessage() for r in caplog.records)
    assert Client().delete(TOKEN, HTTP_AUTHORIZATION="Bearer not.a.token").status_code == 401
