"""Hostile values: whatever text a token, a claim or a header carries, never a 500 (issue 19, point 5).

JSON may carry a lone surrogate (``"\\ud800"``) or a NUL, and no database stores either: SQLite's
and psycopg's drivers cannot encode the one, PostgreSQL refuses the other. Identity keys holding
one are refused before any query (``accounts.oidc.tokens.key_problem``), profile claims holding
one are dropped (``accounts.claims.storable``), both through one check
(``accounts.oidc.safejson.unstorable``). And a sign-in that fails in a way nobody expected still
spends its flow cookie, writes its audit row and keeps the code and tokens out of the error report.

The examples name each attack; the property-based tests (hypothesis) then drive the callback --
the real provider double, really signed ID tokens with arbitrary JSON strings in every claim and in
userinfo -- and the bearer path, with arbitrary strings in the header and in the claims. Each run
is bounded (a few dozen examples, seconds). The ``services`` ones run on PostgreSQL too.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client
from django.views.debug import ExceptionReporter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts import pending
from accounts.models import Identity, Provider, ProviderSession, SignInEvent
from accounts.oidc.safejson import unstorable
from accounts.presets import preset_values
from tests.conftest import (
    assert_error_page,
    assert_logout_refused,
    call_userinfo_always,
    logout_token,
    post_logout_token,
    signed_in,
    start_login,
)
from tests.github_double import GitHubDouble
from tests.test_api import AUDIENCE, access_token

User = get_user_model()
pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_api")]

#: Any code point, surrogates and NUL included (hypothesis leaves surrogates out unless told).
ANY_CHARACTER = st.characters(exclude_categories=())
#: Strings a hostile sender would try, and arbitrary ones: every one of them is valid in JSON.
HOSTILE = st.one_of(
    st.sampled_from(["\ud800", "\udfff", "a\ud800b", "\x00", "a\x00b", "al\ud800@example.com", "al\x00@example.com"]),
    st.sampled_from(["", " ", "\n", "\u2028", "\u202e", "x" * 300, "alice@example.com", "user-1"]),
    st.text(ANY_CHARACTER, max_size=24),
)
#: ID token claims whose rules refuse any other value (drawn one at a time, so the others get through).
CHECKED_CLAIMS = ["iss", "aud", "nonce", "azp", "at_hash"]
#: ID token claims that reach the database or the log when the sign-in goes on.
PASSED_CLAIMS = [
    "sub", "sid", "jti", "email", "given_name", "family_name", "name", "preferred_username", "picture", "hd", "tid",
]  # fmt: skip
PROFILE_CLAIMS = ["email", "given_name", "family_name", "name", "preferred_username", "picture", "zoneinfo"]
ACCESS_TOKEN_CLAIMS = ["iss", "sub", "aud", "client_id", "scope", "jti"]
#: Bounded: each example is a real sign-in over loopback HTTP, a few tens of milliseconds.
BOUNDED = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: The only 5xx a hostile value may cause: the provider's fault (502, 504) or a busy database (503).
PROVIDER_OR_BUSY = {502, 503, 504}


def written() -> dict[str, int]:
    """Rows of everything a request could write, but the audit trail."""
    return {model.__name__: model._default_manager.count() for model in (User, Identity, ProviderSession, Session)}


def stored_text(value: Any) -> list[str]:
    """Every string inside ``value`` (keys included), to check that none is unstorable."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (str(key), *stored_text(item))]
    if isinstance(value, list):
        return [text for item in value for text in stored_text(item)]
    return []


def callback(op, provider: Provider) -> tuple[Client, Any, str]:
    """A fresh browser's sign-in, through the callback; returns the browser, its answer and its flow cookie."""
    browser = Client(raise_request_exception=False)
    params = op.authorize(start_login(browser, provider))
    response = browser.get(f"/accounts/{provider.slug}/callback/", params)
    return browser, response, pending.cookie_name(params["state"], secure=False)


# --- the attacks, one example each --------------------------------------------------------------


@pytest.mark.services  # every database fails on these, each its own way
@pytest.mark.parametrize("iss", ["https://op.example/\ud800", "https://op.example/\x00"])
def test_bearer_token_whose_unverified_iss_is_unstorable_is_401_before_any_query(op, provider, caplog, iss):
    token = access_token(op, iss=iss)
    with caplog.at_level(logging.INFO, logger="accounts.api"):
        response = Client().get("/api/any/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    refusals = [r.getMessage() for r in caplog.records if r.name == "accounts.api"]
    assert len(refusals) == 1 and "reason=access token iss claim contains a " in refusals[0], refusals


@pytest.mark.usefixtures("discovered")  # bearer requests only read a cached discovery document
@pytest.mark.services
@pytest.mark.parametrize("claim", ["sub", "jti", "client_id"])
def test_bearer_token_with_an_unstorable_key_claim_is_401(op, provider, caplog, claim):
    token = access_token(op, **{claim: "a\ud800"})
    with caplog.at_level(logging.INFO, logger="accounts.api"):
        response = Client().get("/api/join/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert f"reason=access token {claim} claim contains a lone surrogate" in caplog.text
    assert written()["User"] == 0


@pytest.mark.services
@pytest.mark.parametrize(("claim", "value"), [("sub", "user-\ud800"), ("sid", "\udfff"), ("sub", "a\x00")])
def test_id_token_with_an_unstorable_identity_key_is_refused_spent_and_audited(op, provider, claim, value):
    op.next_user = {**op.next_user, claim: value}
    browser, response, flow_cookie = callback(op, provider)
    problem = "a lone surrogate" if "\x00" not in value else "a NUL character"
    assert_error_page(response, 400, code="token_rejected", reason=f"ID token {claim} claim contains {problem}")
    assert response.cookies[flow_cookie]["max-age"] == 0  # spent
    event = SignInEvent.objects.get()
    assert (event.outcome, event.code) == ("failure", "token_rejected")
    assert not signed_in(browser) and written()["Identity"] == 0


@pytest.mark.services
def test_profile_claims_with_unstorable_text_are_dropped_and_logged_once(op, provider, caplog):
    op.next_user = {**op.next_user, "email": "alice\ud800@example.com", "given_name": "Al\udfffice", "family_name": "E"}
    browser, response, _flow = callback(op, provider)
    assert response.status_code == 302 and signed_in(browser)
    identity = Identity.objects.get()
    assert identity.email == "" and not identity.email_verified  # no address rather than a mangled one
    assert "email" not in identity.claims and "given_name" not in identity.claims
    user = identity.user
    assert (user.email, user.first_name, user.last_name) == ("", "", "E")
    dropped = [r.getMessage() for r in caplog.records if r.name == "accounts.claims"]
    assert dropped == ["dropped claim(s) holding text no database stores: email, given_name"]


def test_github_api_answer_with_unstorable_text_is_dropped_not_a_500(db):
    with GitHubDouble() as github:
        provider = Provider.objects.create(
            slug="github", name="GitHub", client_id=github.client_id, client_secret=github.client_secret,
            **preset_values("github", base_url=github.base_url),
        )  # fmt: skip
        github.user = {**github.user, "login": "octo\ud800", "name": "\x00"}
        browser, response, _flow = callback(github, provider)
    assert response.status_code == 302 and signed_in(browser)
    assert not {"preferred_username", "name"} & Identity.objects.get().claims.keys()


def test_an_escaped_exception_spends_the_flow_audits_and_keeps_secrets_out_of_the_report(
    op, provider, caplog, monkeypatch
):
    def crash(**kwargs):
        raise RuntimeError("a bug in the mapping")

    monkeypatch.setattr("accounts.flow.sign_in_identity", crash)
    browser = Client(raise_request_exception=False)
    params = op.authorize(start_login(browser, provider))
    flow = pending.cookie_name(params["state"], secure=False)
    flow_value = browser.cookies[flow].value
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = browser.get(f"/accounts/{provider.slug}/callback/", params)
    assert response.status_code == 500
    assert response.cookies[flow]["max-age"] == 0  # spent on the 500 too: the callback cannot be replayed
    event = SignInEvent.objects.get()
    assert (event.outcome, event.code, event.reason) == ("failure", "internal_error", "unexpected RuntimeError")
    # What the admins' error mail would hold (AdminEmailHandler builds it just so).
    [record] = [r for r in caplog.records if r.name == "django.request"]
    reporter = ExceptionReporter(record.request, *record.exc_info, is_email=True)
    report = reporter.get_traceback_text() + reporter.get_traceback_html()
    assert "a bug in the mapping" in report  # the report is there, and useful
    issued = op.issued_tokens[-1]
    for secret in (params["code"], params["state"], issued["id_token"], issued["access_token"], flow_value):
        assert secret not in report
    for part in issued["id_token"].split("."):  # not even the token's payload or signature alone
        assert part not in report


def test_a_crash_in_back_channel_logout_keeps_the_logout_token_out_of_the_report(op, provider, caplog, monkeypatch):
    def crash(links, **kwargs):
        raise RuntimeError("a bug in ending sessions")

    # After the token is verified and its jti spent, so the report's frames hold the raw token, the claims and all.
    monkeypatch.setattr("accounts.session.end", crash)
    token = logout_token(op)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = Client(raise_request_exception=False).post(
            f"/accounts/{provider.slug}/backchannel-logout/", {"logout_token": token}
        )
    assert response.status_code == 500
    [record] = [r for r in caplog.records if r.name == "django.request"]
    reporter = ExceptionReporter(record.request, *record.exc_info, is_email=True)
    report = reporter.get_traceback_text() + reporter.get_traceback_html()
    assert "a bug in ending sessions" in report
    for part in token.split("."):
        assert part not in report


@pytest.mark.services
@pytest.mark.parametrize(("claim", "value"), [("sid", "\ud800"), ("sub", "user-\x00")])
def test_logout_token_with_an_unstorable_sid_or_sub_is_refused_before_any_query(op, provider, claim, value):
    response = post_logout_token(logout_token(op, **{"sid": None, claim: value}))
    problem = "a lone surrogate" if "\x00" not in value else "a NUL character"
    assert_logout_refused(response, 400, code="token_rejected", reason=f"logout token {claim} claim contains {problem}")


def test_a_surrogate_in_the_authorization_header_itself_is_a_400(op, provider):
    response = Client().get("/api/any/", HTTP_AUTHORIZATION="Bearer \ud800")
    assert response.status_code == 400


# --- properties -----------------------------------------------------------------------------------


@pytest.mark.services
@BOUNDED
@given(
    checked=st.dictionaries(st.sampled_from(CHECKED_CLAIMS), HOSTILE, max_size=1),
    id_token=st.dictionaries(st.sampled_from(PASSED_CLAIMS), HOSTILE, max_size=4),
    extra=st.dictionaries(st.text(ANY_CHARACTER, max_size=8), HOSTILE, max_size=2),
    userinfo=st.dictionaries(st.sampled_from(PROFILE_CLAIMS), HOSTILE, max_size=3),
)
def test_callback_never_fails_with_a_500_whatever_the_claims_say(op, provider, checked, id_token, extra, userinfo):
    call_userinfo_always(provider)
    op.id_token_mutator = lambda header, claims: (header, {**claims, **extra, **id_token, **checked})
    # Userinfo speaks of the ID token's subject (or the test says otherwise), so the sign-in goes on.
    op.userinfo_mutator = lambda info: {**info, "sub": id_token.get("sub", info["sub"]), **userinfo}
    before, events = written(), SignInEvent.objects.count()
    browser, response, flow_cookie = callback(op, provider)
    status = response.status_code
    assert status < 500 or status in PROVIDER_OR_BUSY, (status, response.content[:300])
    assert response.cookies[flow_cookie]["max-age"] == 0  # whatever the outcome, the flow is spent
    if status == 302:
        identity = Identity.objects.get(subject=id_token.get("sub", op.next_user["sub"]))
        assert signed_in(browser)
        texts = [*stored_text(identity.claims), identity.email, identity.subject, identity.user.get_username()]
        assert not [text for text in texts if unstorable(text)]
    else:
        assert not signed_in(browser)
        assert written() == before  # nothing but the (bounded) audit row
        assert SignInEvent.objects.count() - events <= 1


@pytest.mark.services
@BOUNDED
@given(
    header=st.one_of(st.text(ANY_CHARACTER, max_size=40), st.text(ANY_CHARACTER, max_size=40).map("Bearer ".__add__)),
)
def test_bearer_path_never_fails_with_a_500_whatever_the_header_says(op, provider, header):
    response = Client().get("/api/join/", HTTP_AUTHORIZATION=header)
    assert response.status_code in (400, 401), response.content[:300]
    assert written()["User"] == 0


@pytest.mark.usefixtures("discovered")  # bearer requests only read a cached discovery document
@pytest.mark.services
@BOUNDED
@given(claims=st.dictionaries(st.sampled_from(ACCESS_TOKEN_CLAIMS), HOSTILE, min_size=1, max_size=3))
def test_bearer_path_never_fails_with_a_500_whatever_the_claims_say(op, provider, claims):
    before = written()
    token = access_token(op, **{"aud": AUDIENCE, **claims})
    response = Client().get("/api/join/", HTTP_AUTHORIZATION=f"Bearer {token}")
    status = response.status_code
    assert status in (200, 400, 401, 403) or status in PROVIDER_OR_BUSY, (status, response.content[:300])
    if status != 200:
        assert written() == before  # a refused anonymous request writes nothing
        assert response.status_code != 401 or response["WWW-Authenticate"].startswith("Bearer")
    else:
        texts = [text for identity in Identity.objects.all() for text in stored_text(identity.claims)]
        assert not [text for text in texts if unstorable(text)]
