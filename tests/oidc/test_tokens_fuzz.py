"""Garbage in, rejection out: seeded random malformed tokens never raise anything but TokenRejected.

A hostile provider controls every byte of the ID token; any other exception would be a 500.
This is how a TypeError from a numeric "crit" header was found.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random

import pytest
from joserfc.jwk import OKPKey

from accounts.errors import SignInError
from accounts.oidc.tokens import verify_id_token
from tests.conftest import claims_for

pytestmark = pytest.mark.django_db

WEIRD = [None, 1, -1, 1.5, float("inf"), "", "x", [], {}, ["a"], {"a": 1}, True, "none", "HS256", "A" * 300, 10**30]
HEADER_MEMBERS = ["alg", "kid", "crit", "typ", "b64", "jku", "x5u", "zip", "enc"]
CLAIMS = ["iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "azp", "at_hash"]


def b64(data) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # the double signing odd headers
def test_random_malformed_tokens_are_only_ever_rejected(op, provider):
    op.add_key(OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1", "use": "sig"}))
    provider.allowed_algorithms = "RS256 PS256 ES256 EdDSA HS256"
    rng = random.Random(20261128)
    for _ in range(250):
        alg = rng.choice(["RS256", "PS256", "ES256", "EdDSA", "HS256"])
        header, claims = {"alg": alg}, claims_for(op)
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                header[rng.choice(HEADER_MEMBERS)] = rng.choice(WEIRD)
            else:
                claims[rng.choice(CLAIMS)] = rng.choice(WEIRD)
        try:
            key = op.client_secret if alg == "HS256" else op.signing_key_for(alg)
            token = op.sign_unchecked(claims, header=header, key=key)
        except Exception:  # the double cannot sign this header: send it unsigned-looking instead
            token = b64(header) + "." + b64(claims) + ".c2ln"
        for variant in (token, token[:-4], token + "A", token.replace(".", "..", 1)):
            with contextlib.suppress(SignInError):  # the only acceptable way to fail
                verify_id_token(provider, variant, jwks_uri=op.metadata["jwks_uri"], nonce="n-1", access_token="at")
