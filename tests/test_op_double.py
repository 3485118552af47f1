"""The OpenID provider double itself, exercised over HTTP without Django: if it lies, every other test does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.op_double import DISCOVERY_PATH, AuthorizationRequestError, OpenIDProviderDouble

REDIRECT_URI = "http://rp.example/callback"


@pytest.fixture
def double():
    with OpenIDProviderDouble() as op:
        yield op


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorization_request(op: OpenIDProviderDouble, challenge: str, **overrides: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": op.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid email profile",
        "state": "s-1",
        "nonce": "n-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return params


def exchange(op: OpenIDProviderDouble, code: str, verifier: str, *, post_auth: bool = False) -> requests.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
    if post_auth:
        form.update(client_id=op.client_id, client_secret=op.client_secret)
        return requests.post(op.metadata["token_endpoint"], data=form, timeout=5)
    return requests.post(op.metadata["token_endpoint"], data=form, auth=(op.client_id, op.client_secret), timeout=5)


def signed_in(op: OpenIDProviderDouble) -> tuple[str, str]:
    """A fresh code and its verifier, as the callback would hand them to the relying party."""
    verifier, challenge = pkce_pair()
    return op.authorize(authorization_request(op, challenge))["code"], verifier


# --- documents ------------------------------------------------------------------------------------


def test_discovery_is_served_and_follows_mutations(double):
    response = requests.get(double.issuer + DISCOVERY_PATH, timeout=5)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "max-age=3600"
    assert response.json()["issuer"] == double.issuer == f"http://127.0.0.1:{double.port}"
    assert response.json()["token_endpoint"] == double.issuer + "/token"

    double.metadata["authorization_response_iss_parameter_supported"] = True
    double.cache_control = None
    again = requests.get(double.issuer + DISCOVERY_PATH, timeout=5)
    assert again.json()["authorization_response_iss_parameter_supported"] is True
    assert "Cache-Control" not in again.headers


def test_issuer_with_a_path_prefix():
    with OpenIDProviderDouble(path="/realms/test/") as op:
        assert op.issuer == f"http://127.0.0.1:{op.port}/realms/test"
        assert requests.get(op.issuer + DISCOVERY_PATH, timeout=5).json()["jwks_uri"] == op.issuer + "/jwks"
        assert requests.get(f"http://127.0.0.1:{op.port}/jwks", timeout=5).status_code == 404
        assert op.hits[DISCOVERY_PATH] == 1  # keyed relative to the prefix


def test_jwks_publishes_public_keys_only(double):
    keys = requests.get(double.metadata["jwks_uri"], timeout=5).json()["keys"]
    assert [(k["kty"], k["kid"], k["use"]) for k in keys] == [("RSA", "rsa-1", "sig"), ("EC", "ec-1", "sig")]
    assert not any("d" in k or "p" in k for k in keys)

    double.jwks_override = {"keys": "not a list"}
    assert requests.get(double.metadata["jwks_uri"], timeout=5).json() == {"keys": "not a list"}


def test_rotation_replaces_the_key_and_signs_with_the_new_one(double):
    new = double.rotate("RSA")
    kids = [k["kid"] for k in double.jwks()["keys"]]
    assert "rsa-1" not in kids and new.kid in kids
    assert jwt.decode(double.sign({"sub": "x"}), KeySet.import_key_set(double.jwks())).header["kid"] == new.kid


# --- the code flow --------------------------------------------------------------------------------


def test_code_exchange_issues_an_id_token_verifiable_with_the_served_jwks(double):
    double.send_iss_param = True
    verifier, challenge = pkce_pair()
    callback = double.authorize(authorization_request(double, challenge))
    assert callback["state"] == "s-1" and callback["iss"] == double.issuer

    response = exchange(double, callback["code"], verifier)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 300
    served = KeySet.import_key_set(requests.get(double.metadata["jwks_uri"], timeout=5).json())
    id_token = jwt.decode(tokens["id_token"], served, algorithms=["RS256"])
    assert id_token.header["kid"] == "rsa-1"
    claims = id_token.claims
    assert (claims["iss"], claims["aud"], claims["sub"], claims["nonce"]) == (
        double.issuer,
        "test-client",
        "user-1",
        "n-1",
    )
    assert claims["exp"] - claims["iat"] == 300 and abs(claims["iat"] - time.time()) < 5
    at_hash = hashlib.sha256(tokens["access_token"].encode()).digest()[:16]
    assert claims["at_hash"] == base64.urlsafe_b64encode(at_hash).rstrip(b"=").decode()
    assert claims["email"] == "alice@example.com"

    _method, path, headers, body = double.requests_log[-2]  # the JWKS fetch came last
    assert path == "/token" and headers["Authorization"].startswith("Basic ") and "code_verifier=" in body
    assert double.issued_tokens == [tokens]

    info = requests.get(
        double.metadata["userinfo_endpoint"], headers={"Authorization": "Bearer " + tokens["access_token"]}, timeout=5
    )
    assert info.json()["preferred_username"] == "alice"


@pytest.mark.parametrize("alg", ["ES256", "HS256"])
def test_id_token_algorithm_is_configurable(double, alg):
    double.id_token_alg = alg
    tokens = exchange(double, *signed_in(double)).json()
    keys = double.signing_key_for(alg) if alg == "HS256" else KeySet.import_key_set(double.jwks())
    assert jwt.decode(tokens["id_token"], keys, algorithms=[alg]).header["alg"] == alg


def test_client_secret_post_is_accepted_and_a_wrong_secret_is_not(double):
    assert exchange(double, *signed_in(double), post_auth=True).status_code == 200
    code, verifier = signed_in(double)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
    refused = requests.post(double.metadata["token_endpoint"], data=form, auth=(double.client_id, "wrong"), timeout=5)
    assert (refused.status_code, refused.json()) == (
        401, {"error": "invalid_client", "error_description": "client authentication failed"},
    )  # fmt: skip


def test_wrong_verifier_is_invalid_grant_and_burns_the_code(double):
    code, verifier = signed_in(double)
    wrong = exchange(double, code, pkce_pair()[0])
    assert (wrong.status_code, wrong.json()) == (
        400, {"error": "invalid_grant", "error_description": "code_verifier does not match the code_challenge"},
    )  # fmt: skip
    retry = exchange(double, code, verifier)
    assert (retry.status_code, retry.json()["error_description"]) == (400, "unknown or already used code")


def test_code_is_single_use(double):
    code, verifier = signed_in(double)
    assert exchange(double, code, verifier).status_code == 200
    replay = exchange(double, code, verifier)
    assert (replay.status_code, replay.json()) == (
        400, {"error": "invalid_grant", "error_description": "unknown or already used code"},
    )  # fmt: skip


def test_authorize_refuses_bad_requests(double):
    with pytest.raises(AuthorizationRequestError, match="unknown client_id 'stranger'"):
        double.authorize(authorization_request(double, "c" * 43, client_id="stranger"))
    no_pkce = double.authorize(authorization_request(double, "", code_challenge_method="plain"))
    assert (no_pkce["error"], no_pkce["state"]) == ("invalid_request", "s-1")
    assert no_pkce["error_description"] == "PKCE with code_challenge_method=S256 is required"


def test_authorize_over_http_redirects_back_with_a_code(double):
    verifier, challenge = pkce_pair()
    response = requests.get(
        double.metadata["authorization_endpoint"],
        params=authorization_request(double, challenge),
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    params = dict(parse_qsl(location.query))
    assert location.netloc == "rp.example" and params["state"] == "s-1"
    assert exchange(double, params["code"], verifier).status_code == 200


def test_id_token_hooks_tamper_with_what_is_issued(double):
    double.id_token_mutator = lambda header, claims: (header, {**claims, "nonce": "tampered"})
    assert (
        jwt.decode(
            exchange(double, *signed_in(double)).json()["id_token"], KeySet.import_key_set(double.jwks())
        ).claims["nonce"]
        == "tampered"
    )
    double.id_token_override = lambda token, claims, header: double.unsigned(claims)
    assert exchange(double, *signed_in(double)).json()["id_token"].endswith(".")


# --- counters, faults, lifecycle ------------------------------------------------------------------


def test_hits_count_every_request_per_path(double):
    for _ in range(3):
        requests.get(double.issuer + DISCOVERY_PATH, timeout=5)
    requests.get(double.issuer + "/jwks", timeout=5)
    requests.get(double.issuer + "/nowhere", timeout=5)
    assert double.hits == {DISCOVERY_PATH: 3, "/jwks": 1, "/nowhere": 1}


def test_faults_replace_the_answer(double):
    double.faults["/jwks"] = {"status": 500, "body": "oops", "content_type": "text/html"}
    response = requests.get(double.metadata["jwks_uri"], timeout=5)
    assert (response.status_code, response.text, response.headers["Content-Type"]) == (500, "oops", "text/html")

    double.faults["/jwks"] = {"body_bytes": 5000}
    assert len(requests.get(double.metadata["jwks_uri"], timeout=5).content) == 5000

    double.faults["/jwks"] = {"close": True}
    with pytest.raises(requests.ConnectionError):
        requests.get(double.metadata["jwks_uri"], timeout=5)

    double.faults["/jwks"] = {"delay": 1.0}
    with pytest.raises(requests.ReadTimeout):
        requests.get(double.metadata["jwks_uri"], timeout=(1, 0.1))

    del double.faults["/jwks"]
    assert requests.get(double.metadata["jwks_uri"], timeout=5).status_code == 200
    assert double.hits["/jwks"] == 5


def test_stop_is_prompt_and_closes_the_port():
    op = OpenIDProviderDouble().start()
    op.faults["/jwks"] = {"delay": 30}
    with pytest.raises(requests.ReadTimeout):
        requests.get(op.metadata["jwks_uri"], timeout=(1, 0.1))  # leaves a handler asleep
    started = time.monotonic()
    op.stop()
    assert time.monotonic() - started < 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", op.port), timeout=1).close()


def test_sign_unchecked_forges_what_joserfc_would_refuse_to_sign(double):
    enc_key = double.add_key(RSAKey.generate_key(2048, parameters={"kid": "enc-1", "use": "enc"}))
    forged = double.sign_unchecked({"sub": "x"}, header={"alg": "RS256", "kid": "enc-1"}, key=enc_key)
    bare = RSAKey.import_key({k: v for k, v in enc_key.as_dict(private=False).items() if k != "use"})
    assert jwt.decode(forged, bare, algorithms=["RS256"]).claims == {"sub": "x"}

    pem = double.signing_key_for("RS256").as_pem(private=False)
    confused = double.sign_unchecked({"sub": "x"}, header={"alg": "HS256"}, key=pem)
    signing_input, _, signature = confused.rpartition(".")
    expected = hmac.new(pem, signing_input.encode(), "sha256").digest()
    assert signature == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
