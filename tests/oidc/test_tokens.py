"""ID token verification: one test per rule of OpenID Connect Core 3.1.3.7 (and the known attacks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from accounts.errors import TokenRejected
from accounts.oidc.tokens import verify_id_token
from tests.conftest import claims_for

pytestmark = pytest.mark.django_db


def verify(op, provider, token, *, nonce="n-1", access_token=None, max_age=None):
    return verify_id_token(
        provider, token, jwks_uri=op.metadata["jwks_uri"], nonce=nonce, access_token=access_token, max_age=max_age
    )


def rejected(op, provider, token, match, **kwargs):
    with pytest.raises(TokenRejected, match=match):
        verify(op, provider, token, **kwargs)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- signature and algorithm ---------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "ES256"])
def test_accepts_token_signed_with_provider_key(op, provider, alg):
    claims = verify(op, provider, op.sign(claims_for(op), alg=alg))
    assert claims["sub"] == "user-1"


def test_accepts_eddsa_with_okp_key(op, provider):
    key = OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1", "use": "sig"})
    op.add_key(key)
    assert verify(op, provider, op.sign(claims_for(op), alg="EdDSA", key=key))["sub"] == "user-1"


def test_accepts_es384_only_with_p384_key(op, provider):
    key = ECKey.generate_key("P-384", parameters={"kid": "ec-384", "use": "sig"})
    op.add_key(key)
    assert verify(op, provider, op.sign(claims_for(op), alg="ES384", key=key))["sub"] == "user-1"


def test_rejects_alg_none(op, provider):
    rejected(op, provider, op.unsigned(claims_for(op)), "unsigned")


def test_rejects_alg_none_even_if_listed_in_allowlist(op, provider):
    provider.allowed_algorithms = "RS256 none"  # an admin mistake must not open the door
    rejected(op, provider, op.unsigned(claims_for(op)), "unsigned")


def test_rejects_algorithm_not_in_provider_allowlist(op, provider):
    provider.allowed_algorithms = "ES256"
    rejected(op, provider, op.sign(claims_for(op), alg="RS256"), "alg RS256 is not allowed")


def test_rejects_hmac_unless_admin_enabled_it(op, provider):
    token = jwt.encode({"alg": "HS256"}, claims_for(op), OctKey.import_key(op.client_secret), algorithms=["HS256"])
    rejected(op, provider, token, "alg HS256 is not allowed")


def test_accepts_hmac_keyed_with_client_secret_when_enabled(op, provider):
    provider.allowed_algorithms = "RS256 HS256"
    token = jwt.encode({"alg": "HS256"}, claims_for(op), OctKey.import_key(op.client_secret), algorithms=["HS256"])
    assert verify(op, provider, token)["sub"] == "user-1"


def test_rejects_token_signed_with_public_key_as_hmac_secret(op, provider):
    """The classic algorithm confusion: HS256 'signed' with the provider's public RSA key as secret."""
    provider.allowed_algorithms = "RS256 HS256"
    public_pem = op.signing_key_for("RS256").as_pem(private=False)
    signing_input = b64({"alg": "HS256", "kid": op.signing_key_for("RS256").kid}) + "." + b64(claims_for(op))
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    rejected(op, provider, forged, "signature is not valid")


def test_client_secret_that_is_a_public_key_is_never_used_as_hmac_key(op, provider):
    """An admin pasting the provider's public key as the secret must not enable the confusion either."""
    public_pem = op.signing_key_for("RS256").as_pem(private=False)
    provider.allowed_algorithms = "RS256 HS256"
    provider.client_secret = public_pem.decode()
    signing_input = b64({"alg": "HS256"}) + "." + b64(claims_for(op))
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    rejected(op, provider, forged, "cannot be an HMAC key")


def test_rejects_token_signed_by_another_key_with_the_same_kid(op, provider):
    attacker = RSAKey.generate_key(2048, parameters={"kid": op.signing_key_for("RS256").kid})
    forged = jwt.encode({"alg": "RS256", "kid": attacker.kid}, claims_for(op), attacker, algorithms=["RS256"])
    rejected(op, provider, forged, "signature is not valid")


def test_rejects_tampered_payload(op, provider):
    header, _payload, signature = op.sign(claims_for(op)).split(".")
    tampered = ".".join([header, b64(claims_for(op, sub="admin")), signature])
    rejected(op, provider, tampered, "signature is not valid")


def test_rejects_unknown_kid(op, provider):
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-published"})
    token = jwt.encode({"alg": "RS256", "kid": "not-published"}, claims_for(op), stranger, algorithms=["RS256"])
    rejected(op, provider, token, "matches no RS256 key")


def test_rejects_key_of_the_wrong_type_for_the_header_alg(op, provider):
    """kid names the EC key but the header claims RS256: the key must fit the algorithm."""
    ec = op.signing_key_for("ES256")
    token = op.sign(claims_for(op), alg="RS256", header={"alg": "RS256", "kid": ec.kid})
    rejected(op, provider, token, "matches no RS256 key")


def test_rejects_key_published_for_encryption(op, provider):
    enc = RSAKey.generate_key(2048, parameters={"kid": "enc-1", "use": "enc"})
    op.add_key(enc)
    token = op.sign_unchecked(claims_for(op), header={"alg": "RS256", "kid": "enc-1"}, key=enc)
    rejected(op, provider, token, "matches no RS256 key")


def test_rejects_key_published_for_another_algorithm(op, provider):
    key = RSAKey.generate_key(2048, parameters={"kid": "rs512-only", "use": "sig", "alg": "RS512"})
    op.add_key(key)
    token = op.sign_unchecked(claims_for(op), header={"alg": "RS256", "kid": "rs512-only"}, key=key)
    rejected(op, provider, token, "matches no RS256 key")


def test_accepts_token_without_kid_when_exactly_one_suitable_key(op, provider):
    token = op.sign(claims_for(op), alg="ES256", header={"alg": "ES256"})  # one EC key published
    assert verify(op, provider, token)["sub"] == "user-1"


def test_rejects_token_without_kid_when_several_suitable_keys(op, provider):
    op.add_key(RSAKey.generate_key(2048, parameters={"kid": "rsa-extra", "use": "sig"}))
    token = op.sign(claims_for(op), alg="RS256", header={"alg": "RS256"})
    rejected(op, provider, token, "no kid and the provider has 2 RS256 keys")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b", "a.b.c.d", "!!!.###.$$$", "eyJhbGciOiJSUzI1NiJ9.e30"])
def test_rejects_malformed_tokens(op, provider, garbage):
    with pytest.raises(TokenRejected):
        verify(op, provider, garbage)


def test_rejects_header_that_is_not_json(op, provider):
    rejected(op, provider, "bm90IGpzb24." + b64({"sub": "x"}) + ".c2ln", "header cannot be decoded")


# --- claims --------------------------------------------------------------------------------------


def test_rejects_wrong_issuer(op, provider):
    rejected(op, provider, op.sign(claims_for(op, iss="https://evil.example")), "iss claim is not valid")


def test_rejects_issuer_differing_only_by_trailing_slash(op, provider):
    rejected(op, provider, op.sign(claims_for(op, iss=op.issuer + "/")), "iss claim is not valid")


def test_rejects_missing_issuer(op, provider):
    rejected(op, provider, op.sign(claims_for(op, iss=None)), "no iss claim")


def test_rejects_audience_of_another_client(op, provider):
    rejected(op, provider, op.sign(claims_for(op, aud="someone-else")), "aud claim is not valid")


def test_rejects_missing_audience(op, provider):
    rejected(op, provider, op.sign(claims_for(op, aud=None)), "no aud claim")


def test_rejects_multiple_audiences_without_azp(op, provider):
    token = op.sign(claims_for(op, aud=[op.client_id, "other-client"]))
    rejected(op, provider, token, "several audiences and no azp")


def test_accepts_multiple_audiences_with_azp_of_this_client(op, provider):
    token = op.sign(claims_for(op, aud=[op.client_id, "other-client"], azp=op.client_id))
    assert verify(op, provider, token)["azp"] == op.client_id


def test_rejects_azp_of_another_client(op, provider):
    rejected(op, provider, op.sign(claims_for(op, azp="other-client")), "azp claim is not this client")


def test_rejects_expired_token(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    rejected(op, provider, op.sign(claims_for(op, exp=int(time.time()) - 31)), "expired")


def test_accepts_recently_expired_token_within_leeway(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    assert verify(op, provider, op.sign(claims_for(op, exp=int(time.time()) - 20)))


def test_rejects_missing_exp(op, provider):
    rejected(op, provider, op.sign(claims_for(op, exp=None)), "no exp claim")


def test_rejects_non_numeric_exp(op, provider):
    rejected(op, provider, op.sign(claims_for(op, exp="tomorrow")), "exp claim is not valid")


def test_rejects_missing_iat(op, provider):
    rejected(op, provider, op.sign(claims_for(op, iat=None)), "no iat claim")


def test_rejects_iat_in_the_future(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    rejected(op, provider, op.sign(claims_for(op, iat=int(time.time()) + 120)), "iat claim is not valid")


def test_rejects_nbf_in_the_future(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    rejected(op, provider, op.sign(claims_for(op, nbf=int(time.time()) + 120)), "nbf claim is not valid")


def test_rejects_wrong_nonce(op, provider):
    rejected(op, provider, op.sign(claims_for(op, nonce="replayed")), "nonce claim is not valid")


def test_rejects_missing_nonce(op, provider):
    rejected(op, provider, op.sign(claims_for(op, nonce=None)), "no nonce claim")


def test_rejects_missing_sub(op, provider):
    rejected(op, provider, op.sign(claims_for(op, sub=None)), "no sub claim")


def test_rejects_non_string_sub(op, provider):
    rejected(op, provider, op.sign(claims_for(op, sub=12345)), "sub claim is not valid")


def test_rejects_at_hash_that_does_not_match_the_access_token(op, provider):
    token = op.sign(claims_for(op, at_hash="AAAAAAAAAAAAAAAAAAAAAA"))
    rejected(op, provider, token, "at_hash", access_token="the-real-access-token")


def test_rejects_sub_longer_than_255_characters(op, provider):
    rejected(op, provider, op.sign(claims_for(op, sub="x" * 256)), "longer than 255")


def test_rejects_sub_with_nul_character(op, provider):
    rejected(op, provider, op.sign(claims_for(op, sub="user\x00admin")), "NUL")


@pytest.mark.parametrize("crit", [1, None, "exp", {"a": 1}, ["unknown-extension"]])
def test_rejects_malformed_or_unknown_crit_header(op, provider, crit):
    """Found by fuzzing: a numeric "crit" made joserfc raise TypeError (a 500) instead of a rejection."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key = op.signing_key_for("RS256")  # signed by hand: joserfc itself refuses to produce such a header
    signing_input = b64({"alg": "RS256", "kid": key.kid, "crit": crit}) + "." + b64(claims_for(op))
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    token = signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    with pytest.raises(TokenRejected):
        verify(op, provider, token)


def test_rejects_non_ascii_at_hash_as_a_mismatch(op, provider):
    """Compared as bytes: a non-ASCII str made hmac.compare_digest raise TypeError (a 500)."""
    token = op.sign(claims_for(op, at_hash="ålice-häsh"))
    rejected(op, provider, token, "at_hash does not match the access token", access_token="the-real-access-token")


# --- max_age and auth_time (section 3.1.3.7 step 13) --------------------------------------------


def test_rejects_missing_auth_time_when_max_age_was_requested(op, provider):
    token = op.sign(claims_for(op))
    rejected(op, provider, token, "has no auth_time claim though max_age was requested", max_age=300)


def test_rejects_auth_time_older_than_max_age_allows(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    token = op.sign(claims_for(op, auth_time=int(time.time()) - 300 - 31))
    rejected(op, provider, token, "auth_time is older than max_age allows", max_age=300)


def test_accepts_auth_time_older_than_max_age_within_leeway(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    token = op.sign(claims_for(op, auth_time=int(time.time()) - 300 - 20))
    assert verify(op, provider, token, max_age=300)["sub"] == "user-1"


@pytest.mark.parametrize("auth_time", ["yesterday", True, float("nan"), float("-inf"), 10**400])
def test_rejects_auth_time_that_is_not_a_number(op, provider, auth_time):
    token = op.sign(claims_for(op, auth_time=auth_time))
    rejected(op, provider, token, "auth_time claim is not a number", max_age=300)


# --- payload ----------------------------------------------------------------------------------------


def test_rejects_payload_nesting_too_deeply(op, provider):
    """Valid JSON hundreds of levels deep would overflow the stack wherever the claims go next."""
    deep: list = []
    inner = deep
    for _ in range(500):
        inner.append([])
        inner = inner[0]
    rejected(op, provider, op.sign(claims_for(op, address=deep)), "payload nests too deeply")
