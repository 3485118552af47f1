"""What remains of a sign-in and of an API call, profiled (``bench/run.py`` puts the summary in its report).

In one process, through the real views and Django's test client, against the provider double on
loopback: 200 returning sign-ins' callbacks, and 2000 API calls repeating one user's token, each
under ``cProfile``. Prints, per case, the share of the time (wall clock, so waiting for the provider counts) spent in
its main parts, by cumulative time, as Markdown; parts may contain one another (the ORM's SQL runs
inside the identity lookup, the sign-in's transaction inside the callback).
"""

from __future__ import annotations

import base64
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.update(
    DJANGO_SETTINGS_MODULE="tests.settings",
    DATABASE_URL="sqlite://:memory:",
    CACHE_URL="locmemcache://",
    ACCOUNTS_CLIENT_SECRET_KEYS=base64.urlsafe_b64encode(os.urandom(32)).decode(),
)

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client, RequestFactory  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from accounts import api  # noqa: E402
from accounts.models import Provider  # noqa: E402
from tests.op_double import OpenIDProviderDouble  # noqa: E402

#: The parts reported, by the function whose cumulative time stands for them (file suffix, name).
PARTS = {
    "callback": [
        ("the token request (HTTP to the provider, loopback)", "accounts/oidc/http.py", "request_json"),
        ("ID token verification (joserfc, claims)", "accounts/oidc/tokens.py", "verify_id_token"),
        ("the sign-in's transaction (identity, user, session, audit)", "accounts/flow.py", "complete_sign_in"),
        ("the identity lookup and update", "accounts/identities.py", "sign_in_identity"),
        ("Django's login() (session flush, user_logged_in, last_login)", "django/contrib/auth/__init__.py", "login"),
        ("the audit row", "accounts/audit.py", "record"),
        ("reading the started sign-in (signed cookie)", "accounts/pending.py", "pop"),
        ("the whole callback view (the rest: middleware, response)", "accounts/flow.py", "finish_login"),
        ("SQL through the ORM, all of it", "django/db/models/sql/compiler.py", "execute_sql"),
    ],
    "api": [
        ("the verified-token cache lookup", "accounts/token_cache.py", "lookup"),
        ("the identity and user read", "django/db/models/query.py", "first"),
        ("the admission policy", "accounts/api.py", "_admit"),
        ("the token's profile read (client id, scopes)", "accounts/api.py", "_read"),
        ("SQL through the ORM, all of it", "django/db/models/sql/compiler.py", "execute_sql"),
    ],
}


def summary(profile: cProfile.Profile, parts: list[tuple[str, str, str]], label: str, count: int) -> list[str]:
    stats = pstats.Stats(profile)
    total = stats.total_tt  # type: ignore[attr-defined]
    found = {}
    for (filename, _line, name), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for text, suffix, function in parts:
            if name == function and filename.endswith(suffix):
                found[text] = found.get(text, 0.0) + cumulative
    lines = [f"{label} ({count} under cProfile, {total / count * 1e3:.2f} ms each with the profiler's overhead):", ""]
    lines += ["| part | share of the time |", "| --- | ---: |"]
    lines += [f"| {text} | {found.get(text, 0.0) / total:.0%} |" for text, _suffix, _function in parts]
    return [*lines, ""]


def main() -> None:
    setup_test_environment()
    connection.creation.create_test_db(verbosity=0)
    out: list[str] = []
    with OpenIDProviderDouble() as op:
        provider = Provider.objects.create(
            slug="bench", name="Bench", issuer=op.issuer, client_id=op.client_id, client_secret=op.client_secret
        )

        def callback() -> None:
            client = Client()
            start = client.get(f"/accounts/{provider.slug}/login/")
            params = op.authorize(dict(parse_qsl(urlsplit(start["Location"]).query)))
            profile.enable()
            response = client.get(f"/accounts/{provider.slug}/callback/", params)
            profile.disable()
            assert response.status_code == 302, response.content[:300]

        profile = cProfile.Profile()
        callback()  # the first sign-in: the user, the documents
        profile = cProfile.Profile()
        for _ in range(200):
            callback()
        out += summary(profile, PARTS["callback"], "A returning sign-in's callback", 200)

        now = int(time.time())
        token = op.sign(
            {
                "iss": op.issuer, "sub": op.next_user["sub"], "aud": "https://api.bench.example", "exp": now + 600,
                "iat": now, "jti": "profile", "client_id": op.client_id, "scope": "openid",
            },
            alg="RS256",
            header={"typ": "at+jwt", "kid": op.signing_key_for("RS256").kid},
        )  # fmt: skip
        request = RequestFactory().get("/api/", HTTP_AUTHORIZATION=f"Bearer {token}")
        policy = api.BearerPolicy(audience="https://api.bench.example")
        api.authenticate(request, policy)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(2000):
            api.authenticate(request, policy)
        profile.disable()
        out += summary(profile, PARTS["api"], "An API call repeating a user's token (`api.authenticate`)", 2000)
    print("\n".join(out))


if __name__ == "__main__":
    main()
