"""Measure what a sign-in costs: ID token verification, and a whole callback against a local provider.

Run with ``make bench``. Prints microseconds per ID token verification in steady state (keys
cached and parsed), what re-importing the key set on every login would add, milliseconds per
complete sign-in through the real views, and how many discovery/JWKS fetches the steady state made
(the design says: none).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ["DATABASE_URL"] = "sqlite://:memory:"
os.environ["CACHE_URL"] = "locmemcache://"

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from joserfc.jwk import KeySet  # noqa: E402

from accounts.models import Provider  # noqa: E402
from accounts.oidc import discovery, tokens  # noqa: E402
from tests.op_double import OpenIDProviderDouble  # noqa: E402


def timed(fn, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def report(name: str, samples: list[float], unit: str, scale: float) -> None:
    samples = sorted(samples)
    p50 = statistics.median(samples) * scale
    p95 = samples[int(len(samples) * 0.95) - 1] * scale
    print(f"{name:<52} median {p50:8.1f} {unit}   p95 {p95:8.1f} {unit}   (n={len(samples)})")


def sign_in(client: Client, op: OpenIDProviderDouble, provider: Provider) -> None:
    start = client.get(f"/accounts/{provider.slug}/login/")
    params = op.authorize(dict(parse_qsl(urlsplit(start["Location"]).query)))
    response = client.get(f"/accounts/{provider.slug}/callback/", params)
    assert response.status_code == 302, response.content[:300]
    client.post("/accounts/logout/")


def main() -> None:
    setup_test_environment()
    connection.creation.create_test_db(verbosity=0)
    with OpenIDProviderDouble() as op:
        provider = Provider.objects.create(
            slug="bench", name="Bench", issuer=op.issuer, client_id=op.client_id, client_secret=op.client_secret
        )
        jwks_uri = op.metadata["jwks_uri"]
        for alg in ("RS256", "ES256"):
            token = op.sign(
                {
                    "iss": op.issuer,
                    "sub": "u",
                    "aud": op.client_id,
                    "exp": int(time.time()) + 600,
                    "iat": int(time.time()),
                    "nonce": "n",
                },
                alg=alg,
            )
            tokens.verify_id_token(provider, token, jwks_uri=jwks_uri, nonce="n")  # warm up: one fetch
            report(
                f"verify_id_token {alg}, keys cached",
                timed(lambda t=token: tokens.verify_id_token(provider, t, jwks_uri=jwks_uri, nonce="n"), 3000),
                "µs",
                1e6,
            )
        jwks = op.jwks()
        report(
            "what importing the JWKS per login would add", timed(lambda: KeySet.import_key_set(jwks), 3000), "µs", 1e6
        )

        client = Client()
        sign_in(client, op, provider)  # warm up
        fetches = (op.hits["/.well-known/openid-configuration"], op.hits["/jwks"])
        report(
            "complete sign-in (start + token + userinfo + login)",
            timed(lambda: sign_in(client, op, provider), 200),
            "ms",
            1e3,
        )
        after = (op.hits["/.well-known/openid-configuration"], op.hits["/jwks"])
        print(
            f"discovery/JWKS fetches during the 200 steady-state sign-ins: {after[0] - fetches[0]} / "
            f"{after[1] - fetches[1]}"
        )
        discovery._memo.clear()


if __name__ == "__main__":
    main()
