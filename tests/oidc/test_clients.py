"""The code flow's protocol side (accounts.oidc.clients), against the provider double over HTTP.

Rules are tested at this layer, where the exception says which one fired; a few also go through
the views, to show a sign-in as a person meets it.
"""

from __future__ import annotations

import time
from collections import Counter
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.test import Client

from accounts.adapter import get_adapter
from accounts.errors import ProviderMisconfigured, TokenRejected
from accounts.models import Identity, Provider, SignInEvent
from accounts.oidc.clients import PendingLogin, VerifiedLogin
from tests.conftest import sign_in, signed_in, start_login

pytestmark = pytest.mark.django_db


def callback(op, provider) -> tuple[dict[str, str], PendingLogin]:
    """Start a sign-in at the protocol layer and let the double authorize it: (callback params, pending)."""
    url, pending = (
        get_adapter()
        .get_client(provider)
        .authorization_url(redirect_uri="http://testserver/accounts/test-op/callback/", next_url="/", now=time.time())
    )
    return op.authorize(dict(parse_qsl(urlsplit(url).query))), pending


def complete(op, provider) -> VerifiedLogin:
    params, pending = callback(op, provider)
    return get_adapter().get_client(provider).complete(params, pending)


def failure_reason() -> str:
    return SignInEvent.objects.filter(outcome="failure").latest("pk").reason


# --- subjects of any script (userinfo sub check, section 5.3.4) ----------------------------------


def test_sign_in_with_a_non_ascii_sub_succeeds(op, provider):
    """hmac.compare_digest raises TypeError on non-ASCII str: the callback was a 500."""
    op.next_user = {**op.next_user, "sub": "ålice"}  # in the ID token and in userinfo
    browser = Client()
    response = sign_in(browser, op, provider)
    assert response.status_code == 302 and browser.get("/accounts/session/").json()["authenticated"]
    assert Identity.objects.get().subject == "ålice"


def test_rejects_userinfo_sub_that_differs_in_non_ascii_characters(op, provider):
    provider.userinfo = Provider.Userinfo.ALWAYS
    op.next_user = {**op.next_user, "sub": "ålice"}
    op.userinfo_mutator = lambda info: {**info, "sub": "ålicé"}
    with pytest.raises(TokenRejected, match="userinfo sub differs from the ID token sub"):
        complete(op, provider)


# --- max_age (sections 3.1.2.1 and 3.1.3.7 step 13) ----------------------------------------------


def authenticated_ago(seconds: int):
    """An ID token mutator: the person last authenticated at the provider ``seconds`` ago."""

    def mutate(header: dict, claims: dict):
        return header, {**claims, "auth_time": int(time.time()) - seconds}

    return mutate


def test_max_age_from_the_extra_parameters_is_enforced_on_the_id_token(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    provider.extra_auth_params = {"max_age": "300"}
    provider.save()
    op.id_token_mutator = authenticated_ago(3600)
    with pytest.raises(TokenRejected, match="auth_time is older than max_age allows"):
        complete(op, provider)


def test_sign_in_after_a_stale_authentication_is_refused_when_max_age_was_requested(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    provider.extra_auth_params = {"max_age": "300"}
    provider.save()
    op.id_token_mutator = authenticated_ago(3600)
    browser = Client()
    assert start_login(browser, provider)["max_age"] == "300"
    response = sign_in(browser, op, provider)
    assert response.status_code == 400 and response.templates[0].name == "oidc_signin/error.html"
    assert failure_reason() == "ID token auth_time is older than max_age allows"
    assert not browser.get("/accounts/session/").json()["authenticated"]


def test_sign_in_with_max_age_succeeds_against_a_provider_that_sends_auth_time(op, provider):
    provider.extra_auth_params = {"max_age": "300"}
    provider.save()
    assert sign_in(Client(), op, provider).status_code == 302


def test_sign_in_within_max_age_succeeds(op, provider):
    provider.extra_auth_params = {"max_age": "300"}
    provider.save()
    op.id_token_mutator = authenticated_ago(10)
    assert sign_in(Client(), op, provider).status_code == 302


@pytest.mark.parametrize("max_age", ["soon", "-1", "1.5", " 300", "٣٠٠", "", "12345678901"])
def test_max_age_that_is_not_whole_seconds_is_a_configuration_problem(op, provider, max_age):
    provider.extra_auth_params = {"max_age": max_age}
    with pytest.raises(ProviderMisconfigured, match="max_age of test-op is not a whole number of seconds"):
        callback(op, provider)


# --- when to call userinfo (one outbound call per sign-in in steady state) ----------------------


def without(*names: str):
    """An ID token mutator that drops ``names`` from the ID token only; userinfo still has them."""

    def mutate(header: dict, claims: dict):
        return header, {k: v for k, v in claims.items() if k not in names}

    return mutate


def calls_made(op, sign_in_once) -> Counter:
    """The requests the provider double saw during ``sign_in_once()``, by path."""
    before = op.hits.copy()
    sign_in_once()
    return op.hits - before


def test_when_needed_sign_in_with_a_complete_id_token_makes_only_the_token_call(op, provider):
    assert provider.userinfo == Provider.Userinfo.WHEN_NEEDED  # the default
    sign_in(Client(), op, provider)  # an earlier sign-in caches discovery and the JWKS
    browser = Client()
    assert calls_made(op, lambda: sign_in(browser, op, provider)) == Counter({"/token": 1})
    assert signed_in(browser) and op.hits["/userinfo"] == 0
    assert Identity.objects.get().email_verified


@pytest.mark.parametrize(
    "missing",
    [("email_verified",), ("email",), ("given_name", "family_name", "preferred_username")],
    ids=["email_verified", "email", "every-name-claim"],
)
def test_when_needed_calls_userinfo_once_if_the_id_token_lacks_what_the_mapping_reads(op, provider, missing):
    op.id_token_mutator = without(*missing)
    op.userinfo_mutator = lambda info: {**info, "given_name": "From Userinfo"}
    browser = Client()
    assert sign_in(browser, op, provider).status_code == 302 and signed_in(browser)
    assert op.hits["/userinfo"] == 1
    identity = Identity.objects.get()
    assert identity.email_verified and identity.email == "alice@example.com"  # userinfo's claims were used
    assert identity.user.first_name == "From Userinfo"


def test_always_calls_userinfo_on_every_sign_in(op, provider):
    provider.userinfo = Provider.Userinfo.ALWAYS
    provider.save()
    for _ in range(2):
        browser = Client()
        assert sign_in(browser, op, provider).status_code == 302 and signed_in(browser)
    assert op.hits["/userinfo"] == 2


def test_never_calls_userinfo_even_when_the_id_token_lacks_the_email(op, provider):
    provider.userinfo = Provider.Userinfo.NEVER
    provider.save()
    op.id_token_mutator = without("email", "email_verified")
    browser = Client()
    assert sign_in(browser, op, provider).status_code == 302 and signed_in(browser)
    assert op.hits["/userinfo"] == 0
    identity = Identity.objects.get()
    assert (identity.email, identity.email_verified) == ("", False)


def test_every_provider_kind_has_its_client_and_its_stored_choice():
    """One vocabulary: the kinds the models store are the protocol's kinds, each with a client class."""
    from accounts.choices import Kind, Userinfo
    from accounts.oidc.clients import CLIENT_CLASSES
    from accounts.oidc.config import ProviderKind, UserinfoPolicy

    assert set(CLIENT_CLASSES) == set(ProviderKind) == set(Kind.values)
    assert set(Userinfo.values) == set(UserinfoPolicy)
