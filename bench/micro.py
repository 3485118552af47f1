"""Part (a) of ``bench/run.py``: ``verify_id_token`` against raw ``cryptography`` verification, µs/op.

Run by ``bench/run.py`` in a process of its own (our virtual environment, the project's settings);
prints one JSON object. The tokens are what the provider double issues at its token endpoint (its
user's claims, ``at_hash``, ``nonce``), signed RS256 and ES256. ``verify_id_token`` runs in steady
state: the JWKS was fetched once before timing and the parsed keys are cached. The raw baselines
are only the ``verify()`` call of ``cryptography`` on the same token's signing input and signature
(decoded, and for EC turned into DER, beforehand): the strictest baseline there is. All four are
timed in interleaved batches, so drifts of the machine hit them alike; each figure is the median
over batches of the mean per operation in a batch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update(
    DJANGO_SETTINGS_MODULE="project.settings",
    DJANGO_DEBUG="0",
    DJANGO_SECRET_KEY="bench-only-not-a-secret",
    DATABASE_URL="sqlite://:memory:",
    CACHE_URL="locmemcache://",
    ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP="1",
    ACCOUNTS_CLIENT_SECRET_KEYS=base64.urlsafe_b64encode(os.urandom(32)).decode(),  # a throwaway Fernet key
)

import django  # noqa: E402

django.setup()

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import RequestFactory  # noqa: E402

from accounts import api, token_cache  # noqa: E402
from accounts.models import Identity, Provider  # noqa: E402
from accounts.oidc import discovery, tokens  # noqa: E402
from tests.op_double import DEFAULT_USER, OpenIDProviderDouble  # noqa: E402

BATCHES = int(os.environ.get("BENCH_MICRO_BATCHES", "120"))
PER_BATCH = 50


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64int(part: str) -> int:
    return int.from_bytes(b64decode(part), "big")


def id_token(op: OpenIDProviderDouble, alg: str, access_token: str) -> str:
    now = int(time.time())
    at_hash = base64.urlsafe_b64encode(hashlib.sha256(access_token.encode()).digest()[:16]).rstrip(b"=").decode()
    claims = {
        **DEFAULT_USER,
        "iss": op.issuer,
        "aud": op.client_id,
        "exp": now + 3600,
        "iat": now,
        "nonce": "bench-nonce",
        "at_hash": at_hash,
    }
    return op.sign(claims, alg=alg)


def public_keys(op: OpenIDProviderDouble) -> tuple[rsa.RSAPublicKey, ec.EllipticCurvePublicKey]:
    """The published keys, rebuilt with ``cryptography`` alone from the JWKS members."""
    by_kty = {jwk["kty"]: jwk for jwk in op.jwks()["keys"]}
    rsa_jwk, ec_jwk = by_kty["RSA"], by_kty["EC"]
    rsa_key = rsa.RSAPublicNumbers(b64int(rsa_jwk["e"]), b64int(rsa_jwk["n"])).public_key()
    ec_key = ec.EllipticCurvePublicNumbers(b64int(ec_jwk["x"]), b64int(ec_jwk["y"]), ec.SECP256R1()).public_key()
    return rsa_key, ec_key


API_AUDIENCE = "https://api.bench.example"


def access_token(op: OpenIDProviderDouble, *, sub: str) -> str:
    now = int(time.time())
    claims = {
        "iss": op.issuer, "sub": sub, "aud": API_AUDIENCE, "exp": now + 3600, "iat": now,
        "jti": f"bench-{sub}", "client_id": op.client_id, "scope": "openid orders:read",
    }  # fmt: skip
    return op.sign(claims, alg="RS256", header={"typ": "at+jwt", "kid": op.signing_key_for("RS256").kid})


def api_cases(op: OpenIDProviderDouble) -> dict[str, object]:
    """The API's hot path, in-process: ``api.authenticate`` as the decorator calls it, on one request object.

    A machine client's token (no user lookup) and a user's (the identity and its user read, the
    admission policy asked, on every request), each new (the verified-token cache emptied before
    every call: a full verification, the provider row read) and repeated (served by the cache).
    """
    call_command("migrate", verbosity=0, interactive=False)
    provider = Provider.objects.create(
        slug="bench", name="Bench", issuer=op.issuer, client_id=op.client_id, client_secret=op.client_secret
    )
    discovery.get_metadata(op.issuer)  # as after a first sign-in: bearer requests never fetch discovery
    user = (
        __import__("django.contrib.auth", fromlist=["get_user_model"]).get_user_model().objects.create(username="alice")
    )
    Identity.objects.create(provider=provider, issuer=op.issuer, subject="alice-sub", user=user, claims={})
    policy = api.BearerPolicy(audience=API_AUDIENCE, scopes=["orders:read"])
    factory = RequestFactory()
    machine = factory.get("/api/", HTTP_AUTHORIZATION="Bearer " + access_token(op, sub=op.client_id))
    person = factory.get("/api/", HTTP_AUTHORIZATION="Bearer " + access_token(op, sub="alice-sub"))
    for request in (machine, person):
        api.authenticate(request, policy)  # the JWKS fetched once, the provider row seen

    def new(request):
        def run():
            token_cache.clear()
            api.authenticate(request, policy)

        return run

    return {
        "api_machine_new_token": new(machine),
        "api_machine_repeated_token": lambda: api.authenticate(machine, policy),
        "api_user_new_token": new(person),
        "api_user_repeated_token": lambda: api.authenticate(person, policy),
        "api_cache_clear_only": token_cache.clear,
    }


def main() -> None:
    with OpenIDProviderDouble() as op:
        provider = Provider(
            slug="bench", name="Bench", issuer=op.issuer, client_id=op.client_id, client_secret=op.client_secret
        )
        jwks_uri = op.metadata["jwks_uri"]
        access_token = "bench-access-token-0123456789"
        rs256, es256 = id_token(op, "RS256", access_token), id_token(op, "ES256", access_token)
        for token in (rs256, es256):  # warm up: the one JWKS fetch, parsed keys cached from now on
            tokens.verify_id_token(provider, token, jwks_uri=jwks_uri, nonce="bench-nonce", access_token=access_token)
        fetches_before = op.hits["/jwks"]

        rsa_key, ec_key = public_keys(op)
        rsa_input, rsa_sig = rs256.rsplit(".", 1)
        ec_input, ec_sig = es256.rsplit(".", 1)
        rsa_input_bytes, rsa_sig_bytes = rsa_input.encode("ascii"), b64decode(rsa_sig)
        ec_raw = b64decode(ec_sig)
        ec_input_bytes = ec_input.encode("ascii")
        ec_der = encode_dss_signature(int.from_bytes(ec_raw[:32], "big"), int.from_bytes(ec_raw[32:], "big"))
        pkcs1v15, sha256, ecdsa = padding.PKCS1v15(), hashes.SHA256(), ec.ECDSA(hashes.SHA256())

        cases = {
            "verify_id_token_rs256": lambda: tokens.verify_id_token(
                provider, rs256, jwks_uri=jwks_uri, nonce="bench-nonce", access_token=access_token
            ),
            "raw_rsa_verify": lambda: rsa_key.verify(rsa_sig_bytes, rsa_input_bytes, pkcs1v15, sha256),
            "verify_id_token_es256": lambda: tokens.verify_id_token(
                provider, es256, jwks_uri=jwks_uri, nonce="bench-nonce", access_token=access_token
            ),
            "raw_ec_verify": lambda: ec_key.verify(ec_der, ec_input_bytes, ecdsa),
            **api_cases(op),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(BATCHES):
            for name, fn in cases.items():
                start = time.perf_counter()
                for _ in range(PER_BATCH):
                    fn()
                samples[name].append((time.perf_counter() - start) / PER_BATCH)
        result: dict[str, object] = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
        result["ops_each"] = BATCHES * PER_BATCH
        result["jwks_fetches_while_timing"] = op.hits["/jwks"] - fetches_before
    print(json.dumps(result))


if __name__ == "__main__":
    main()
