"""The verified-token cache (``accounts.token_cache``): a repeated bearer token skips the signature check,
and nothing a verification depended on may change under a cached entry.

Each test is an attack on one bound: served past ``exp``, across a key rotation, across a change
of the provider row (in this process or another's, through the shared cache), for a single-use
token, or for an account disabled since. Verifications are counted by wrapping the protocol
layer's ``verify_access_token``; the tokens are the provider double's, really signed.
"""

from __future__ import annotations

import time

import pytest
from django.core.cache import caches
from django.test import Client

from accounts import token_cache
from accounts.models import Provider
from accounts.oidc import tokens
from tests.conftest import sign_in
from tests.test_api import access_token, alice, assert_denied, assert_refused, call, machine_token

__all__ = ["alice"]  # the fixture, shared with tests/test_api.py

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_api"), pytest.mark.usefixtures("discovered")]


@pytest.fixture
def verifications(monkeypatch):
    """How many times the protocol layer verified an access token."""
    calls = []
    real = tokens.verify_access_token

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tokens, "verify_access_token", counting)
    return calls


def test_a_repeated_token_is_verified_once(op, alice, caplog, verifications):
    token = access_token(op)
    for _ in range(3):
        assert call("/api/orders/", token, caplog).status_code == 200
    assert len(verifications) == 1
    assert token_cache.size() == 1


def test_the_cache_is_keyed_by_the_tokens_hash_never_the_token(op, alice, caplog):
    token = access_token(op)
    assert call("/api/orders/", token, caplog).status_code == 200
    keys = list(token_cache._verified._entries)
    assert keys and all(token not in repr(key) for key in keys)


def test_a_single_use_token_is_never_served_from_the_cache(op, alice, caplog, verifications):
    token = access_token(op)
    assert call("/api/any/", token, caplog).status_code == 200  # cached for the APIs that reuse tokens
    assert call("/api/once/", token, caplog).status_code == 200
    assert len(verifications) == 2  # the single-use API verified it itself
    caplog.clear()
    assert_refused(call("/api/once/", token, caplog), caplog, 401, "invalid_token", "jti replay")


def test_an_entry_is_never_served_past_the_tokens_exp(op, alice, caplog, verifications, monkeypatch):
    token = access_token(op, exp=int(time.time()) + 30)
    assert call("/api/orders/", token, caplog).status_code == 200
    later = time.time() + 31  # the token's exp has passed (for the cache; the verification's clock has leeway)

    class Clock:
        @staticmethod
        def time() -> float:
            return later

    monkeypatch.setattr(token_cache, "time", Clock)
    assert call("/api/orders/", token, caplog).status_code == 200
    assert len(verifications) == 2  # verified again, by the rules and leeway of a verification


def test_an_entry_dies_with_the_key_that_signed_it(op, provider, alice, caplog):
    token = access_token(op)
    assert call("/api/orders/", token, caplog).status_code == 200
    op.rotate("RSA")  # the provider drops the key that signed the token
    assert sign_in(Client(), op, provider).status_code == 302  # a sign-in brings the new key set in
    caplog.clear()
    assert_refused(call("/api/orders/", token, caplog), caplog, 401, "invalid_token", "matches no RS256 key")


def test_disabling_the_provider_voids_its_cached_tokens_at_once(op, provider, alice, caplog):
    token = access_token(op)
    assert call("/api/orders/", token, caplog).status_code == 200
    provider.enabled = False
    provider.save()
    caplog.clear()
    assert_refused(call("/api/orders/", token, caplog), caplog, 401, "invalid_token", "is no enabled provider")


def test_a_provider_deleted_voids_its_cached_tokens(op, provider, caplog):
    token = machine_token(op)  # a client's own token: no identity holds on to the provider
    assert call("/api/any/", token, caplog).status_code == 200
    Provider.objects.filter(pk=provider.pk).delete()
    caplog.clear()
    assert_refused(call("/api/any/", token, caplog), caplog, 401, "invalid_token", "is no enabled provider")


def test_another_processs_change_reaches_this_one_through_the_shared_cache(op, alice, caplog, verifications):
    """Another process saved a provider: it bumped the shared version, this process's entries are void."""
    token = access_token(op)
    assert call("/api/orders/", token, caplog).status_code == 200
    shared = caches["default"]
    shared.set(token_cache.PROVIDERS_VERSION_KEY, token_cache.providers_version() + 1, timeout=None)
    assert call("/api/orders/", token, caplog).status_code == 200
    assert len(verifications) == 2


def test_an_account_disabled_since_is_refused_with_a_cached_token(op, alice, caplog):
    token = access_token(op)
    assert call("/api/orders/", token, caplog).status_code == 200
    alice.is_active = False
    alice.save()
    caplog.clear()
    assert_denied(call("/api/orders/", token, caplog), caplog, f"user {alice.pk} is inactive")


def test_the_cache_is_bounded(op, alice, caplog, settings):
    settings.ACCOUNTS_API_TOKEN_CACHE_SIZE = 2
    for _ in range(4):
        assert call("/api/orders/", access_token(op), caplog).status_code == 200
    assert token_cache.size() == 2


def test_size_zero_turns_it_off(op, alice, caplog, settings, verifications):
    settings.ACCOUNTS_API_TOKEN_CACHE_SIZE = 0
    token = access_token(op)
    for _ in range(2):
        assert call("/api/orders/", token, caplog).status_code == 200
    assert len(verifications) == 2
    assert token_cache.size() == 0


def test_the_audience_is_part_of_the_key(op, alice, caplog, settings):
    """A token cached for one API is not taken by another API of a different audience."""
    token = access_token(op)
    assert call("/api/orders/", token, caplog).status_code == 200
    settings.ACCOUNTS_API_AUDIENCE = "https://other-api.example.test"
    caplog.clear()
    assert_refused(call("/api/default-audience/", token, caplog), caplog, 401, "invalid_token", "aud")
