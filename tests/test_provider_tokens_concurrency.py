"""Twenty concurrent ``access_token()`` calls for one expired identity make exactly one refresh.

The double rotates refresh tokens and revokes the whole grant when a spent one is presented
again, so a second refresh -- two threads, two workers or two servers reading the same refresh
token -- would show as ``reuse_detected`` and a revoked grant. Its token endpoint is slowed down,
so that every caller arrives while the first one's refresh is in flight.

* SQLite: twenty threads in one process of the demo site's settings (``tests/token_threads.py``)
  on a real database file, the lock being SQLite's immediate transaction;
* PostgreSQL: two gunicorn instances (two workers each) sharing one database, twenty browsers
  pressing "Update from <provider>" at once on both, the lock being ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests
from django.db import connection

from tests.op_double import DEFAULT_USER, OpenIDProviderDouble
from tests.sites import REQUEST_TIMEOUT, SiteProcess

PARALLEL = 20
#: How long the double's token endpoint takes: every caller arrives while the one refresh is in flight.
SLOW_TOKEN_ENDPOINT = {"delay": 0.5}


@pytest.fixture
def op():
    with OpenIDProviderDouble() as double:
        yield double


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in_storing_tokens(site: SiteProcess, op) -> requests.Session:
    op.next_user = {**DEFAULT_USER, "sub": "busy-person", "preferred_username": "busy"}
    flow = site.start_sign_in(op, "test-op")
    status, username = site.finish_sign_in(flow)
    assert (status, username) == (302, "busy"), site.log()[-3000:]
    return flow.browser


def add_storing_provider(site: SiteProcess, op) -> None:
    site.manage(
        "oidc_provider", "add", "test-op", "--issuer", op.issuer, "--client-id", op.client_id,
        "--client-secret", op.client_secret, "--store-tokens",
    )  # fmt: skip


def assert_one_refresh_and_everyone_got_the_new_token(op, got: list[str]) -> None:
    assert op.refreshes == 1, (op.refreshes, op.refresh_requests)
    assert op.reuse_detected == 0 and not op.revoked_grants
    new = digest(op.issued_tokens[-1]["access_token"])
    assert got == [new] * PARALLEL


@pytest.mark.parametrize(
    "transaction_mode",
    [
        "",  # the demo's settings: IMMEDIATE, so transaction.atomic() itself takes the write lock
        "?transaction_mode=DEFERRED",  # Django's default: the vault takes the lock with a first write
    ],
)
def test_twenty_threads_on_sqlite_make_one_refresh_and_all_get_the_new_token(tmp_path, op, transaction_mode):
    with SiteProcess(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}{transaction_mode}") as site:
        add_storing_provider(site, op)
        sign_in_storing_tokens(site, op)
    (identity_pk,) = site.query("SELECT id FROM oidc_signin_identity WHERE subject = 'busy-person'")[0]
    with sqlite3.connect(site.database, timeout=10) as db:  # the access token has expired
        db.execute("UPDATE oidc_signin_providertoken SET expires_at = '2000-01-01 00:00:00'")
    # The database never holds a token in clear: read the columns themselves.
    stored = site.query("SELECT access_token, refresh_token FROM oidc_signin_providertoken")
    issued = op.issued_tokens[-1]
    assert all(value.startswith("fernet:") for value in stored[0])
    assert not {issued["access_token"], issued["refresh_token"]} & set(stored[0])
    op.faults["/token"] = SLOW_TOKEN_ENDPOINT

    done = subprocess.run(
        [site.python, "-m", "tests.token_threads", str(identity_pk), str(PARALLEL)],
        cwd=site.cwd, env=site.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    assert_one_refresh_and_everyone_got_the_new_token(op, json.loads(done.stdout.strip().splitlines()[-1]))
    rotated = site.query("SELECT refresh_token FROM oidc_signin_providertoken")[0][0]
    assert rotated.startswith("fernet:") and op.issued_tokens[-1]["refresh_token"] != rotated


# --- PostgreSQL: two gunicorn instances -----------------------------------------------------------------


@pytest.fixture
def shared_postgres():
    """A database of its own for the two instances, next to the suite's (``DATABASE_URL``), and a Redis index."""
    if connection.vendor != "postgresql":
        pytest.skip("runs in the PostgreSQL pass (DATABASE_URL=postgres://...)")
    psycopg = pytest.importorskip("psycopg")
    server = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    name = f"oidc_signin_token_vault_{secrets.token_hex(4)}"
    admin = psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=3)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "DATABASE_URL": f"{server}/{name}",
            "CACHE_URL": os.environ.get("CACHE_URL", "locmemcache://"),
        }
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def press_update(site: SiteProcess, browser: requests.Session) -> tuple[int, str]:
    """One click on "Update from Test OP", from a copy of the signed-in browser."""
    clone = requests.Session()
    clone.cookies.update(browser.cookies)
    response = clone.post(
        f"{site.url}/accounts/test-op/refresh-profile/",
        headers={"X-CSRFToken": browser.cookies["csrftoken"]},
        allow_redirects=False,
        timeout=REQUEST_TIMEOUT,
    )
    return response.status_code, urlsplit(response.headers.get("Location", "")).path


@pytest.mark.services
@pytest.mark.django_db
def test_twenty_requests_on_two_gunicorn_instances_make_one_refresh(tmp_path, op, shared_postgres):
    a = SiteProcess(tmp_path / "a", gunicorn_workers=2, **shared_postgres)
    b = SiteProcess(tmp_path / "b", gunicorn_workers=2, migrate=False, **shared_postgres)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with a:
        add_storing_provider(a, op)
        with b:
            browser = sign_in_storing_tokens(a, op)
            assert browser.get(f"{a.url}/accounts/profile/", timeout=REQUEST_TIMEOUT).status_code == 200  # CSRF cookie
            psycopg = pytest.importorskip("psycopg")
            with psycopg.connect(shared_postgres["DATABASE_URL"], autocommit=True) as db:
                db.execute("UPDATE oidc_signin_providertoken SET expires_at = now() - interval '1 second'")
                stored = db.execute("SELECT access_token, refresh_token FROM oidc_signin_providertoken").fetchone()
            issued = op.issued_tokens[-1]
            assert all(value.startswith("fernet:") for value in stored)
            assert not {issued["access_token"], issued["refresh_token"]} & set(stored)
            op.faults["/token"] = SLOW_TOKEN_ENDPOINT

            with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
                sites = [a, b] * (PARALLEL // 2)
                results = list(pool.map(lambda site: press_update(site, browser), sites))

            assert results == [(302, "/accounts/profile/")] * PARALLEL, (a.log()[-2000:], b.log()[-2000:])
            calls = [headers.get("Authorization") for _m, path, headers, _b in op.requests_log if path == "/userinfo"]
            assert_one_refresh_and_everyone_got_the_new_token(
                op, [digest(call.removeprefix("Bearer ")) for call in calls]
            )
