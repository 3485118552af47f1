"""Token verification: one test per rule of OpenID Connect Core 3.1.3.7 and Back-Channel Logout 2.6 (and the attacks).

Every rejection asserts the exact reason that fired (``TokenRejected.reason``, what the log and the audit
trail get), so a rule that is skipped, or caught by another rule by accident, turns its test red.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from accounts.errors import TokenRejected
from accounts.oidc import tokens
from accounts.oidc.tokens import BACKCHANNEL_LOGOUT_EVENT, same_text, verify_id_token, verify_logout_token
from tests.conftest import STRANGER_KEY, claims_for, logout_claims, logout_token, made_up_kid_token

pytestmark = pytest.mark.django_db


def verify(op, provider, token, *, nonce="n-1", access_token=None, max_age=None):
    return verify_id_token(
        provider, token, jwks_uri=op.metadata["jwks_uri"], nonce=nonce, access_token=access_token, max_age=max_age
    )


def rejected(op, provider, token, reason, **kwargs):
    """Assert that ``token`` is refused for exactly ``reason`` (the ``TokenRejected.reason`` that fired)."""
    with pytest.raises(TokenRejected) as info:
        verify(op, provider, token, **kwargs)
    assert info.value.reason == reason


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def signed_by_hand(op, header: dict, payload: dict | bytes) -> str:
    """RS256-sign exactly this header and payload with the provider's key, past joserfc's own checks."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = b64(header) + "." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    signature = op.signing_key_for("RS256").private_key.sign(signing_input.encode(), padding.PKCS1v15(), SHA256())
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


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
    rejected(op, provider, op.unsigned(claims_for(op)), "ID token is unsigned (alg 'none')")


def test_rejects_alg_none_even_if_listed_in_allowlist(op, provider):
    provider.allowed_algorithms = "RS256 none"  # an admin mistake must not open the door
    rejected(op, provider, op.unsigned(claims_for(op)), "ID token is unsigned (alg 'none')")


def test_rejects_algorithm_not_in_provider_allowlist(op, provider):
    provider.allowed_algorithms = "ES256"
    rejected(
        op, provider, op.sign(claims_for(op), alg="RS256"), "ID token alg RS256 is not allowed for provider test-op"
    )


def test_rejects_hmac_unless_admin_enabled_it(op, provider):
    token = jwt.encode({"alg": "HS256"}, claims_for(op), OctKey.import_key(op.client_secret), algorithms=["HS256"])
    rejected(op, provider, token, "ID token alg HS256 is not allowed for provider test-op")


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
    rejected(op, provider, forged, "ID token signature is not valid (bad_signature)")


def test_client_secret_that_is_a_public_key_is_never_used_as_hmac_key(op, provider):
    """An admin pasting the provider's public key as the secret must not enable the confusion either."""
    public_pem = op.signing_key_for("RS256").as_pem(private=False)
    provider.allowed_algorithms = "RS256 HS256"
    provider.client_secret = public_pem.decode()
    signing_input = b64({"alg": "HS256"}) + "." + b64(claims_for(op))
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    rejected(op, provider, forged, "client secret of test-op cannot be an HMAC key")


def test_rejects_token_signed_by_another_key_with_the_same_kid(op, provider):
    attacker = RSAKey.generate_key(2048, parameters={"kid": op.signing_key_for("RS256").kid})
    forged = jwt.encode({"alg": "RS256", "kid": attacker.kid}, claims_for(op), attacker, algorithms=["RS256"])
    rejected(op, provider, forged, "ID token signature is not valid (bad_signature)")


def test_rejects_tampered_payload(op, provider):
    header, _payload, signature = op.sign(claims_for(op)).split(".")
    tampered = ".".join([header, b64(claims_for(op, sub="admin")), signature])
    rejected(op, provider, tampered, "ID token signature is not valid (bad_signature)")


def test_rejects_unknown_kid(op, provider):
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-published"})
    token = jwt.encode({"alg": "RS256", "kid": "not-published"}, claims_for(op), stranger, algorithms=["RS256"])
    rejected(op, provider, token, "ID token kid 'not-published' matches no RS256 key of the provider")


def test_rejects_key_of_the_wrong_type_for_the_header_alg(op, provider):
    """kid names the EC key but the header claims RS256: the key must fit the algorithm."""
    ec = op.signing_key_for("ES256")
    token = op.sign(claims_for(op), alg="RS256", header={"alg": "RS256", "kid": ec.kid})
    rejected(op, provider, token, "ID token kid 'ec-1' matches no RS256 key of the provider")


def test_rejects_key_published_for_encryption(op, provider):
    enc = RSAKey.generate_key(2048, parameters={"kid": "enc-1", "use": "enc"})
    op.add_key(enc)
    token = op.sign_unchecked(claims_for(op), header={"alg": "RS256", "kid": "enc-1"}, key=enc)
    rejected(op, provider, token, "ID token kid 'enc-1' matches no RS256 key of the provider")


def test_rejects_key_published_for_another_algorithm(op, provider):
    key = RSAKey.generate_key(2048, parameters={"kid": "rs512-only", "use": "sig", "alg": "RS512"})
    op.add_key(key)
    token = op.sign_unchecked(claims_for(op), header={"alg": "RS256", "kid": "rs512-only"}, key=key)
    rejected(op, provider, token, "ID token kid 'rs512-only' matches no RS256 key of the provider")


def test_accepts_token_without_kid_when_exactly_one_suitable_key(op, provider):
    token = op.sign(claims_for(op), alg="ES256", header={"alg": "ES256"})  # one EC key published
    assert verify(op, provider, token)["sub"] == "user-1"


def test_rejects_token_without_kid_when_several_suitable_keys(op, provider):
    op.add_key(RSAKey.generate_key(2048, parameters={"kid": "rsa-extra", "use": "sig"}))
    token = op.sign(claims_for(op), alg="RS256", header={"alg": "RS256"})
    rejected(op, provider, token, "ID token has no kid and the provider has 2 RS256 keys")


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        ("", "ID token is not a compact JWS"),
        ("abc", "ID token is not a compact JWS"),
        ("a.b", "ID token is not a compact JWS"),
        ("a.b.c.d", "ID token is not a compact JWS"),
        ("eyJhbGciOiJSUzI1NiJ9.e30", "ID token is not a compact JWS"),
        (None, "ID token is not a compact JWS"),
        (b"a.b.c", "ID token is not a compact JWS"),
        ("!!!.###.$$$", "ID token header cannot be decoded"),
        ("é.b.c", "ID token header cannot be decoded"),
    ],
)
def test_rejects_malformed_tokens(op, provider, garbage, reason):
    rejected(op, provider, garbage, reason)


def test_rejects_header_that_is_not_json(op, provider):
    rejected(op, provider, "bm90IGpzb24." + b64({"sub": "x"}) + ".c2ln", "ID token header cannot be decoded")


def test_a_payload_that_cannot_be_decoded_is_named_as_the_payload(op, provider):
    rejected(op, provider, b64({"alg": "RS256", "kid": "k"}) + ".@@@.c2ln", "ID token payload cannot be decoded")


# --- claims --------------------------------------------------------------------------------------


def test_rejects_wrong_issuer(op, provider):
    rejected(
        op,
        provider,
        op.sign(claims_for(op, iss="https://evil.example")),
        "ID token iss claim is not valid (Invalid claim: 'iss')",
    )


def test_rejects_issuer_differing_only_by_trailing_slash(op, provider):
    rejected(
        op,
        provider,
        op.sign(claims_for(op, iss=op.issuer + "/")),
        "ID token iss claim is not valid (Invalid claim: 'iss')",
    )


def test_rejects_missing_issuer(op, provider):
    rejected(op, provider, op.sign(claims_for(op, iss=None)), "ID token has no iss claim")


def test_rejects_audience_of_another_client(op, provider):
    rejected(
        op,
        provider,
        op.sign(claims_for(op, aud="someone-else")),
        "ID token aud claim is not valid (Invalid claim: 'aud')",
    )


def test_rejects_missing_audience(op, provider):
    rejected(op, provider, op.sign(claims_for(op, aud=None)), "ID token has no aud claim")


def test_rejects_multiple_audiences_without_azp(op, provider):
    token = op.sign(claims_for(op, aud=[op.client_id, "other-client"]))
    rejected(op, provider, token, "ID token has several audiences and no azp claim")


def test_accepts_multiple_audiences_with_azp_of_this_client(op, provider):
    token = op.sign(claims_for(op, aud=[op.client_id, "other-client"], azp=op.client_id))
    assert verify(op, provider, token)["azp"] == op.client_id


def test_rejects_azp_of_another_client(op, provider):
    rejected(op, provider, op.sign(claims_for(op, azp="other-client")), "ID token azp claim is not this client")


def test_rejects_expired_token(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    rejected(op, provider, op.sign(claims_for(op, exp=int(time.time()) - 31)), "ID token has expired")


def test_accepts_recently_expired_token_within_leeway(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    assert verify(op, provider, op.sign(claims_for(op, exp=int(time.time()) - 20)))


def test_rejects_missing_exp(op, provider):
    rejected(op, provider, op.sign(claims_for(op, exp=None)), "ID token has no exp claim")


def test_rejects_non_numeric_exp(op, provider):
    rejected(
        op,
        provider,
        op.sign(claims_for(op, exp="tomorrow")),
        "ID token exp claim is not valid (Claim 'exp' must be a NumericDate value)",
    )


def test_rejects_missing_iat(op, provider):
    rejected(op, provider, op.sign(claims_for(op, iat=None)), "ID token has no iat claim")


def test_rejects_iat_in_the_future(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    rejected(
        op,
        provider,
        op.sign(claims_for(op, iat=int(time.time()) + 120)),
        "ID token iat claim is not valid (The token was issued in the future)",
    )


def test_rejects_nbf_in_the_future(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    rejected(
        op,
        provider,
        op.sign(claims_for(op, nbf=int(time.time()) + 120)),
        "ID token nbf claim is not valid (The token is not yet valid)",
    )


def test_rejects_wrong_nonce(op, provider):
    rejected(
        op,
        provider,
        op.sign(claims_for(op, nonce="replayed")),
        "ID token nonce claim is not valid (Invalid claim: 'nonce')",
    )


def test_rejects_missing_nonce(op, provider):
    rejected(op, provider, op.sign(claims_for(op, nonce=None)), "ID token has no nonce claim")


def test_rejects_missing_sub(op, provider):
    rejected(op, provider, op.sign(claims_for(op, sub=None)), "ID token has no sub claim")


def test_rejects_non_string_sub(op, provider):
    rejected(
        op,
        provider,
        op.sign(claims_for(op, sub=12345)),
        "ID token sub claim is not valid (Claim 'sub' must be a StringOrURI value)",
    )


def test_rejects_at_hash_that_does_not_match_the_access_token(op, provider):
    token = op.sign(claims_for(op, at_hash="AAAAAAAAAAAAAAAAAAAAAA"))
    rejected(
        op, provider, token, "ID token at_hash does not match the access token", access_token="the-real-access-token"
    )


def test_rejects_sub_longer_than_255_characters(op, provider):
    rejected(op, provider, op.sign(claims_for(op, sub="x" * 256)), "ID token sub claim is longer than 255 characters")


def test_rejects_sub_with_nul_character(op, provider):
    rejected(op, provider, op.sign(claims_for(op, sub="user\x00admin")), "ID token sub claim contains a NUL character")


@pytest.mark.parametrize(
    ("crit", "reason"),
    [
        (1, "ID token header is malformed (TypeError)"),
        (None, "ID token header is malformed (TypeError)"),
        ("exp", "ID token signature is not valid (missing_crit_header)"),
        ({"a": 1}, "ID token signature is not valid (missing_crit_header)"),
        (["unknown-extension"], "ID token signature is not valid (missing_crit_header)"),
    ],
)
def test_rejects_malformed_or_unknown_crit_header(op, provider, crit, reason):
    """Found by fuzzing: a numeric "crit" made joserfc raise TypeError (a 500) instead of a rejection."""
    token = signed_by_hand(op, {"alg": "RS256", "kid": "rsa-1", "crit": crit}, claims_for(op))
    with pytest.raises(TokenRejected) as info:
        verify(op, provider, token)
    assert info.value.reason == reason


def test_rejects_non_ascii_at_hash_as_a_mismatch(op, provider):
    """Compared as bytes: a non-ASCII str made hmac.compare_digest raise TypeError (a 500)."""
    token = op.sign(claims_for(op, at_hash="ålice-häsh"))
    rejected(
        op, provider, token, "ID token at_hash does not match the access token", access_token="the-real-access-token"
    )


# --- max_age and auth_time (section 3.1.3.7 step 13) --------------------------------------------


def test_rejects_missing_auth_time_when_max_age_was_requested(op, provider):
    token = op.sign(claims_for(op))
    rejected(op, provider, token, "ID token has no auth_time claim though max_age was requested", max_age=300)


def test_rejects_auth_time_older_than_max_age_allows(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    token = op.sign(claims_for(op, auth_time=int(time.time()) - 300 - 31))
    rejected(op, provider, token, "ID token auth_time is older than max_age allows", max_age=300)


def test_accepts_auth_time_older_than_max_age_within_leeway(op, provider, settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    token = op.sign(claims_for(op, auth_time=int(time.time()) - 300 - 20))
    assert verify(op, provider, token, max_age=300)["sub"] == "user-1"


@pytest.mark.parametrize("auth_time", ["yesterday", True, float("nan"), float("-inf"), 10**400])
def test_rejects_auth_time_that_is_not_a_number(op, provider, auth_time):
    token = op.sign(claims_for(op, auth_time=auth_time))
    rejected(op, provider, token, "ID token auth_time claim is not a number", max_age=300)


# --- payload ----------------------------------------------------------------------------------------


def test_rejects_payload_nesting_too_deeply(op, provider):
    """Valid JSON hundreds of levels deep would overflow the stack wherever the claims go next."""
    deep: list = []
    inner = deep
    for _ in range(500):
        inner.append([])
        inner = inner[0]
    rejected(op, provider, op.sign(claims_for(op, address=deep)), "ID token payload nests too deeply")


# --- logout tokens (Back-Channel Logout 1.0, section 2.6) ------------------------------------------


def verify_logout(op, provider, token):
    return verify_logout_token(provider, token, jwks_uri=op.metadata["jwks_uri"])


def logout_rejected(op, provider, token) -> str:
    with pytest.raises(TokenRejected) as info:
        verify_logout(op, provider, token)
    return info.value.reason


def typed_logout_token(op, typ) -> str:
    return op.sign_unchecked(logout_claims(op), header={"alg": "RS256", "kid": "rsa-1", "typ": typ}, key=op.keys[0])


def test_accepts_logout_token(op, provider):
    claims = logout_claims(op)
    assert verify_logout(op, provider, op.sign(claims)) == claims


@pytest.mark.parametrize(
    "typ", ["logout+jwt", "application/logout+jwt", "jwt", "JWT", "Logout+JWT", "APPLICATION/LOGOUT+JWT"]
)
def test_accepts_logout_token_typ_spellings(op, provider, typ):
    """RFC 7515 4.1.9: typ is a media type, compared without regard to case; "JWT" is what most providers send."""
    assert verify_logout(op, provider, typed_logout_token(op, typ))["sid"] == "op-session-1"


def test_accepts_logout_token_without_typ(op, provider):
    token = op.sign_unchecked(logout_claims(op), header={"alg": "RS256", "kid": "rsa-1"}, key=op.keys[0])
    assert verify_logout(op, provider, token)["sid"] == "op-session-1"


@pytest.mark.parametrize(
    "typ", ["at+jwt", "id_token+jwt", "application/at+jwt", "secevent+jwt", "JOSE", "logout", "jwt ", ""]
)
def test_rejects_logout_token_with_another_typ(op, provider, typ):
    """RFC 8725 3.11: an access token or any other JWT of the provider must not pass for a logout token."""
    assert logout_rejected(op, provider, typed_logout_token(op, typ)) == f"logout token has typ {str(typ)!r}"


def test_logout_token_typ_is_quoted_at_most_40_characters_long(op, provider):
    reason = logout_rejected(op, provider, typed_logout_token(op, "x" * 41 + "+jwt"))
    assert reason == f"logout token has typ {'x' * 40!r}"


def test_rejects_id_token_as_logout_token(op, provider):
    """An ID token carries a nonce and no logout event: it must never end a session."""
    assert logout_rejected(op, provider, op.sign(claims_for(op))) == "logout token has no jti claim"
    token = op.sign(claims_for(op, jti="j-1", events={BACKCHANNEL_LOGOUT_EVENT: {}}))
    assert logout_rejected(op, provider, token) == "logout token carries a nonce"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"jti": None}, "logout token has no jti claim"),
        ({"iss": "https://evil.example"}, "logout token iss claim is not valid (Invalid claim: 'iss')"),
        ({"aud": "someone-else"}, "logout token aud claim is not valid (Invalid claim: 'aud')"),
        ({"exp": None}, "logout token has no exp claim"),
        ({"iat": None}, "logout token has no iat claim"),
        ({"events": None}, "logout token lacks the back-channel logout event"),
        ({"events": ["x"]}, "logout token lacks the back-channel logout event"),
        ({"events": {"http://schemas.openid.net/event/other": {}}}, "logout token lacks the back-channel logout event"),
        ({"events": {BACKCHANNEL_LOGOUT_EVENT: "yes"}}, "logout token lacks the back-channel logout event"),
        ({"nonce": "n-1"}, "logout token carries a nonce"),
        ({"sid": None}, "logout token has neither sid nor sub"),
        ({"sid": ""}, "logout token sid or sub is not a non-empty string"),
        ({"sid": None, "sub": ""}, "logout token sid or sub is not a non-empty string"),
        ({"sid": 7}, "logout token sid or sub is not a non-empty string"),
        ({"sid": ["op-session-1"]}, "logout token sid or sub is not a non-empty string"),
        ({"sub": ["user-1"]}, "logout token sub claim is not valid (Claim 'sub' must be a StringOrURI value)"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_rejects_logout_token_breaking_a_rule(op, provider, overrides, reason):
    assert logout_rejected(op, provider, logout_token(op, **overrides)) == reason


@pytest.mark.parametrize("names", [{"sid": None, "sub": "user-1"}, {"sub": "user-1"}])
def test_accepts_logout_token_naming_a_subject(op, provider, names):
    assert verify_logout(op, provider, logout_token(op, **names))["sub"] == "user-1"


def test_rejects_logout_token_with_unknown_kid_naming_it(op, provider):
    token = made_up_kid_token(logout_claims(op), "made-up")
    assert logout_rejected(op, provider, token) == "logout token kid 'made-up' matches no RS256 key of the provider"


def test_logout_token_unknown_kid_does_not_spend_the_back_channel_budget(op, provider):
    """Anyone can post one, so it refetches on its own budget: after an ID token spent the cooldown, it still may."""
    verify(op, provider, op.sign(claims_for(op)))
    rejected(
        op,
        provider,
        made_up_kid_token(claims_for(op), "made-up"),
        "ID token kid 'made-up' matches no RS256 key of the provider",
    )
    assert op.hits["/jwks"] == 2
    op.rotate("RSA")
    assert verify_logout(op, provider, op.sign(logout_claims(op)))["sid"] == "op-session-1"
    assert op.hits["/jwks"] == 3


def test_id_token_unknown_kid_refetches_on_the_back_channel_budget(op, provider):
    """A logout token that spent the budget of anyone's kids cannot keep a rotated key from sign-in."""
    verify(op, provider, op.sign(claims_for(op)))
    reason = logout_rejected(op, provider, made_up_kid_token(logout_claims(op), "made-up"))
    assert reason == "logout token kid 'made-up' matches no RS256 key of the provider"
    assert op.hits["/jwks"] == 2
    op.rotate("RSA")
    assert verify(op, provider, op.sign(claims_for(op)))["sub"] == "user-1"
    assert op.hits["/jwks"] == 3


@pytest.mark.parametrize("typ", [1, None, ["logout+jwt"], True])
def test_rejects_logout_token_with_a_typ_that_is_not_a_string(op, provider, typ):
    """Signed by hand: joserfc refuses to produce such a header, and refuses it when verifying too."""
    token = signed_by_hand(op, {"alg": "RS256", "kid": "rsa-1", "typ": typ}, logout_claims(op))
    assert logout_rejected(op, provider, token) == "logout token signature is not valid (invalid_header_value)"


# --- more of the rules, each with the reason it fires -----------------------------------------------


def reason_of(op, provider, token, **kwargs) -> str:
    with pytest.raises(TokenRejected) as info:
        verify(op, provider, token, **kwargs)
    return info.value.reason


@pytest.mark.parametrize(("alg", "shown"), [(1, "1"), (None, "None"), (["RS256"], "['RS256']")])
def test_rejects_alg_that_is_not_a_string_as_unsigned(op, provider, alg, shown):
    token = b64({"alg": alg, "kid": "rsa-1"}) + "." + b64(claims_for(op)) + ".c2ln"
    assert reason_of(op, provider, token) == f"ID token is unsigned (alg {shown})"


def test_accepts_token_after_the_provider_rotated_its_key(op, provider):
    """An unknown kid from the token endpoint means a rotation: the key set is fetched again, once."""
    verify(op, provider, op.sign(claims_for(op)))
    new = op.rotate("RSA")
    assert verify(op, provider, op.sign(claims_for(op)))["sub"] == "user-1"
    assert new.kid != "rsa-1" and op.hits["/jwks"] == 2


def test_issuers_callback_decides_which_iss_is_accepted(op, provider):
    """A preset (Microsoft's per-tenant issuer) may accept another iss, judged from the verified claims."""
    seen = []

    def issuers(claims):
        seen.append(claims["sub"])
        return ["https://login.example/tenant-1"]

    token = op.sign(claims_for(op, iss="https://login.example/tenant-1"))
    claims = verify_id_token(provider, token, jwks_uri=op.metadata["jwks_uri"], nonce="n-1", issuers=issuers)
    assert claims["iss"] == "https://login.example/tenant-1" and seen == ["user-1"]
    token = op.sign(claims_for(op))  # the provider's own issuer is no longer among those given
    with pytest.raises(TokenRejected) as info:
        verify_id_token(provider, token, jwks_uri=op.metadata["jwks_uri"], nonce="n-1", issuers=issuers)
    assert info.value.reason == "ID token iss claim is not valid (Invalid claim: 'iss')"


def test_accepts_single_audience_list_without_azp(op, provider):
    assert verify(op, provider, op.sign(claims_for(op, aud=[op.client_id])))["aud"] == [op.client_id]


def test_rejects_azp_of_another_client_with_several_audiences(op, provider):
    token = op.sign(claims_for(op, aud=[op.client_id, "other-client"], azp="other-client"))
    assert reason_of(op, provider, token) == "ID token azp claim is not this client"


def test_accepts_sub_of_exactly_255_characters(op, provider):
    assert verify(op, provider, op.sign(claims_for(op, sub="x" * 255)))["sub"] == "x" * 255


def test_hmac_needs_a_client_secret(op, provider):
    provider.allowed_algorithms = "RS256 HS256"
    provider.client_secret = ""
    token = jwt.encode({"alg": "HS256"}, claims_for(op), OctKey.import_key(op.client_secret), algorithms=["HS256"])
    assert reason_of(op, provider, token) == "HS256 needs a client secret and provider test-op has none"


def test_hmac_with_a_short_client_secret_warns_nobody(op, provider):
    """joserfc warns on short HMAC keys; the admin chose HMAC, so the warning would only be noise in the logs."""
    provider.allowed_algorithms = "RS256 HS256"
    provider.client_secret = "short"
    token = op.sign_unchecked(claims_for(op), header={"alg": "HS256"}, key="short")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert verify(op, provider, token)["sub"] == "user-1"


# --- which published key may verify ------------------------------------------------------------------


def publish_only(op, jwk: dict) -> None:
    """Serve a key set of exactly this one public JWK."""
    op.jwks_override = {"keys": [jwk]}


def public_jwk(key, **members) -> dict:
    return {k: v for k, v in {**key.as_dict(private=False), **members}.items() if v is not None}


@pytest.mark.parametrize("members", [{"use": None}, {"use": "sig"}, {"key_ops": ["verify"]}, {"alg": "RS256"}])
def test_accepts_key_whose_members_allow_signature_verification(op, provider, members):
    publish_only(op, public_jwk(op.signing_key_for("RS256"), **members))
    assert verify(op, provider, op.sign(claims_for(op)))["sub"] == "user-1"


@pytest.mark.parametrize(
    "members",
    [{"use": "enc"}, {"use": None, "key_ops": ["encrypt"]}, {"use": None, "key_ops": []}, {"alg": "PS256"}],
)
def test_rejects_key_whose_members_forbid_verifying_this_token(op, provider, members):
    publish_only(op, public_jwk(op.signing_key_for("RS256"), **members))
    reason = reason_of(op, provider, op.sign(claims_for(op)))
    assert reason == "ID token kid 'rsa-1' matches no RS256 key of the provider"


def test_rejects_es256_token_whose_kid_names_a_p384_key(op, provider):
    """RFC 7518 3.4: ES256 is P-256 only; a P-384 key published without alg must not verify it."""
    p384 = ECKey.generate_key("P-384", parameters={"kid": "ec-384", "use": "sig"})
    op.add_key(p384)
    signing_input = b64({"alg": "ES256", "kid": "ec-384"}) + "." + b64(claims_for(op))
    r, s = decode_dss_signature(p384.private_key.sign(signing_input.encode(), ECDSA(SHA256())))
    token = signing_input + "." + base64.urlsafe_b64encode(r.to_bytes(48, "big") + s.to_bytes(48, "big")).decode()
    assert reason_of(op, provider, token) == "ID token kid 'ec-384' matches no ES256 key of the provider"


def test_rejects_eddsa_token_whose_kid_names_an_x25519_key(op, provider):
    """An OKP key for key agreement (X25519) is no Ed25519 signing key, whatever the token says."""
    ed = OKPKey.generate_key("Ed25519", parameters={"kid": "okp-1", "use": "sig"})
    x = OKPKey.generate_key("X25519", parameters={"kid": "okp-1"})
    publish_only(op, public_jwk(x))
    token = op.sign(claims_for(op), alg="EdDSA", header={"alg": "EdDSA", "kid": "okp-1"}, key=ed)
    assert reason_of(op, provider, token) == "ID token kid 'okp-1' matches no EdDSA key of the provider"


# --- payload -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[1, 2]", "ID token payload is not a JSON object"),
        (b'"sub"', "ID token payload is not a JSON object"),
        (b"not json", "ID token payload is not JSON"),
        (b"\xff\xfe", "ID token payload is not JSON"),
    ],
)
def test_rejects_signed_payload_that_is_no_json_object(op, provider, payload, reason):
    token = signed_by_hand(op, {"alg": "RS256", "kid": "rsa-1"}, payload)
    assert reason_of(op, provider, token) == reason


# --- at_hash (section 3.1.3.8) ---------------------------------------------------------------------------


def half_hash(value: str, alg: str) -> str:
    digest = hashlib.new({"256": "sha256", "384": "sha384", "512": "sha512"}[alg[-3:]], value.encode()).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["RS256", "RS384", "ES256"])
def test_accepts_at_hash_matching_the_access_token(op, provider, alg):
    token = op.sign(claims_for(op, at_hash=half_hash("the-access-token", alg)), alg=alg)
    assert verify(op, provider, token, access_token="the-access-token")["sub"] == "user-1"


def test_at_hash_is_not_checked_without_an_access_token(op, provider):
    token = op.sign(claims_for(op, at_hash="AAAAAAAAAAAAAAAAAAAAAA"))
    assert verify(op, provider, token)["sub"] == "user-1"


@pytest.mark.parametrize("at_hash", [12345, None, ["x"], "\ud800"])
def test_rejects_at_hash_of_the_wrong_kind_as_a_mismatch(op, provider, at_hash):
    claims = json.dumps(claims_for(op, at_hash="PLACEHOLDER")).replace('"PLACEHOLDER"', json.dumps(at_hash))
    token = signed_by_hand(op, {"alg": "RS256", "kid": "rsa-1"}, claims.encode())
    if at_hash is None:  # JSON null is "no at_hash": nothing to check
        assert verify(op, provider, token, access_token="at")["sub"] == "user-1"
        return
    assert reason_of(op, provider, token, access_token="at") == "ID token at_hash does not match the access token"


def test_same_text_compares_any_strings_as_utf8():
    """A claim may hold any string, a lone surrogate included (valid JSON): compared, never raised on."""
    real = half_hash("at", "RS256")
    assert same_text(real, real) and not same_text("\ud800", real) and not same_text("\ud800", "\ud801")
    assert same_text("ålice", "ålice") and not same_text("ålice", "alice")


# --- auth_time at the boundary (frozen clock) --------------------------------------------------------------


@pytest.fixture
def frozen_now(monkeypatch):
    now = float(int(time.time()))
    monkeypatch.setattr(tokens.time, "time", lambda: now)
    return int(now)


def test_auth_time_exactly_at_max_age_plus_leeway_is_accepted(op, provider, settings, frozen_now):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    token = op.sign(claims_for(op, iat=frozen_now, exp=frozen_now + 60, auth_time=frozen_now - 300 - 30))
    assert verify(op, provider, token, max_age=300)["auth_time"] == frozen_now - 330


def test_auth_time_one_second_beyond_max_age_plus_leeway_is_rejected(op, provider, settings, frozen_now):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    token = op.sign(claims_for(op, iat=frozen_now, exp=frozen_now + 60, auth_time=frozen_now - 300 - 31))
    assert reason_of(op, provider, token, max_age=300) == "ID token auth_time is older than max_age allows"


def test_auth_time_in_the_future_beyond_the_leeway_is_rejected(op, provider, settings, frozen_now):
    """A provider's "authenticated an hour from now" would satisfy every max_age until then."""
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 30
    token = op.sign(claims_for(op, iat=frozen_now, exp=frozen_now + 60, auth_time=frozen_now + 31))
    assert reason_of(op, provider, token, max_age=300) == "ID token auth_time is in the future"
    token = op.sign(claims_for(op, iat=frozen_now, exp=frozen_now + 60, auth_time=frozen_now + 30))
    assert verify(op, provider, token, max_age=300)["auth_time"] == frozen_now + 30  # a clock a little ahead


def test_auth_time_may_be_a_float_and_max_age_zero(op, provider, settings, frozen_now):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 0
    token = op.sign(claims_for(op, iat=frozen_now, exp=frozen_now + 60, auth_time=frozen_now - 0.5))
    assert reason_of(op, provider, token, max_age=0) == "ID token auth_time is older than max_age allows"
    token = op.sign(claims_for(op, iat=frozen_now, exp=frozen_now + 60, auth_time=float(frozen_now)))
    assert verify(op, provider, token, max_age=0)["sub"] == "user-1"


def test_auth_time_is_not_required_without_max_age(op, provider):
    assert verify(op, provider, op.sign(claims_for(op, auth_time="yesterday")))["sub"] == "user-1"


@pytest.mark.parametrize("access_token", ["\ud800", {"not": "a string"}])
def test_at_hash_that_cannot_be_computed_is_a_rejection_not_a_crash(op, provider, access_token):
    """A token response is JSON too: an access token that cannot be hashed must not become a 500."""
    token = op.sign(claims_for(op, at_hash=half_hash("at", "RS256")))
    rejected(op, provider, token, "ID token at_hash cannot be checked for RS256", access_token=access_token)


# --- which of several keys, and how often the key set is fetched again ----------------------------------


@pytest.mark.parametrize("unsuitable", [{"alg": "RS512"}, {"use": "enc"}, {"key_ops": ["encrypt"]}, {"kty": "EC"}])
def test_token_without_kid_passes_over_unsuitable_keys_to_the_suitable_one(op, provider, unsuitable):
    """Every published key is considered in turn: one that does not fit is skipped, not the end of the search."""
    if unsuitable == {"kty": "EC"}:
        first = public_jwk(op.signing_key_for("ES256"))
    else:
        first = {**public_jwk(STRANGER_KEY), "kid": "stranger", **unsuitable}
    op.jwks_override = {"keys": [first, public_jwk(op.signing_key_for("RS256"))]}
    assert verify(op, provider, op.sign(claims_for(op), header={"alg": "RS256"}))["sub"] == "user-1"


def test_es256_token_without_kid_passes_over_a_p384_key(op, provider):
    p384 = ECKey.generate_key("P-384", parameters={"kid": "ec-384", "use": "sig"})
    op.jwks_override = {"keys": [public_jwk(p384), public_jwk(op.signing_key_for("ES256"))]}
    assert verify(op, provider, op.sign(claims_for(op), alg="ES256", header={"alg": "ES256"}))["sub"] == "user-1"


def test_id_token_unknown_kids_are_spaced_by_the_back_channel_cooldown(op, provider, settings, skipping_clock):
    settings.ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN = 60
    verify(op, provider, op.sign(claims_for(op)))
    for i in range(3):
        token = made_up_kid_token(claims_for(op), f"made-up-{i}")
        rejected(op, provider, token, f"ID token kid 'made-up-{i}' matches no RS256 key of the provider")
    assert op.hits["/jwks"] == 4  # the first load and one refetch each, a cooldown apart
    assert 2 * 59 <= skipping_clock.skipped <= 2 * 60


def test_logout_token_unknown_kids_are_held_back_by_their_own_budget(op, provider, settings):
    settings.ACCOUNTS_OIDC_JWKS_UNTRUSTED_REFETCH_INTERVAL = 60
    verify(op, provider, op.sign(claims_for(op)))
    for i in range(3):
        reason = logout_rejected(op, provider, made_up_kid_token(logout_claims(op), f"made-up-{i}"))
        assert reason == f"logout token kid 'made-up-{i}' matches no RS256 key of the provider"
    assert op.hits["/jwks"] == 2
