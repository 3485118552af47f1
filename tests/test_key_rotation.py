"""Key rotation end to end: sign-in keeps working through rotations, and nobody can block a refetch.

Through the real views against the provider double. ``op.rotate()`` replaces the signing key with
a new one under a fresh kid and removes the old one from the JWKS, as a real rotation does, so a
sign-in after it succeeds only if the app refetched the key set.

Delay, don't deny: a rotation that comes within ``ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN`` (2 s) of
the last refetch makes the sign-in wait for the cooldown to end, then refetch; it is never refused
for it. Fetch counts are read at the double.
"""

from __future__ import annotations

import time

import pytest
from django.test import Client

from tests.conftest import logout_claims, made_up_kid_token, sign_in

pytestmark = pytest.mark.django_db


def signs_in(op, provider) -> bool:
    """A whole sign-in in a fresh browser; True if it ended signed in."""
    browser = Client()
    response = sign_in(browser, op, provider)
    return response.status_code == 302 and browser.get("/accounts/session/").json()["authenticated"]


def rotate_and_check_old_key_is_gone(op) -> None:
    old = op.signing_key_for("RS256").kid
    new = op.rotate("RSA").kid
    published = [jwk["kid"] for jwk in op.jwks()["keys"]]
    assert new in published and old not in published


def bogus_logout_token(op, kid: str) -> str:
    """A well-formed logout token for ``op``'s issuer and client, under a kid it never published."""
    return made_up_kid_token(logout_claims(op), kid)


def test_two_rotations_seconds_apart_each_cost_one_jwks_fetch(op, provider):
    """A provider rotating twice within a minute: sign-in survives both, one JWKS fetch each."""
    assert signs_in(op, provider)
    assert op.hits["/jwks"] == 1
    rotate_and_check_old_key_is_gone(op)
    assert signs_in(op, provider)
    assert op.hits["/jwks"] == 2
    time.sleep(3)  # longer than the default cooldown (ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN), far below a minute
    rotate_and_check_old_key_is_gone(op)
    assert signs_in(op, provider)
    assert op.hits["/jwks"] == 3


def test_bogus_kid_logout_posts_cannot_block_a_key_rotation(op, provider, caplog):
    """Ten anonymous back-channel logout POSTs under made-up kids, then a real rotation: sign-in still works."""
    assert signs_in(op, provider)
    for i in range(10):
        response = Client(enforce_csrf_checks=True).post(
            f"/accounts/{provider.slug}/backchannel-logout/", {"logout_token": bogus_logout_token(op, f"made-up-{i}")}
        )
        assert response.status_code == 400
        assert f"reason=logout token kid 'made-up-{i}' matches no RS256 key" in caplog.text
    after_posts = op.hits["/jwks"]
    assert after_posts <= 2  # the posts refetched once at most
    rotate_and_check_old_key_is_gone(op)
    assert signs_in(op, provider)
    assert op.hits["/jwks"] == after_posts + 1


def test_two_rotations_a_fifth_of_a_second_apart_both_sign_in_one_fetch_each(op, provider, caplog):
    """The second rotation meets the cooldown the first one's refetch started: the sign-in waits, then refetches."""
    assert signs_in(op, provider)
    assert op.hits["/jwks"] == 1
    rotate_and_check_old_key_is_gone(op)
    assert signs_in(op, provider)
    assert op.hits["/jwks"] == 2
    time.sleep(0.2)
    rotate_and_check_old_key_is_gone(op)
    started = time.monotonic()
    assert signs_in(op, provider)
    assert op.hits["/jwks"] == 3
    assert time.monotonic() - started < 2 + 1  # at most the cooldown, and the sign-in itself
    assert "waiting" in caplog.text and "for a token from back-channel" in caplog.text


def test_a_bogus_kid_logout_flood_just_before_a_rotation_refuses_no_sign_in(op, provider):
    """Logout tokens under made-up kids, posted an instant before each of two rotations: every
    sign-in succeeds, and each rotation costs one fetch (the flood itself one at most)."""
    assert signs_in(op, provider)
    fetches = op.hits["/jwks"]
    for rotation in range(2):
        for i in range(10):
            response = Client(enforce_csrf_checks=True).post(
                f"/accounts/{provider.slug}/backchannel-logout/",
                {"logout_token": bogus_logout_token(op, f"made-up-{rotation}-{i}")},
            )
            assert response.status_code == 400
        flood = op.hits["/jwks"] - fetches
        assert flood <= (1 if rotation == 0 else 0)  # the flood's own budget: one refetch per minute
        rotate_and_check_old_key_is_gone(op)
        for _ in range(3):
            assert signs_in(op, provider)
        assert op.hits["/jwks"] == fetches + flood + 1
        fetches = op.hits["/jwks"]
