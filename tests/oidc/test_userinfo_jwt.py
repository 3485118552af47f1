"""Signed userinfo (OpenID Connect Core 5.3.2): the same signature rules as an ID token, then iss and aud.

Each attack asserts the reason that fired, so a verification replaced by a bare base64 decode of the
payload (or a check that is skipped) turns these tests red instead of passing them by accident.
"""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from accounts.errors import TokenRejected
from accounts.oidc.tokens import verify_logout_token, verify_userinfo_jwt
from tests.conftest import STRANGER_KEY, logout_claims, made_up_kid_token

pytestmark = pytest.mark.django_db


def info_claims(op, **overrides) -> dict:
    """A signed userinfo answer as a provider sends it; ``name=None`` drops a claim."""
    claims = {"sub": "user-1", "email": "alice@example.com", "iss": op.issuer, "aud": op.client_id}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def verify(op, provider, token) -> dict:
    return verify_userinfo_jwt(provider, token, jwks_uri=op.metadata["jwks_uri"])


def reason_of(op, provider, token) -> str:
    with pytest.raises(TokenRejected) as info:
        verify(op, provider, token)
    return info.value.reason


# --- accepted --------------------------------------------------------------------------------------


def test_accepts_userinfo_signed_with_provider_key(op, provider):
    assert verify(op, provider, op.sign(info_claims(op))) == info_claims(op)


def test_accepts_userinfo_without_iss_and_aud(op, provider):
    """Section 5.3.2 says SHOULD, not MUST: an answer without them is checked by its signature alone."""
    claims = info_claims(op, iss=None, aud=None)
    assert verify(op, provider, op.sign(claims)) == claims


def test_accepts_userinfo_whose_audience_list_names_this_client(op, provider):
    claims = info_claims(op, aud=["another-client", op.client_id])
    assert verify(op, provider, op.sign(claims))["aud"] == ["another-client", op.client_id]


# --- the attacks -------------------------------------------------------------------------------------


def test_rejects_userinfo_signed_by_a_strangers_key(op, provider):
    """Same kid as the provider's key, so the key is found and only the signature can tell."""
    stranger = RSAKey.import_key(STRANGER_KEY.as_dict(private=True), parameters={"kid": "rsa-1"})
    forged = jwt.encode({"alg": "RS256", "kid": "rsa-1"}, info_claims(op, sub="admin"), stranger, algorithms=["RS256"])
    assert reason_of(op, provider, forged) == "userinfo signature is not valid (bad_signature)"


def test_rejects_userinfo_with_tampered_payload(op, provider):
    header, _payload, signature = op.sign(info_claims(op)).split(".")
    _h, payload, _s = op.sign(info_claims(op, sub="admin")).split(".")
    assert reason_of(op, provider, f"{header}.{payload}.{signature}") == (
        "userinfo signature is not valid (bad_signature)"
    )


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_rejects_unsigned_userinfo(op, provider, alg):
    token = op.unsigned(info_claims(op), header={"alg": alg})
    assert reason_of(op, provider, token) == f"userinfo is unsigned (alg {alg!r})"


def test_rejects_unsigned_userinfo_even_if_none_is_allowed(op, provider):
    provider.allowed_algorithms = "RS256 none"  # an admin mistake must not open the door
    assert reason_of(op, provider, op.unsigned(info_claims(op))) == "userinfo is unsigned (alg 'none')"


def test_rejects_userinfo_from_another_issuer(op, provider):
    token = op.sign(info_claims(op, iss="https://evil.example"))
    assert reason_of(op, provider, token) == "userinfo iss is not the provider's issuer"


def test_rejects_userinfo_whose_issuer_differs_only_by_a_trailing_slash(op, provider):
    token = op.sign(info_claims(op, iss=op.issuer + "/"))
    assert reason_of(op, provider, token) == "userinfo iss is not the provider's issuer"


@pytest.mark.parametrize(
    "aud", ["another-client", ["another-client"], [], "", ["test-client-2", "test"], "test-client-2", "a test-client"]
)
def test_rejects_userinfo_for_another_audience(op, provider, aud):
    """A string aud is one audience, compared whole: "test-client-2" does not name "test-client"."""
    assert reason_of(op, provider, op.sign(info_claims(op, aud=aud))) == "userinfo aud is not this client"


def test_rejects_userinfo_whose_kid_is_unknown(op, provider):
    token = made_up_kid_token(info_claims(op), "not-published")
    assert reason_of(op, provider, token) == "userinfo kid 'not-published' matches no RS256 key of the provider"


def test_rejects_userinfo_alg_outside_the_provider_allowlist(op, provider):
    provider.allowed_algorithms = "ES256"
    token = op.sign(info_claims(op), alg="RS256")
    assert reason_of(op, provider, token) == "userinfo alg RS256 is not allowed for provider test-op"


def test_rejects_userinfo_that_is_not_a_jws(op, provider):
    assert reason_of(op, provider, '{"sub": "admin"}') == "userinfo is not a compact JWS"


# --- where it comes from ------------------------------------------------------------------------------


def test_userinfo_unknown_kid_refetches_on_the_back_channel_budget(op, provider):
    """It answers our own request: a logout token that spent the budget of anyone's kids cannot block it."""
    jwks_uri = op.metadata["jwks_uri"]
    verify(op, provider, op.sign(info_claims(op)))
    with pytest.raises(TokenRejected) as info:
        verify_logout_token(provider, made_up_kid_token(logout_claims(op), "made-up"), jwks_uri=jwks_uri)
    assert info.value.reason == "logout token kid 'made-up' matches no RS256 key of the provider"
    assert op.hits["/jwks"] == 2
    op.rotate("RSA")
    assert verify(op, provider, op.sign(info_claims(op)))["sub"] == "user-1"
    assert op.hits["/jwks"] == 3


def test_userinfo_unknown_kids_are_spaced_by_the_back_channel_cooldown(op, provider, settings, skipping_clock):
    settings.ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN = 60
    verify(op, provider, op.sign(info_claims(op)))
    for i in range(3):
        reason = reason_of(op, provider, made_up_kid_token(info_claims(op), f"made-up-{i}"))
        assert reason == f"userinfo kid 'made-up-{i}' matches no RS256 key of the provider"
    assert op.hits["/jwks"] == 4  # the first load and one refetch each, a cooldown apart
    assert 2 * 59 <= skipping_clock.skipped <= 2 * 60
