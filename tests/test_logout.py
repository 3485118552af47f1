"""Signing out: locally, at the provider (RP-initiated logout), and from the provider (back-channel)."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.db import OperationalError
from django.test import Client
from joserfc.jwk import RSAKey

from accounts import session as sessions
from accounts.errors import TokenRejected
from accounts.models import Provider, ProviderSession, SignInEvent
from accounts.oidc import discovery, tokens
from tests.conftest import (
    assert_logout_refused,
    b64url,
    logout_claims,
    logout_token,
    post_logout_token,
    sign_in,
    signed_in,
)
from tests.op_double import OpenIDProviderDouble

pytestmark = pytest.mark.django_db


# --- local and RP-initiated logout ----------------------------------------------------------------


def test_logout_signs_out_locally(client, op, provider):
    del op.metadata["end_session_endpoint"]
    sign_in(client, op, provider)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert not signed_in(client)
    assert "You have been signed out." in client.get("/accounts/login/").content.decode()


def test_logout_forgets_the_sessions_provider_link(client, op, provider):
    sign_in(client, op, provider)
    assert ProviderSession.objects.count() == 1
    client.post("/accounts/logout/")
    assert not ProviderSession.objects.exists()


def test_logout_continues_at_the_providers_end_session_endpoint(client, op, provider):
    sign_in(client, op, provider)
    id_token = op.issued_tokens[-1]["id_token"]
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    url = urlsplit(response["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == op.metadata["end_session_endpoint"]
    assert dict(parse_qsl(url.query)) == {
        "id_token_hint": id_token,
        "client_id": op.client_id,
        "post_logout_redirect_uri": "http://testserver/accounts/login/",
    }
    assert SESSION_KEY not in client.session  # signed out here before going to the provider


def test_id_token_hint_is_the_one_of_this_sessions_sign_in(op, provider):
    first, second = Client(), Client()
    sign_in(first, op, provider)
    first_token = op.issued_tokens[-1]["id_token"]
    sign_in(second, op, provider)
    hint = dict(parse_qsl(urlsplit(first.post("/accounts/logout/")["Location"]).query))["id_token_hint"]
    assert hint == first_token != op.issued_tokens[-1]["id_token"]


def test_following_the_providers_redirect_comes_back_signed_out(client, op, provider):
    sign_in(client, op, provider)
    at_provider = requests.get(client.post("/accounts/logout/")["Location"], allow_redirects=False, timeout=5)
    assert len(op.logout_requests) == 1
    assert at_provider.status_code == 302
    back = urlsplit(at_provider.headers["Location"])
    assert (back.scheme, back.netloc) == ("http", "testserver")
    page = client.get(back.path, dict(parse_qsl(back.query)))
    assert page.status_code == 200 and "You have been signed out." in page.content.decode()
    assert not signed_in(client)


def forget_provider_documents():
    """Make the next metadata lookup go to the network, as after the cached copy expired."""
    caches["default"].clear()
    discovery.forget_in_process()


def test_logout_works_when_the_provider_is_unreachable(client, op, provider):
    sign_in(client, op, provider)
    forget_provider_documents()
    op.faults["/.well-known/openid-configuration"] = {"close": True}
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert not signed_in(client)


def test_logout_does_not_wait_long_for_a_slow_provider(client, op, provider, settings):
    sign_in(client, op, provider)
    forget_provider_documents()
    settings.ACCOUNTS_OIDC_HTTP_TIMEOUT = (1.0, 0.3)
    op.faults["/.well-known/openid-configuration"] = {"delay": 2.0}
    started = time.monotonic()
    response = client.post("/accounts/logout/")
    assert time.monotonic() - started < 1.5
    assert response["Location"] == "/accounts/login/" and not signed_in(client)


def test_logout_of_a_disabled_provider_stays_local(client, op, provider):
    sign_in(client, op, provider)
    provider.enabled = False
    provider.save()
    assert client.post("/accounts/logout/")["Location"] == "/accounts/login/"
    assert not op.logout_requests and not signed_in(client)


def test_logout_when_signed_out_goes_to_the_login_page(client, op, provider):
    assert client.post("/accounts/logout/")["Location"] == "/accounts/login/"


# --- back-channel logout ------------------------------------------------------------------------


def browser_signed_in_as(op, provider, sub: str, sid: str | None) -> Client:
    op.next_user = {**op.next_user, "sub": sub, "preferred_username": sub}
    if sid is None:
        op.next_user.pop("sid", None)
    else:
        op.next_user["sid"] = sid
    browser = Client()
    assert sign_in(browser, op, provider).status_code == 302
    assert signed_in(browser)
    return browser


@pytest.fixture(
    params=[
        "django.contrib.sessions.backends.db",
        "django.contrib.sessions.backends.cache",
        "django.contrib.sessions.backends.cached_db",
    ]
)
def session_engine(request, settings):
    settings.SESSION_ENGINE = request.param
    return request.param


def test_sid_in_the_id_token_is_remembered_with_the_session(op, provider):
    browser = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    link = ProviderSession.objects.get()
    assert (link.issuer, link.subject, link.sid) == (op.issuer, "user-1", "op-session-1")
    assert link.session_key == browser.session.session_key


@pytest.mark.services  # also with PostgreSQL and the shared Redis cache
def test_logout_token_by_sid_ends_that_session_only(op, provider, session_engine):
    victim = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    same_user_elsewhere = browser_signed_in_as(op, provider, "user-1", "op-session-2")
    someone_else = browser_signed_in_as(op, provider, "user-2", "op-session-3")
    assert type(victim.session).__module__ == session_engine
    response = post_logout_token(logout_token(op, sid="op-session-1"))
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert not signed_in(victim)
    assert signed_in(same_user_elsewhere) and signed_in(someone_else)


@pytest.mark.services  # also with PostgreSQL and the shared Redis cache
def test_logout_token_by_sub_ends_every_session_of_that_subject(op, provider, session_engine):
    laptop = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    phone = browser_signed_in_as(op, provider, "user-1", None)
    someone_else = browser_signed_in_as(op, provider, "user-2", "op-session-3")
    assert post_logout_token(logout_token(op, sid=None, sub="user-1")).status_code == 200
    assert not signed_in(laptop) and not signed_in(phone)
    assert signed_in(someone_else)
    assert set(ProviderSession.objects.values_list("subject", flat=True)) == {"user-2"}


def test_logout_token_with_sid_and_sub_must_match_both(op, provider):
    victim = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    assert post_logout_token(logout_token(op, sid="op-session-1", sub="user-2")).status_code == 200
    assert signed_in(victim)


def test_logout_token_for_an_unknown_session_changes_nothing(op, provider):
    victim = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    assert post_logout_token(logout_token(op, sid="some-other-session")).status_code == 200
    assert signed_in(victim)


def test_backchannel_logout_requires_post(op, provider):
    response = Client().get("/accounts/test-op/backchannel-logout/")
    assert response.status_code == 405 and response["Allow"] == "POST"  # require_POST's answer


def _swap_payload(token: str, other: str) -> str:
    """``token``'s header and signature around ``other``'s claims."""
    header, _payload, signature = token.split(".")
    return ".".join([header, other.split(".")[1], signature])


BAD_TOKENS = {
    "bad signature": lambda op: op.sign(
        logout_claims(op), key=RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})
    ),
    "tampered claims": lambda op: _swap_payload(logout_token(op), logout_token(op, sid="op-session-1", jti="other")),
    "alg none": lambda op: op.unsigned(logout_claims(op)),
    "HMAC not allowed for the provider": lambda op: op.sign(logout_claims(op), alg="HS256"),
    "with nonce": lambda op: logout_token(op, nonce="n-1"),
    "wrong audience": lambda op: logout_token(op, aud="another-client"),
    "wrong issuer": lambda op: logout_token(op, iss="https://evil.example"),
    "expired": lambda op: logout_token(op, iat=int(time.time()) - 600, exp=int(time.time()) - 300),
    "missing events": lambda op: logout_token(op, events=None),
    "other event": lambda op: logout_token(op, events={"http://schemas.openid.net/event/other": {}}),
    "missing jti": lambda op: logout_token(op, jti=None),
    "missing iat": lambda op: logout_token(op, iat=None),
    "neither sid nor sub": lambda op: logout_token(op, sid=None),
    "empty sid": lambda op: logout_token(op, sid=""),
    "empty sub": lambda op: logout_token(op, sid=None, sub=""),
    "an ID token": lambda op: op.issued_tokens[-1]["id_token"],
    "not a JWT": lambda op: "not-a-token",
    "empty": lambda op: "",
}


#: The rule that refuses each of ``BAD_TOKENS``: (code, the start of the reason it logs).
BAD_TOKEN_REASONS = {
    "bad signature": ("token_rejected", "logout token signature is not valid (bad_signature)"),
    "tampered claims": ("token_rejected", "logout token signature is not valid (bad_signature)"),
    "alg none": ("token_rejected", "logout token is unsigned (alg 'none')"),
    "HMAC not allowed for the provider": (
        "token_rejected",
        "logout token alg HS256 is not allowed for provider test-op",
    ),
    "with nonce": ("token_rejected", "logout token carries a nonce"),
    "wrong audience": ("token_rejected", "logout token aud claim is not valid"),
    "wrong issuer": ("token_rejected", "logout token iss claim is not valid"),
    "expired": ("token_rejected", "logout token has expired"),
    "missing events": ("token_rejected", "logout token lacks the back-channel logout event"),
    "other event": ("token_rejected", "logout token lacks the back-channel logout event"),
    "missing jti": ("token_rejected", "logout token has no jti claim"),
    "missing iat": ("token_rejected", "logout token has no iat claim"),
    "neither sid nor sub": ("token_rejected", "logout token has neither sid nor sub"),
    "empty sid": ("token_rejected", "logout token sid or sub is not a non-empty string"),
    "empty sub": ("token_rejected", "logout token sid or sub is not a non-empty string"),
    # Refused as the first claim check finds it: it has no jti (nor events). The nonce rule, which
    # keeps an ID token that had them out too, is pinned by "with nonce".
    "an ID token": ("token_rejected", "logout token has no jti claim"),
    "not a JWT": ("token_rejected", "logout token is not a compact JWS"),
    "empty": ("invalid_request", "back-channel logout request has no logout_token"),
}


def test_every_bad_token_names_the_rule_that_refuses_it():
    assert BAD_TOKEN_REASONS.keys() == BAD_TOKENS.keys()


@pytest.mark.parametrize("name", BAD_TOKENS)
def test_invalid_logout_token_is_400_and_ends_nothing(op, provider, name):
    victim = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    response = post_logout_token(BAD_TOKENS[name](op))
    code, reason = BAD_TOKEN_REASONS[name]
    assert_logout_refused(response, 400, code=code, reason=reason)
    assert signed_in(victim)
    assert ProviderSession.objects.count() == 1


@pytest.mark.parametrize("names", [{"sid": ""}, {"sid": None, "sub": ""}, {"sid": "", "sub": "user-1"}])
def test_logout_token_naming_an_empty_session_or_subject_is_rejected(op, provider, names):
    """Empty means nothing to match: read as "no filter", it would end every session of the provider."""
    with pytest.raises(TokenRejected, match=r"^logout token sid or sub is not a non-empty string$"):
        tokens.verify_logout_token(provider, logout_token(op, **names), jwks_uri=op.metadata["jwks_uri"])


def test_missing_logout_token_is_400(op, provider):
    victim = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    response = Client().post("/accounts/test-op/backchannel-logout/", {})
    assert_logout_refused(
        response, 400, code="invalid_request", reason="back-channel logout request has no logout_token"
    )
    assert signed_in(victim)


JTI_REPLAY = "logout token was already used (jti replay)"


@pytest.mark.services  # also with PostgreSQL and the shared Redis cache
def test_replayed_logout_token_is_400(op, provider):
    token = logout_token(op, sid="op-session-1")
    browser_signed_in_as(op, provider, "user-1", "op-session-1")
    assert post_logout_token(token).status_code == 200
    again = browser_signed_in_as(op, provider, "user-1", "op-session-1")  # signs in again, same sid
    assert_logout_refused(post_logout_token(token), 400, code="invalid_request", reason=JTI_REPLAY)
    assert signed_in(again)


def test_jti_is_single_use_even_in_another_token(op, provider):
    browser_signed_in_as(op, provider, "user-1", "op-session-1")
    assert post_logout_token(logout_token(op, jti="once")).status_code == 200
    victim = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    assert_logout_refused(
        post_logout_token(logout_token(op, jti="once")), 400, code="invalid_request", reason=JTI_REPLAY
    )
    assert signed_in(victim)


def test_logout_token_signed_with_a_rotated_key_is_accepted(op, provider):
    victim = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    op.rotate("RSA")
    assert post_logout_token(logout_token(op)).status_code == 200
    assert not signed_in(victim)


def test_logout_token_for_an_unknown_provider_is_404(op, provider):
    victim = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    response = post_logout_token(logout_token(op), slug="nope")
    assert_logout_refused(response, 404, code="unknown_provider", reason="no enabled provider 'nope'")
    assert signed_in(victim)


def test_logout_token_for_a_disabled_provider_is_404(op, provider):
    victim = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    provider.enabled = False
    provider.save()
    response = post_logout_token(logout_token(op))
    assert_logout_refused(response, 404, code="unknown_provider", reason="no enabled provider 'test-op'")
    assert signed_in(victim)


def test_logout_token_at_another_providers_endpoint_is_400(op, provider):
    """The token is checked against the provider named in the URL: its keys, its issuer and its client id.

    Each check is reached on its own: a token of ``op`` fails at the other provider's keys before
    its claims are read, so the claim checks get tokens the other provider's key did sign.
    """
    victim = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    with OpenIDProviderDouble(client_id="other-client") as other_op:
        Provider.objects.create(slug="other", name="Other", issuer=other_op.issuer, client_id="other-client")
        cases = [
            (logout_token(op), "logout token signature is not valid"),
            (other_op.sign(logout_claims(op, aud="other-client")), "logout token iss claim is not valid"),
            (other_op.sign(logout_claims(op, iss=other_op.issuer)), "logout token aud claim is not valid"),
        ]
        for token, reason in cases:
            assert_logout_refused(post_logout_token(token, slug="other"), 400, code="token_rejected", reason=reason)
    assert signed_in(victim)


@pytest.mark.parametrize("session_engine", ["django.contrib.sessions.backends.db"], indirect=True)
def test_pruning_forgets_links_to_sessions_that_no_longer_exist(op, provider, session_engine):
    from io import StringIO

    from django.core.management import call_command

    alive = browser_signed_in_as(op, provider, "alice", "sid-alive")
    gone = browser_signed_in_as(op, provider, "bob", "sid-gone")
    gone.session.flush()  # the session ended without a logout (expired and cleared, say)
    out = StringIO()
    call_command("prune_signin_events", stdout=out)
    assert "Forgot 1 link(s)" in out.getvalue()
    assert list(ProviderSession.objects.values_list("sid", flat=True)) == ["sid-alive"]
    assert signed_in(alive)


# --- the provider-session record follows the session; counts are true; replay memory lasts --------


@pytest.mark.parametrize(
    "session_engine",
    ["django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cache"],
    indirect=True,
)
def test_logout_after_a_password_change_still_ends_the_session(op, provider, session_engine, settings):
    """A password change gives the session a new key (Django's update_session_auth_hash)."""
    settings.ROOT_URLCONF = "tests.urls_password_change"
    browser = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    old_key = browser.session.session_key
    assert browser.post("/password-change/").status_code == 200
    assert browser.session.session_key != old_key and signed_in(browser)

    assert post_logout_token(logout_token(op, sid="op-session-1")).status_code == 200

    assert not signed_in(browser)
    assert ProviderSession.objects.count() == 0


def test_a_busy_database_is_a_503_the_provider_can_retry_with_the_same_token(op, provider, monkeypatch, caplog):
    """Section 2.8 lets the provider retry; the jti must not make that retry a refused replay."""
    victim = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    token = logout_token(op, sid="op-session-1")
    real_end = sessions.end

    def busy(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(sessions, "end", busy)
    with caplog.at_level("WARNING", logger="accounts"):
        response = post_logout_token(token)
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["error"] == "temporarily_unavailable"
    assert "reason=database unavailable (OperationalError: database is locked)" in caplog.text
    assert signed_in(victim)

    monkeypatch.setattr(sessions, "end", real_end)  # the database is back: the provider retries
    assert post_logout_token(token).status_code == 200
    assert not signed_in(victim)
    assert_logout_refused(post_logout_token(token), 400, code="invalid_request", reason=JTI_REPLAY)


def test_logout_counts_only_sessions_really_ended(op, provider, caplog):
    browser = browser_signed_in_as(op, provider, "user-1", "op-session-1")
    browser.session.flush()  # ended here without a logout (expired and cleared, say)
    with caplog.at_level("INFO", logger="accounts"):
        assert post_logout_token(logout_token(op, sid="op-session-1")).status_code == 200
    assert "ended 0 session(s)" in caplog.text
    assert SignInEvent.objects.get(action="backchannel-logout").reason == "ended 0 session(s)"


def test_logout_token_jti_is_remembered_until_the_token_expires(op, provider, monkeypatch):
    """A token valid for three days must not be replayable after one (the old memory was 24 h)."""
    now = time.time()
    token = logout_token(op, iat=int(now), exp=int(now) + 3 * 86400)
    assert post_logout_token(token).status_code == 200
    monkeypatch.setattr(time, "time", lambda: now + 25 * 3600)
    response = post_logout_token(token)
    assert_logout_refused(response, 400, code="invalid_request", reason=JTI_REPLAY)
    assert SignInEvent.objects.filter(reason__contains="jti replay").count() == 1


# --- anonymous requests leave nothing behind; what they send cannot forge a log line --------------


def test_refused_logout_post_creates_no_session(op, provider):
    response = post_logout_token("not-a-token")
    assert_logout_refused(response, 400, code="token_rejected", reason="logout token is not a compact JWS")
    assert settings_session_cookie() not in response.cookies
    assert Session.objects.count() == 0


def test_logout_token_alg_cannot_forge_a_log_line(op, provider, caplog):
    header = {"alg": "RS256\n2026-12-01 09:00:00 ERROR accounts admin signed in", "kid": "k"}
    forged = f"{b64url(header)}.{b64url(logout_claims(op))}.c2ln"
    with caplog.at_level("INFO", logger="accounts"):
        response = post_logout_token(forged)
    assert_logout_refused(
        response, 400, code="token_rejected",
        reason=re.compile(r"^logout token alg RS256\\x0a2026-12-01 .* is not allowed for provider test-op$"),
    )  # fmt: skip
    lines = [record.getMessage() for record in caplog.records if record.levelname != "INFO"]
    assert len(lines) == 1 and "\n" not in lines[0] and "RS256\\x0a2026-12-01" in lines[0]
    assert "\\\\x0a" not in lines[0]  # escaped once, as the audit row has it: not escaped twice
    assert "\n" not in SignInEvent.objects.get().reason


def settings_session_cookie() -> str:
    from django.conf import settings

    return settings.SESSION_COOKIE_NAME
