"""The whole sign-in flow through the real views, against the provider double over HTTP."""

from __future__ import annotations

import base64
import json
import logging
import re
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.sessions.models import Session
from django.db import InterfaceError, OperationalError
from django.test import Client

from accounts.models import Identity, Provider, SignInEvent
from tests.conftest import assert_error_page, pending_flows, refused_by_csrf, sign_in, start_login

pytestmark = pytest.mark.django_db
User = get_user_model()


def assert_signed_out(client):
    assert SESSION_KEY not in client.session


# --- starting a sign-in ---------------------------------------------------------------------------


def test_login_page_lists_enabled_providers_in_display_order(client, provider):
    Provider.objects.create(
        slug="first", name="First IdP", issuer="https://first.example", client_id="x", display_order=0
    )
    Provider.objects.create(slug="off", name="Disabled IdP", issuer="https://off.example", client_id="x", enabled=False)
    provider.display_order = 5
    provider.save()
    page = client.get("/accounts/login/").content.decode()
    assert "Disabled IdP" not in page
    assert page.index("First IdP") < page.index("Test OP")
    assert 'href="/accounts/test-op/login/"' in page


def test_start_sends_state_nonce_and_pkce_s256(client, op, provider):
    params = start_login(client, provider)
    assert params["response_type"] == "code"
    assert params["client_id"] == op.client_id
    assert params["redirect_uri"] == "http://testserver/accounts/test-op/callback/"
    assert params["scope"] == "openid email profile"
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 43 and len(params["nonce"]) >= 43 and len(params["code_challenge"]) == 43


def test_each_start_uses_fresh_secrets(client, provider):
    first, second = start_login(client, provider), start_login(client, provider)
    for name in ("state", "nonce", "code_challenge"):
        assert first[name] != second[name]


def test_the_pkce_verifier_never_travels_in_the_url(client, provider):
    response = client.get("/accounts/test-op/login/")
    [flow] = pending_flows(client).values()
    assert flow["code_verifier"] not in response["Location"]


def test_extra_authorization_parameters_are_sent(client, provider):
    provider.extra_auth_params = {"prompt": "select_account"}
    provider.save()
    assert start_login(client, provider)["prompt"] == "select_account"


def test_unknown_or_disabled_provider_is_404(client, provider):
    response = client.get("/accounts/nope/login/")
    assert_error_page(response, 404, "does not exist", code="unknown_provider", reason="no enabled provider 'nope'")
    provider.enabled = False
    provider.save()
    response = client.get("/accounts/test-op/login/")
    assert_error_page(response, 404, "does not exist", code="unknown_provider", reason="no enabled provider 'test-op'")


# --- the happy path -----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_sign_in_creates_user_and_session(client, op, provider, alg):
    op.id_token_alg = alg
    client.get("/accounts/login/")
    anonymous_key = client.session.session_key
    response = sign_in(client, op, provider)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/profile/"
    user = User.objects.get()
    assert int(client.session[SESSION_KEY]) == user.pk
    assert client.session.session_key != anonymous_key  # login() rotated the session key
    assert (user.username, user.email, user.first_name) == ("alice", "alice@example.com", "Alice")
    identity = Identity.objects.get()
    assert (identity.issuer, identity.subject, identity.user) == (op.issuer, "user-1", user)
    assert identity.claims["email"] == "alice@example.com" and "nonce" in identity.claims


def test_second_sign_in_reuses_the_user(client, op, provider):
    sign_in(client, op, provider)
    client.post("/accounts/logout/")
    sign_in(client, op, provider)
    assert User.objects.count() == 1 and Identity.objects.count() == 1


def test_profile_and_session_json_show_the_identity(client, op, provider):
    sign_in(client, op, provider)
    page = client.get("/accounts/profile/").content.decode()
    assert "alice@example.com" in page and "Test OP" in page
    data = client.get("/accounts/session/").json()
    assert data == {
        "authenticated": True,
        "user": {"username": "alice", "email": "alice@example.com"},
        "identities": [{"provider": "test-op", "provider_name": "Test OP", "issuer": op.issuer, "sub": "user-1"}],
    }


def test_session_json_for_anonymous(client):
    assert client.get("/accounts/session/").json() == {"authenticated": False, "user": None, "identities": []}


def test_profile_requires_sign_in(client):
    response = client.get("/accounts/profile/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


def test_token_request_uses_client_secret_basic_and_pkce(client, op, provider):
    sign_in(client, op, provider)
    _method, _path, headers, body = next(r for r in op.requests_log if r[1] == "/token")
    expected = base64.b64encode(f"{op.client_id}:{op.client_secret}".encode()).decode()
    assert headers["Authorization"] == f"Basic {expected}"
    assert "client_secret" not in body and "code_verifier=" in body


def test_token_request_uses_client_secret_post_when_only_that_is_supported(client, op, provider):
    op.metadata["token_endpoint_auth_methods_supported"] = ["client_secret_post"]
    assert sign_in(client, op, provider).status_code == 302
    _method, _path, headers, body = next(r for r in op.requests_log if r[1] == "/token")
    assert "Authorization" not in headers and "client_secret=" in body


def test_userinfo_is_called_with_the_access_token(client, op, provider, userinfo_always):
    op.next_user = {**op.next_user, "name": "From Userinfo"}
    sign_in(client, op, provider)
    assert op.hits["/userinfo"] == 1
    assert Identity.objects.get().claims["name"] == "From Userinfo"


def test_signed_userinfo_is_verified(client, op, provider, userinfo_always):
    op.userinfo_as_jwt = True
    assert sign_in(client, op, provider).status_code == 302


# --- next= ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("next_url", "landing"),
    [
        ("/accounts/session/", "/accounts/session/"),
        ("https://evil.example/", "/accounts/profile/"),
        ("//evil.example/path", "/accounts/profile/"),
        ("/\\evil.example", "/accounts/profile/"),
        ("javascript:alert(1)", "/accounts/profile/"),
        ("http://testserver/accounts/session/", "http://testserver/accounts/session/"),  # this host, spelled out
        ("http://testserver.evil.example/", "/accounts/profile/"),
    ],
)
def test_next_is_followed_only_when_same_site(client, op, provider, next_url, landing):
    assert sign_in(client, op, provider, next=next_url)["Location"] == landing


@pytest.mark.parametrize(
    ("next_url", "landing"),
    [
        ("https://testserver/accounts/session/", "https://testserver/accounts/session/"),
        ("http://testserver/accounts/session/", "/accounts/profile/"),  # a downgrade to plain http
    ],
)
def test_a_site_served_over_https_never_sends_the_person_on_over_plain_http(client, op, provider, next_url, landing):
    started = client.get(f"/accounts/{provider.slug}/login/", {"next": next_url}, secure=True)
    params = op.authorize(dict(parse_qsl(urlsplit(started["Location"]).query)))
    assert client.get(f"/accounts/{provider.slug}/callback/", params, secure=True)["Location"] == landing


# --- state: tampering, replay, CSRF, tabs ---------------------------------------------------------


def callback(client, params):
    return client.get("/accounts/test-op/callback/", params)


#: Why a callback whose state names no sign-in started in this session is refused (accounts.flow).
NO_SUCH_STATE = "callback state matches no sign-in started in this browser"


def test_tampered_state_is_rejected(client, op, provider):
    params = op.authorize(start_login(client, provider))
    response = callback(client, {**params, "state": params["state"] + "x"})
    assert_error_page(
        response, 400, "did not match a sign-in started from this browser", code="invalid_request", reason=NO_SUCH_STATE
    )
    assert_signed_out(client)
    assert op.hits["/token"] == 0


def test_missing_state_is_rejected(client, op, provider):
    params = op.authorize(start_login(client, provider))
    del params["state"]
    assert_error_page(callback(client, params), 400, "did not match", code="invalid_request", reason=NO_SUCH_STATE)


@pytest.mark.parametrize("repeated", ["code", "state"])
def test_repeated_parameters_are_rejected(client, op, provider, repeated, caplog):
    """RFC 6749 3.1: a parameter sent twice is a tampered response, even when its last copy is valid.

    Django's QueryDict answers the last value, so without the rule an attacker's first copy would
    be ignored and the sign-in would go through on the real one.
    """
    params = op.authorize(start_login(client, provider))
    query = f"state={params['state']}&code={params['code']}".replace(f"{repeated}=", f"{repeated}=forged&{repeated}=")
    response = client.get(f"/accounts/test-op/callback/?{query}")
    assert_error_page(response, 400, "did not match", code="invalid_request")
    assert_signed_out(client)
    assert f"reason=callback repeats the '{repeated}' parameter" in caplog.text
    assert SignInEvent.objects.get().reason == f"callback repeats the '{repeated}' parameter"


def test_replayed_callback_is_rejected(client, op, provider):
    params = op.authorize(start_login(client, provider))
    assert callback(client, params).status_code == 302
    client.post("/accounts/logout/")
    assert_error_page(callback(client, params), 400, "already used", code="invalid_request", reason=NO_SUCH_STATE)
    assert_signed_out(client)


def test_callback_in_another_browser_is_rejected(client, op, provider):
    """Login CSRF: an attacker's own code and state, delivered to the victim's browser."""
    params = op.authorize(start_login(Client(), provider))
    victim = Client()
    assert_error_page(callback(victim, params), 400, "did not match", code="invalid_request", reason=NO_SUCH_STATE)
    assert_signed_out(victim)
    assert User.objects.count() == 0


def test_state_of_another_provider_is_rejected(client, op, provider):
    other = Provider.objects.create(
        slug="other", name="Other", issuer=op.issuer, client_id=op.client_id, client_secret=op.client_secret
    )
    params = op.authorize(start_login(client, other))
    assert_error_page(
        callback(client, params), 400, "did not match",
        code="invalid_request", reason="callback for test-op carries the state of a other sign-in",
    )  # fmt: skip


def test_several_tabs_can_sign_in_at_once(client, op, provider):
    tab1 = op.authorize(start_login(client, provider, next="/accounts/session/"))
    tab2 = op.authorize(start_login(client, provider, next="/accounts/profile/"))
    assert callback(client, tab2)["Location"] == "/accounts/profile/"
    assert callback(client, tab1)["Location"] == "/accounts/session/"


def test_expired_sign_in_is_rejected(client, op, provider, settings):
    params = op.authorize(start_login(client, provider))
    settings.ACCOUNTS_OIDC_FLOW_TTL = 0
    assert_error_page(
        callback(client, params),
        400,
        "expired",
        code="invalid_request",
        reason=re.compile(r"^sign-in expired before its callback arrived$"),
    )


def test_pending_sign_ins_are_bounded(client, provider, settings):
    settings.ACCOUNTS_OIDC_MAX_PENDING_FLOWS = 3
    for _ in range(10):
        start_login(client, provider)
    assert len(pending_flows(client)) == 3


# --- the provider's answer ----------------------------------------------------------------------


def test_provider_error_response_shows_a_friendly_page(client, op, provider):
    params = start_login(client, provider)
    response = callback(client, {"state": params["state"], "error": "access_denied", "error_description": "<b>x"})
    assert_error_page(
        response, 403, "cancelled", code="provider_denied", reason="provider answered error='access_denied'"
    )
    assert "<b>x" not in response.content.decode()


def test_rfc9207_iss_parameter_is_checked_when_present(client, op, provider):
    op.send_iss_param = True
    params = op.authorize(start_login(client, provider))
    response = callback(client, {**params, "iss": "https://evil.example"})
    assert_error_page(
        response, 400, "did not match",
        code="invalid_request", reason="callback iss parameter names another issuer (RFC 9207 mix-up defence)",
    )  # fmt: skip


def test_rfc9207_iss_parameter_is_accepted_when_right(client, op, provider):
    op.send_iss_param = True
    op.metadata["authorization_response_iss_parameter_supported"] = True
    assert sign_in(client, op, provider).status_code == 302


def test_rfc9207_iss_parameter_is_required_when_advertised(client, op, provider):
    op.metadata["authorization_response_iss_parameter_supported"] = True
    op.send_iss_param = False
    params = op.authorize(start_login(client, provider))
    assert_error_page(
        callback(client, params), 400, "did not match",
        code="invalid_request", reason="callback lacks the iss parameter the provider promises (RFC 9207)",
    )  # fmt: skip


def test_callback_with_neither_code_nor_error_is_rejected(client, op, provider):
    params = start_login(client, provider)
    response = callback(client, {"state": params["state"]})
    assert_error_page(
        response, 400, "did not match", code="invalid_request", reason="callback has neither code nor error"
    )
    assert op.hits["/token"] == 0


def token_answer(body: dict) -> dict:
    """A fault for the double's token endpoint: it answers ``body`` as JSON, with HTTP 200."""
    return {"status": 200, "body": json.dumps(body), "content_type": "application/json"}


def test_token_response_without_an_id_token_is_rejected(client, op, provider):
    op.faults["/token"] = token_answer({"access_token": "at-1", "token_type": "Bearer"})
    assert_error_page(
        sign_in(client, op, provider), 400, "failed our security checks",
        code="token_rejected", reason="token response has no id_token",
    )  # fmt: skip
    assert_signed_out(client)


@pytest.mark.parametrize(
    "body",
    [{"token_type": "Bearer", "id_token": "x.y.z"}, {"access_token": "at-1", "token_type": "mac", "id_token": "x.y.z"}],
    ids=["no access_token", "not bearer"],
)
def test_token_response_without_a_bearer_access_token_is_a_provider_problem(client, op, provider, body):
    op.faults["/token"] = token_answer(body)
    assert_error_page(
        sign_in(client, op, provider), 502, "not working correctly",
        code="provider_misconfigured", reason="token response lacks a bearer access_token",
    )  # fmt: skip


def test_token_endpoint_speaking_none_of_our_auth_methods_is_a_provider_problem(client, op, provider):
    op.metadata["token_endpoint_auth_methods_supported"] = ["tls_client_auth"]
    assert_error_page(
        sign_in(client, op, provider), 502, "not working correctly",
        code="provider_misconfigured", reason="token endpoint supports none of our auth methods (['tls_client_auth'])",
    )  # fmt: skip
    assert op.hits["/token"] == 0


def test_provider_supporting_only_private_key_jwt_gets_it_and_a_site_without_keys_says_so(client, op, provider):
    op.metadata["token_endpoint_auth_methods_supported"] = ["private_key_jwt"]
    assert_error_page(
        sign_in(client, op, provider), 503, "not set up correctly",
        code="site_key_unavailable", reason="this site has no current signing key (run manage.py oidc_keys generate)",
    )  # fmt: skip
    assert op.hits["/token"] == 0


def test_code_refused_by_token_endpoint(client, op, provider):
    params = op.authorize(start_login(client, provider))
    assert_error_page(
        callback(client, {**params, "code": "forged"}), 400, "did not accept this sign-in",
        code="token_rejected", reason="token endpoint refused the code: error='invalid_grant'",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        (lambda h, c: (h, {**c, "nonce": "other"}), "ID token nonce claim is not valid"),
        (lambda h, c: (h, {**c, "aud": "other-client"}), "ID token aud claim is not valid"),
        (lambda h, c: (h, {**c, "iss": "https://evil.example"}), "ID token iss claim is not valid"),
        (lambda h, c: (h, {**c, "exp": c["iat"] - 3600}), "ID token has expired"),
        (lambda h, c: (h, {k: v for k, v in c.items() if k != "sub"}), "ID token has no sub claim"),
    ],
)
def test_bad_id_token_ends_on_error_page_without_session(client, op, provider, caplog, mutation, reason):
    op.id_token_mutator = mutation
    with caplog.at_level(logging.WARNING):
        response = sign_in(client, op, provider)
    assert_error_page(response, 400, "failed our security checks", code="token_rejected", reason=reason)
    assert_signed_out(client)
    assert User.objects.count() == 0
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and f"code=token_rejected reason={reason}" in lines[0]  # exactly one line, ours


def test_unsigned_id_token_is_rejected(client, op, provider):
    op.id_token_override = lambda token, claims, header: op.unsigned(claims)
    assert_error_page(
        sign_in(client, op, provider), 400, "failed our security checks",
        code="token_rejected", reason="ID token is unsigned (alg 'none')",
    )  # fmt: skip


def test_userinfo_for_another_subject_is_rejected(client, op, provider, userinfo_always):
    op.userinfo_mutator = lambda info: {**info, "sub": "someone-else"}
    assert_error_page(
        sign_in(client, op, provider), 400, "failed our security checks",
        code="token_rejected", reason="userinfo sub differs from the ID token sub",
    )  # fmt: skip
    assert_signed_out(client)


def test_logs_never_contain_tokens_codes_or_secrets(client, op, provider, caplog, userinfo_always):
    op.userinfo_mutator = lambda info: {**info, "sub": "someone-else"}
    params = op.authorize(start_login(client, provider))
    with caplog.at_level(logging.DEBUG):
        callback(client, params)
    issued = op.issued_tokens[-1]
    for secret in (op.client_secret, params["code"], params["state"], issued["access_token"], issued["id_token"]):
        assert secret not in caplog.text


def test_key_rotation_through_the_flow_costs_one_jwks_fetch(client, op, provider):
    sign_in(client, op, provider)
    client.post("/accounts/logout/")
    op.rotate("RSA")
    assert sign_in(client, op, provider).status_code == 302
    assert op.hits["/jwks"] == 2


def test_steady_state_sign_in_fetches_no_metadata_or_keys(client, op, provider):
    sign_in(client, op, provider)
    client.post("/accounts/logout/")
    before = (op.hits["/.well-known/openid-configuration"], op.hits["/jwks"])
    sign_in(client, op, provider)
    assert (op.hits["/.well-known/openid-configuration"], op.hits["/jwks"]) == before


# --- an unreachable or misbehaving provider -------------------------------------------------------


def test_provider_down_at_start_is_502(client, op, provider):
    op.faults["/.well-known/openid-configuration"] = {"close": True}
    assert_error_page(
        client.get("/accounts/test-op/login/"), 502, "could not reach the provider",
        code="provider_unavailable", reason="discovery document unreachable",
    )  # fmt: skip


def test_slow_token_endpoint_is_504(client, op, provider, settings):
    settings.ACCOUNTS_OIDC_HTTP_TIMEOUT = (1.0, 0.3)
    op.faults["/token"] = {"delay": 1.0}
    response = sign_in(client, op, provider)
    assert_error_page(response, 504, "took too long", code="provider_timeout", reason="token endpoint timed out")
    assert_signed_out(client)


def test_token_endpoint_answering_garbage_is_502(client, op, provider):
    op.faults["/token"] = {"status": 200, "body": "<html>oops</html>", "content_type": "text/html"}
    assert_error_page(
        sign_in(client, op, provider), 502, "could not reach the provider",
        code="provider_unavailable", reason="token endpoint answered HTTP 200 with a body that is not JSON",
    )  # fmt: skip


def test_token_endpoint_5xx_is_502(client, op, provider):
    op.faults["/token"] = {"status": 500, "body": "boom", "content_type": "text/plain"}
    assert_error_page(
        sign_in(client, op, provider), 502, "could not reach the provider",
        code="provider_unavailable", reason="token endpoint answered HTTP 500",
    )  # fmt: skip


def test_huge_jwks_is_refused(client, op, provider, settings):
    settings.ACCOUNTS_OIDC_MAX_RESPONSE_BYTES = 64 * 1024
    op.faults["/jwks"] = {"body_bytes": 200 * 1024}
    assert_error_page(
        sign_in(client, op, provider), 502, "could not reach the provider",
        code="provider_unavailable", reason=re.compile(r"^JWKS answered .*more than the 65536"),
    )  # fmt: skip


def test_discovery_with_another_issuer_is_refused(client, op, provider):
    op.metadata["issuer"] = "https://evil.example"
    assert_error_page(
        client.get("/accounts/test-op/login/"), 502, "not working correctly",
        code="provider_misconfigured", reason="discovery document says issuer 'https://evil.example'",
    )  # fmt: skip


# --- logout -------------------------------------------------------------------------------------


def test_logout_requires_post(client, op, provider):
    sign_in(client, op, provider)
    response = client.get("/accounts/logout/")
    assert response.status_code == 405 and response["Allow"] == "POST"  # require_POST's answer
    assert SESSION_KEY in client.session


def test_logout_is_csrf_protected(op, provider, caplog):
    browser = Client(enforce_csrf_checks=True)
    sign_in(browser, op, provider)
    assert browser.post("/accounts/logout/").status_code == 403
    assert refused_by_csrf(caplog)
    assert SESSION_KEY in browser.session


def test_logout_without_end_session_endpoint_returns_to_the_site(client, op, provider):
    del op.metadata["end_session_endpoint"]
    sign_in(client, op, provider)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and urlsplit(response["Location"]).path == "/accounts/login/"
    assert_signed_out(client)


# --- hostile claims -------------------------------------------------------------------------------


@pytest.mark.services  # PostgreSQL refuses NUL in text and NaN in JSON: run against it too
def test_claims_with_nul_characters_and_nan_do_not_break_sign_in(client, op, provider, caplog):
    op.next_user = {**op.next_user, "name": "Al\x00ice", "given_name": "Al\x00", "score": float("nan")}
    assert sign_in(client, op, provider).status_code == 302
    identity = Identity.objects.get()
    # Dropped, not altered: "Alice" is not what the provider said either.
    assert "name" not in identity.claims and "given_name" not in identity.claims and identity.claims["score"] is None
    assert User.objects.get().first_name == ""
    assert "dropped claim(s) holding text no database stores: name, given_name" in caplog.text


def test_token_endpoint_answering_absurdly_nested_json_is_502(client, op, provider):
    op.faults["/token"] = {"status": 200, "body": "[" * 50000 + "]" * 50000, "content_type": "application/json"}
    assert_error_page(
        sign_in(client, op, provider), 502, "could not reach the provider",
        code="provider_unavailable", reason="token endpoint answered JSON that nests more than 32 levels",
    )  # fmt: skip


def test_wrong_client_secret_is_shown_as_a_provider_problem_not_the_persons(client, op, provider):
    provider.client_secret = "not-the-secret"
    provider.save()
    response = sign_in(client, op, provider)
    assert_error_page(
        response, 502, "not working correctly",
        code="provider_misconfigured",
        reason="token endpoint refused this site's client credentials: error='invalid_client'",
    )  # fmt: skip


def test_malformed_auth_methods_in_discovery_is_a_502_not_a_500(client, op, provider):
    op.metadata["token_endpoint_auth_methods_supported"] = 42
    assert_error_page(
        sign_in(client, op, provider), 502, "not working correctly",
        code="provider_misconfigured", reason="discovery token_endpoint_auth_methods_supported is not a list",
    )  # fmt: skip


def test_an_unreachable_provider_is_logged_once_with_its_reason(client, op, provider, caplog):
    op.faults["/.well-known/openid-configuration"] = {"close": True}
    with caplog.at_level(logging.INFO):
        client.get("/accounts/test-op/login/")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "discovery document unreachable" in lines[0]


# --- anonymous strangers leave nothing behind; a busy database is a 503, not a 500 -----------------


def test_callback_matching_no_started_sign_in_creates_no_session(client, op, provider):
    response = client.get("/accounts/test-op/callback/", {"state": "made-up", "code": "made-up"})
    assert_error_page(
        response, 400, "did not match a sign-in started from this browser", code="invalid_request", reason=NO_SUCH_STATE
    )
    assert settings.SESSION_COOKIE_NAME not in response.cookies
    assert Session.objects.count() == 0


@pytest.mark.parametrize("error", [OperationalError("database is locked"), InterfaceError("connection already closed")])
def test_busy_database_is_a_503_page_with_one_log_line(client, op, provider, monkeypatch, caplog, error):
    def busy(**kwargs):
        raise error

    monkeypatch.setattr("accounts.flow.sign_in_identity", busy)
    with caplog.at_level(logging.WARNING):
        response = sign_in(client, op, provider)
    assert_error_page(response, 503, "the site is busy right now", code="database_busy")
    assert response["Retry-After"] == "5"
    assert [r.getMessage() for r in caplog.records] == [
        f"sign-in failed: provider=test-op code=database_busy reason=database unavailable "
        f"({type(error).__name__}: {error})"
    ]
    assert_signed_out(client)
    assert not Identity.objects.exists()


def test_sign_in_writes_commit_together_or_not_at_all(client, op, provider, monkeypatch):
    """A failure after the user and identity were written (here: the session link) leaves neither."""

    def fails(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr("accounts.session._remember", fails)
    response = sign_in(client, op, provider)
    assert_error_page(
        response, 503, code="database_busy", reason="database unavailable (OperationalError: database is locked)"
    )
    assert not User.objects.exists() and not Identity.objects.exists()
    assert_signed_out(client)


@pytest.mark.parametrize("path", ["/accounts/logout/", "/accounts/identities/1/disconnect/"])
def test_busy_database_when_signing_out_or_disconnecting_is_a_503_page(client, op, provider, monkeypatch, path):
    sign_in(client, op, provider)

    def busy(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr("accounts.session.auth_logout", busy)
    monkeypatch.setattr("accounts.views.disconnect_identity", busy)
    assert_error_page(
        client.post(path), 503, "the site is busy right now",
        code="database_busy", reason="database unavailable (OperationalError: database is locked)",
    )  # fmt: skip


def test_the_sign_in_is_kept_by_the_configured_backend_not_a_hard_coded_one(client, op, provider, settings):
    """With ModelBackend not listed, a hard-coded path signed people in for one response only."""
    settings.AUTHENTICATION_BACKENDS = ["tests.test_flow.ProjectBackend"]
    assert sign_in(client, op, provider).status_code == 302
    assert client.session["_auth_user_backend"] == "tests.test_flow.ProjectBackend"
    assert client.get("/accounts/session/").json()["authenticated"]


class ProjectBackend(ModelBackend):
    """A project's own backend, a ModelBackend subclass (as most are)."""


# --- a connect's announcement carries the callback's request ------------------------------------------
# Found by mutation testing (mutmut over accounts/flow.py): nothing failed when the connect dropped it.


def _statements(captured) -> list[str]:
    """The SQL of a callback, each reduced to its verb and table: ``UPDATE oidc_signin_identity``."""
    kinds = []
    for query in captured:
        words = query["sql"].replace('"', "").split()
        verb = words[0].upper()
        if verb in ("SELECT", "DELETE"):
            table = words[words.index("FROM") + 1]
        elif verb == "INSERT":
            table = words[2]
        elif verb == "UPDATE":
            table = words[1]
        else:
            table = ""  # BEGIN, COMMIT, SAVEPOINT, RELEASE
        kinds.append(f"{verb} {table}".strip())
    return kinds


@pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3", reason="SQLite's BEGIN")
def test_a_returning_sign_in_writes_in_one_transaction_and_the_session_once(client, op, provider, transactional_db):
    """Identity, last login, the rotated session, its provider link and the audit row commit together.

    Each extra transaction is a commit the single SQLite writer waits for, each savepoint two
    statements; the only savepoint left is Django's own around the new session row. The session
    is written once: Django's ``login()`` would INSERT it when cycling the key, then the session
    middleware UPDATE it in a second transaction.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert sign_in(client, op, provider).status_code == 302
    client.logout()
    params = op.authorize(start_login(client, provider))
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"/accounts/{provider.slug}/callback/", params).status_code == 302
    kinds = _statements(queries.captured_queries)
    sign_in_transaction = kinds[kinds.index("BEGIN") : kinds.index("COMMIT") + 1]
    assert {
        "UPDATE oidc_signin_identity",
        "UPDATE auth_user",
        "INSERT django_session",
        "INSERT oidc_signin_providersession",
        "INSERT oidc_signin_signinevent",
    } <= set(sign_in_transaction)
    assert kinds.count("BEGIN") == 1, kinds  # the session middleware has nothing left to save
    # The signed-in session, written once; the visitor had none (a started sign-in waits in a cookie).
    assert [k for k in kinds if k.endswith(" django_session") and not k.startswith("SELECT")] == [
        "INSERT django_session"
    ], kinds
    assert kinds.count("SAVEPOINT") == 1, kinds  # Django's, creating the rotated session's row
    # Issue 24: at most 6 statements. The provider row is kept in-process (accounts.provider_cache)
    # and a new session's key is not looked up first (accounts.session._save_new_key_at_once).
    assert [k for k in kinds if k.split()[0] in ("SELECT", "INSERT", "UPDATE", "DELETE")] == [
        "SELECT oidc_signin_identity",
        "UPDATE oidc_signin_identity",
        "UPDATE auth_user",
        "INSERT django_session",
        "INSERT oidc_signin_providersession",
        "INSERT oidc_signin_signinevent",
    ], kinds


def test_a_failed_audit_write_fails_the_sign_in_rather_than_leaving_it_unaudited(client, op, provider, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(SignInEvent, "save", refuse)
    response = sign_in(client, op, provider)
    assert response.status_code == 503
    assert SESSION_KEY not in client.session
    assert not Identity.objects.exists()


def test_a_repeated_parameter_is_named_but_bounded_in_the_reason(client, op, provider):
    params = op.authorize(start_login(client, provider))
    name = "p" * 40
    response = client.get(f"/accounts/test-op/callback/?state={params['state']}&{name}=1&{name}=2")
    assert_error_page(response, 400, code="invalid_request", reason=f"callback repeats the {'p' * 32!r} parameter")
    assert op.hits["/token"] == 0


# --- a connect's callback belongs to the user who started it; the backend that keeps a sign-in -------------


def test_a_started_connect_carried_into_another_users_session_is_refused_by_its_own_rule(
    client, op, op2, provider, second
):
    from tests.conftest import start_connect

    sign_in(client, op, provider)
    params = op2.authorize(start_connect(client, second))  # alice's started connect, in her browser
    client.force_login(User.objects.create_user("mallory"))  # the same browser, now mallory's session
    assert_error_page(
        client.get("/accounts/second-op/callback/", params), 400, code="invalid_request",
        reason=re.compile(r"^connect callback arrived in a session of another \(or no\) user$"),
    )  # fmt: skip
    assert not Identity.objects.filter(provider=second).exists()


def test_the_sign_in_is_kept_by_the_first_model_backend_not_the_first_backend(client, op, provider, settings):
    """A backend that cannot find users by primary key (``BaseBackend``) listed first is passed over."""
    settings.AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.BaseBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    assert sign_in(client, op, provider).status_code == 302
    assert client.session["_auth_user_backend"] == "django.contrib.auth.backends.ModelBackend"
    assert client.get("/accounts/session/").json()["authenticated"]


def test_without_a_model_backend_the_sign_in_names_the_check_that_says_so(settings):
    from django.core.exceptions import ImproperlyConfigured

    from accounts.session import session_backend

    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.BaseBackend"]
    with pytest.raises(ImproperlyConfigured) as missing:
        session_backend()
    assert (
        str(missing.value) == "AUTHENTICATION_BACKENDS has no ModelBackend to keep provider sign-ins (oidc_signin.E002)"
    )
