"""Parallel sign-ins against a real threaded server on the embedded default, SQLite.

These run the demo site in its own process with its own database file, because an in-process
test client serialises everything and the test database lives in memory: neither would show a
"database is locked" that real browsers signing in at the same moment cause.
"""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.op_double import DEFAULT_USER, OpenIDProviderDouble
from tests.sites import SiteProcess

PARALLEL = 20


@pytest.fixture(scope="module")
def op():
    with OpenIDProviderDouble() as double:
        yield double


@pytest.fixture(scope="module")
def site_process(tmp_path_factory, op):
    with SiteProcess(tmp_path_factory.mktemp("site")) as process:
        process.add_provider("test-op", op)
        yield process


def finish_all_at_once(site_process: SiteProcess, flows) -> list[tuple[int, str | None]]:
    with ThreadPoolExecutor(max_workers=len(flows)) as pool:
        return list(pool.map(site_process.finish_sign_in, flows))


def test_concurrent_first_sign_ins_of_one_identity_make_one_user_and_all_sign_in(site_process, op):
    op.next_user = {**DEFAULT_USER, "sub": "same-person", "preferred_username": "same"}
    flows = [site_process.start_sign_in(op, "test-op") for _ in range(PARALLEL)]

    results = finish_all_at_once(site_process, flows)

    assert [status for status, _ in results] == [302] * PARALLEL, site_process.log()[-3000:]
    assert {username for _, username in results} == {"same"}
    assert site_process.query("SELECT count(*) FROM oidc_signin_identity WHERE subject = 'same-person'") == [(1,)]
    assert site_process.query("SELECT count(*) FROM auth_user WHERE username LIKE 'same%'") == [(1,)]


def test_concurrent_first_sign_ins_of_different_identities_all_sign_in(site_process, op):
    flows = []
    for n in range(PARALLEL):
        op.next_user = {**DEFAULT_USER, "sub": f"person-{n}", "preferred_username": f"person{n}", "email": ""}
        flows.append(site_process.start_sign_in(op, "test-op"))

    results = finish_all_at_once(site_process, flows)

    assert [status for status, _ in results] == [302] * PARALLEL, site_process.log()[-3000:]
    assert sorted(username for _, username in results) == sorted(f"person{n}" for n in range(PARALLEL))
    assert site_process.query("SELECT count(*) FROM oidc_signin_identity WHERE subject LIKE 'person-%'") == [
        (PARALLEL,)
    ]


def test_a_database_locked_past_its_busy_timeout_is_a_503_page_not_a_500(tmp_path, op):
    # A busy timeout of 1 s instead of 10, so the wait for the lock ends quickly.
    with SiteProcess(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}?timeout=1") as site_process:
        site_process.add_provider("test-op", op)
        op.next_user = {**DEFAULT_USER, "sub": "patient"}
        flow = site_process.start_sign_in(op, "test-op")
        blocker = sqlite3.connect(site_process.database, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database (a long migration, say)
            response = flow.browser.get(flow.callback_url, allow_redirects=False, timeout=30)
        finally:
            blocker.rollback()
            blocker.close()
        assert response.status_code == 503, site_process.log()[-2000:]
        assert "The site is busy" in response.text and response.headers["Retry-After"] == "5"
        assert flow.browser.get(f"{site_process.url}/accounts/session/", timeout=10).json()["authenticated"] is False
        failures = [line for line in site_process.log().splitlines() if "sign-in failed" in line]
        assert len(failures) == 1 and "code=database_busy" in failures[0], site_process.log()[-2000:]


def test_parallel_sign_ins_right_after_a_key_rotation_all_succeed_with_one_jwks_fetch(site_process, op):
    op.next_user = {**DEFAULT_USER, "sub": "warm-up", "preferred_username": "warmup"}
    assert site_process.finish_sign_in(site_process.start_sign_in(op, "test-op"))[0] == 302  # keys cached
    flows = []
    for n in range(10):
        op.next_user = {**DEFAULT_USER, "sub": f"rotated-{n}", "preferred_username": f"rotated{n}", "email": ""}
        flows.append(site_process.start_sign_in(op, "test-op"))
    op.rotate()  # the callbacks' ID tokens are signed with a key the site has not seen
    fetches_before = op.hits["/jwks"]

    results = finish_all_at_once(site_process, flows)

    assert [status for status, _ in results] == [302] * 10, site_process.log()[-3000:]
    assert op.hits["/jwks"] - fetches_before == 1, site_process.log()[-6000:]


def test_parallel_first_sign_ins_after_a_rotation_within_the_cooldown_all_wait_for_one_fetch(site_process, op):
    """An unknown kid made the site refetch; under a second later the provider rotates (removing the old
    key) and ten people sign in for the first time at once. Delay, don't deny: each waits for what is
    left of the cooldown (2 s), then one of them refetches and all take its result."""
    flows = []
    for n in range(12):
        op.next_user = {**DEFAULT_USER, "sub": f"delayed-{n}", "preferred_username": f"delayed{n}", "email": ""}
        flows.append(site_process.start_sign_in(op, "test-op"))
    assert site_process.finish_sign_in(flows[0])[0] == 302  # the keys are cached
    op.rotate()
    fetches_before = op.hits["/jwks"]
    assert site_process.finish_sign_in(flows[1])[0] == 302  # the unknown kid: a refetch, the cooldown starts
    refetched = time.monotonic()
    assert op.hits["/jwks"] == fetches_before + 1
    op.rotate()
    assert time.monotonic() - refetched < 1

    results = finish_all_at_once(site_process, flows[2:])

    assert [status for status, _ in results] == [302] * 10, site_process.log()[-3000:]
    assert sorted(username for _, username in results) == sorted(f"delayed{n}" for n in range(2, 12))
    assert op.hits["/jwks"] == fetches_before + 2, site_process.log()[-3000:]
