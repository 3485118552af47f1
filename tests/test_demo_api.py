"""The demo API (issue 20.6): ``/api/whoami/`` and ``/api/reports/``, and the README's curl walk-through.

The walk-through test runs the README's shell block itself, word for word (only the site's URL
is changed), with curl against a live site process serving the dev IdP: a client-credentials
token over HTTP, both endpoints, the 403 for the missing scope, the 401 for an expired token, and
a Stytch-shaped token. Offline: every request goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import Identity, Provider
from tests.conftest import sign_in
from tests.sites import ROOT, SiteProcess

README = ROOT / "README.md"


def walkthrough() -> str:
    match = re.search(r"<!-- api-walkthrough -->\s*```sh\n(.*?)```", README.read_text(), re.DOTALL)
    assert match, "README.md has no shell block marked api-walkthrough"
    return match.group(1)


def test_the_readmes_curl_walkthrough_works_offline(tmp_path: Path):
    # A cache the site and the commands share, as `make run`'s database cache is: `oidc_provider check`
    # caches the discovery document that bearer requests need but never fetch.
    with SiteProcess(tmp_path, DJANGO_DEBUG="1", CACHE_URL=f"filecache://{tmp_path / 'cache'}") as site:
        site.manage("devidp", "setup", "--base-url", site.url)
        script = walkthrough().replace("SITE=http://127.0.0.1:8000", f"SITE={site.url}")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=ROOT,
            env=site.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (done.stdout, done.stderr, site.log()[-3000:])
    answers = [line.rsplit(" ", 1) for line in done.stdout.splitlines() if re.search(r" \d{3}$", line)]
    assert [status for _body, status in answers] == ["200", "403", "401", "200"], done.stdout
    whoami, scope, expired, stytch = (json.loads(body) for body, _status in answers)
    assert whoami["kind"] == "client" and whoami["issuer"] == f"{site.url}/devidp"
    assert whoami["scopes"] == ["openid"] and whoami["username"] is None and whoami["sub"] == whoami["client_id"]
    assert scope["error"] == "insufficient_scope"
    assert (expired["error"], expired["error_description"]) == ("invalid_token", "The access token has expired.")
    assert stytch["caller"]["kind"] == "client"
    assert stytch["caller"]["issuer"] == "stytch.com/project-test-00000000-0000-0000-0000-000000000000"
    assert stytch["caller"]["client_id"].startswith("m2m-client-")
    assert stytch["reports"]


# --- the views, in process ---------------------------------------------------------------------------

pytestmark_urls = pytest.mark.urls("project.urls")


def _token(op, **claims) -> str:
    now = int(time.time())
    payload = {
        "iss": op.issuer,
        "sub": "user-1",
        "aud": "demo-api",
        "iat": now,
        "exp": now + 300,
        "client_id": op.client_id,
        "scope": "openid reports:read",
        **claims,
    }
    key = op.signing_key_for("RS256")
    return op.sign({k: v for k, v in payload.items() if v is not None}, header={"kid": key.kid, "typ": "at+jwt"})


def _get(url: str, token: str, caplog):
    with caplog.at_level(logging.INFO, logger="accounts"):
        return Client().get(url, HTTP_AUTHORIZATION=f"Bearer {token}")


@pytestmark_urls
@pytest.mark.django_db
def test_whoami_answers_a_user_with_the_documented_shape(client, op, provider, caplog):
    sign_in(client, op, provider)
    user = Identity.objects.get().user
    response = _get("/api/whoami/", _token(op), caplog)
    assert response.status_code == 200, response.content
    assert response.json() == {
        "kind": "user",
        "issuer": op.issuer,
        "sub": "user-1",
        "client_id": op.client_id,
        "scopes": ["openid", "reports:read"],
        "username": user.get_username(),
    }


@pytestmark_urls
@pytest.mark.django_db
@pytest.mark.usefixtures("discovered")  # as a sign-in or `oidc_provider check` would have
def test_reports_needs_reports_read(op, provider, caplog):
    response = _get("/api/reports/", _token(op, sub=op.client_id, scope="openid"), caplog)
    assert response.status_code == 403
    assert 'scope="reports:read"' in response["WWW-Authenticate"]
    assert _get("/api/reports/", _token(op, sub=op.client_id), caplog).status_code == 200


@pytestmark_urls
@pytest.mark.django_db
@pytest.mark.usefixtures("discovered")  # as a sign-in or `oidc_provider check` would have
def test_the_audience_comes_from_demo_api_audience(op, provider, caplog, settings):
    assert settings.DEMO_API_AUDIENCE == "demo-api"  # the documented default
    settings.DEMO_API_AUDIENCE = "https://reports.example"
    response = _get("/api/whoami/", _token(op, sub=op.client_id), caplog)
    assert response.status_code == 401
    assert "aud claim is not valid" in caplog.text
    assert _get("/api/whoami/", _token(op, sub=op.client_id, aud="https://reports.example"), caplog).status_code == 200


@pytestmark_urls
@pytest.mark.django_db
@pytest.mark.usefixtures("discovered")  # as a sign-in or `oidc_provider check` would have
def test_an_unknown_user_is_refused_unless_demo_api_unknown_subject_says_create_user(op, provider, caplog, settings):
    assert _get("/api/whoami/", _token(op, sub="newcomer"), caplog).status_code == 401
    assert not get_user_model().objects.exists()
    settings.DEMO_API_UNKNOWN_SUBJECT = "create-user"
    response = _get("/api/whoami/", _token(op, sub="newcomer", preferred_username="newbie"), caplog)
    assert response.status_code == 200, response.content
    assert response.json()["username"] == "newbie"


@pytestmark_urls
@pytest.mark.django_db
def test_whoami_accepts_tokens_of_any_enabled_provider_by_its_profile(op, caplog):
    Provider.objects.create(
        slug="stytch", name="Stytch", kind="token-issuer", issuer="stytch.com/project-test-1",
        jwks_uri=op.issuer + "/jwks", client_id="project-test-1", token_profile="stytch", token_audience="demo-api",
    )  # fmt: skip
    now = int(time.time())
    claims = {"iss": "stytch.com/project-test-1", "aud": ["demo-api"], "sub": "m2m-client-test-7", "iat": now}
    token = op.sign({**claims, "exp": now + 60, "scope": "reports:read"}, header={"typ": "JWT", "kid": "rsa-1"})
    response = _get("/api/reports/", token, caplog)
    assert response.status_code == 200, response.content
    assert response.json()["caller"]["client_id"] == "m2m-client-test-7"
