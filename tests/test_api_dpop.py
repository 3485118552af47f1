# ruff: noqa: F811 -- the fixtures of tests/test_api.py are imported, then requested by name
"""DPoP-bound access tokens at this site's APIs (RFC 9449 section 7): one attack test per rule.

Tokens are really signed by the provider double and carry ``cnf.jkt``; proofs are really signed
with their own keys. Each refusal asserts the ``DPoP`` challenge's error and the logged reason.
"""

from __future__ import annotations

import logging
import time

import pytest
from django.test import Client

from accounts import dpop as api_dpop
from accounts.oidc import dpop
from tests.test_api import access_token, alice, call  # noqa: F401 -- fixtures used by name

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_api"), pytest.mark.usefixtures("discovered")]

URL = "http://testserver/api/orders/"


@pytest.fixture
def key():
    return dpop.new_key()


def bound_token(op, key) -> str:
    return access_token(op, cnf={"jkt": dpop.thumbprint(key)})


def dpop_call(token: str, caplog, *, proof: str | None, client: Client | None = None):
    extra = {"HTTP_DPOP": proof} if proof is not None else {}
    return call("/api/orders/", token, caplog, header=f"DPoP {token}", client=client, **extra)


def assert_dpop_refused(response, caplog, error: str, reason: str) -> None:
    assert response.status_code == 401, response.content
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith("DPoP ") and f'error="{error}"' in challenge and 'algs="' in challenge
    assert response.json()["error"] == error
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("bearer token refused")]
    assert len(lines) == 1 and reason in lines[0], lines


def test_a_dpop_bound_token_with_a_valid_proof_is_admitted(op, alice, key, caplog):
    token = bound_token(op, key)
    response = dpop_call(token, caplog, proof=dpop.make_proof(key, htm="GET", htu=URL, access_token=token))
    assert response.status_code == 200, response.content
    assert response.json()["user"] == alice.pk


def test_bearer_downgrade_of_a_dpop_bound_token_is_refused(op, alice, key, caplog):
    token = bound_token(op, key)
    response = call("/api/orders/", token, caplog)  # Authorization: Bearer, no proof
    assert_dpop_refused(response, caplog, "invalid_token", "DPoP-bound access token sent as a bearer token")


def test_dpop_scheme_with_an_unbound_token_is_refused(op, alice, key, caplog):
    token = access_token(op)
    response = dpop_call(token, caplog, proof=dpop.make_proof(key, htm="GET", htu=URL, access_token=token))
    assert_dpop_refused(response, caplog, "invalid_token", "is not DPoP-bound (no cnf.jkt)")


def test_missing_proof_is_refused(op, alice, key, caplog):
    assert_dpop_refused(
        dpop_call(bound_token(op, key), caplog, proof=None), caplog, "invalid_dpop_proof", "no DPoP proof"
    )


def test_wrong_htm_is_refused(op, alice, key, caplog):
    token = bound_token(op, key)
    response = dpop_call(token, caplog, proof=dpop.make_proof(key, htm="POST", htu=URL, access_token=token))
    assert_dpop_refused(response, caplog, "invalid_dpop_proof", "htm is not this request's method")


def test_wrong_htu_is_refused(op, alice, key, caplog):
    token = bound_token(op, key)
    proof = dpop.make_proof(key, htm="GET", htu="http://testserver/api/any/", access_token=token)
    assert_dpop_refused(
        dpop_call(token, caplog, proof=proof), caplog, "invalid_dpop_proof", "htu is not this request's URL"
    )


@pytest.mark.parametrize("skew", [-61, 61])
def test_stale_or_future_iat_is_refused(op, alice, key, caplog, skew):
    token = bound_token(op, key)
    proof = dpop.make_proof(key, htm="GET", htu=URL, access_token=token, now=time.time() + skew)
    assert_dpop_refused(
        dpop_call(token, caplog, proof=proof), caplog, "invalid_dpop_proof", "iat is missing or more than 60s"
    )


@pytest.mark.services
def test_replayed_proof_is_refused(op, alice, key, caplog):
    token = bound_token(op, key)
    proof = dpop.make_proof(key, htm="GET", htu=URL, access_token=token)
    assert dpop_call(token, caplog, proof=proof).status_code == 200
    caplog.clear()
    assert_dpop_refused(dpop_call(token, caplog, proof=proof), caplog, "invalid_dpop_proof", "jti replay")


def test_ath_mismatch_is_refused(op, alice, key, caplog):
    token, other = bound_token(op, key), bound_token(op, key)
    proof = dpop.make_proof(key, htm="GET", htu=URL, access_token=other)
    assert_dpop_refused(dpop_call(token, caplog, proof=proof), caplog, "invalid_dpop_proof", "ath is not the hash")


def test_proof_by_another_key_than_cnf_jkt_is_refused(op, alice, key, caplog):
    token = bound_token(op, key)
    thief = dpop.new_key()
    proof = dpop.make_proof(thief, htm="GET", htu=URL, access_token=token)
    assert_dpop_refused(
        dpop_call(token, caplog, proof=proof), caplog, "invalid_token", "not the key the access token is bound to"
    )


def _forged(key, header: dict, claims: dict) -> str:
    import json

    from joserfc import jws

    return jws.serialize_compact(header, json.dumps(claims), key, algorithms=[header["alg"]])


def _claims(token: str, **over) -> dict:
    import secrets

    base = {
        "jti": secrets.token_urlsafe(16),
        "htm": "GET",
        "htu": URL,
        "iat": int(time.time()),
        "ath": dpop.token_hash(token),
    }
    return {**base, **over}


def test_proof_with_a_symmetric_algorithm_is_refused(op, alice, key, caplog):
    from joserfc.jwk import OctKey

    token = bound_token(op, key)
    secret = OctKey.generate_key(256)
    proof = _forged(secret, {"typ": "dpop+jwt", "alg": "HS256", "jwk": secret.as_dict(private=False)}, _claims(token))
    assert_dpop_refused(
        dpop_call(token, caplog, proof=proof), caplog, "invalid_dpop_proof", "not an asymmetric algorithm"
    )


def test_proof_with_another_typ_is_refused(op, alice, key, caplog):
    token = bound_token(op, key)
    public = {n: v for n, v in key.as_dict(private=False).items()}
    proof = _forged(key, {"typ": "JWT", "alg": "ES256", "jwk": public}, _claims(token))
    assert_dpop_refused(dpop_call(token, caplog, proof=proof), caplog, "invalid_dpop_proof", "typ is not dpop+jwt")


def test_proof_whose_jwk_holds_the_private_key_is_refused(op, alice, key, caplog):
    token = bound_token(op, key)
    proof = _forged(key, {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=True)}, _claims(token))
    assert_dpop_refused(dpop_call(token, caplog, proof=proof), caplog, "invalid_dpop_proof", "holds a private key")


def test_proof_signed_by_another_key_than_its_jwk_is_refused(op, alice, key, caplog):
    token = bound_token(op, key)
    public = {n: v for n, v in key.as_dict(private=False).items()}
    proof = _forged(dpop.new_key(), {"typ": "dpop+jwt", "alg": "ES256", "jwk": public}, _claims(token))
    assert_dpop_refused(
        dpop_call(token, caplog, proof=proof), caplog, "invalid_dpop_proof", "signature does not verify"
    )


def test_api_asking_for_nonces_answers_use_dpop_nonce_then_admits_the_retry(op, alice, key, caplog, settings):
    settings.ACCOUNTS_DPOP_REQUIRE_NONCE = True
    token = bound_token(op, key)
    first = dpop_call(token, caplog, proof=dpop.make_proof(key, htm="GET", htu=URL, access_token=token))
    assert_dpop_refused(first, caplog, "use_dpop_nonce", "lacks this API's current nonce")
    nonce = first["DPoP-Nonce"]
    assert nonce == api_dpop.current_nonce()
    retry = dpop_call(token, caplog, proof=dpop.make_proof(key, htm="GET", htu=URL, access_token=token, nonce=nonce))
    assert retry.status_code == 200, retry.content


def test_a_made_up_nonce_is_refused(op, alice, key, caplog, settings):
    settings.ACCOUNTS_DPOP_REQUIRE_NONCE = True
    token = bound_token(op, key)
    proof = dpop.make_proof(key, htm="GET", htu=URL, access_token=token, nonce="guessed")
    assert_dpop_refused(
        dpop_call(token, caplog, proof=proof), caplog, "use_dpop_nonce", "lacks this API's current nonce"
    )


def test_the_log_never_holds_the_proof(op, alice, key, caplog):
    token = bound_token(op, key)
    proof = dpop.make_proof(key, htm="POST", htu=URL, access_token=token)
    with caplog.at_level(logging.INFO):
        dpop_call(token, caplog, proof=proof)
    assert proof.split(".")[2] not in caplog.text


@pytest.mark.urls("tests.test_api_drf")
def test_drf_accepts_a_dpop_proof_and_refuses_the_bearer_downgrade(op, alice, key, caplog):
    token = bound_token(op, key)
    url = "http://testserver/drf/whoami/"
    proof = dpop.make_proof(key, htm="GET", htu=url, access_token=token)
    ok = call("/drf/whoami/", token, caplog, header=f"DPoP {token}", HTTP_DPOP=proof)
    assert ok.status_code == 200, ok.content
    caplog.clear()
    downgraded = call("/drf/whoami/", token, caplog)
    assert downgraded.status_code == 401
    assert downgraded["WWW-Authenticate"].startswith('DPoP error="invalid_token"')
