"""Several instances of the site sharing PostgreSQL and Redis, each served by gunicorn with 2 workers.

This is production's shape: a load balancer may send a sign-in's start to one instance and its
callback to another, a key rotation reaches every worker of every instance at once, and the
identity provider may be down for a while. Four worker processes in two servers share one
database and one cache here, so nothing in-process can hide a mistake.

They need PostgreSQL (database ``test``, trust auth) and Redis on 127.0.0.1, so they run in the
second pass of ``make test``; each test's waits are bounded.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from tests import sites
from tests.op_double import DEFAULT_USER, OpenIDProviderDouble
from tests.sites import SiteProcess

pytestmark = [pytest.mark.services, pytest.mark.django_db]
PARALLEL = 20
REDIS_DB = 14  # the suite's own cache uses 15


@pytest.fixture(scope="module")
def shared_services():
    """A database of their own on the PostgreSQL server, and an emptied Redis database."""
    with sites.shared_services("oidc_signin_instances", REDIS_DB) as services:
        yield services


@pytest.fixture(scope="module")
def op():
    with OpenIDProviderDouble() as double:
        yield double


@pytest.fixture(scope="module")
def instances(tmp_path_factory, shared_services, op):
    """Instances A and B: gunicorn, 2 workers each, one database, one cache."""
    if connection.vendor != "postgresql":
        pytest.skip("runs in the second pass of make test, with PostgreSQL and Redis")
    a = SiteProcess(tmp_path_factory.mktemp("a"), gunicorn_workers=2, **shared_services)
    b = SiteProcess(tmp_path_factory.mktemp("b"), gunicorn_workers=2, migrate=False, **shared_services)
    with a:
        a.add_provider("test-op", op)
        with b:
            yield a, b


def on(site: SiteProcess, flow_url: str, other: SiteProcess) -> str:
    return flow_url.replace(other.url, site.url, 1)


def sign_in_everywhere(instances, op):
    """One sign-in through each instance, so every cache holds the provider's documents."""
    for site in instances:
        op.next_user = {**DEFAULT_USER, "sub": f"warm-{site.port}", "preferred_username": f"warm{site.port}"}
        assert site.finish_sign_in(site.start_sign_in(op, "test-op"))[0] == 302, site.log()[-2000:]


def finish_all_at_once(pairs) -> list[tuple[int, str | None]]:
    with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
        return list(pool.map(lambda pair: pair[0].finish_sign_in(pair[1]), pairs))


def test_a_sign_in_started_on_one_instance_completes_on_the_other(instances, op):
    a, b = instances
    op.next_user = {**DEFAULT_USER, "sub": "traveller", "preferred_username": "traveller"}
    flow = a.start_sign_in(op, "test-op")
    flow.callback_url = on(b, flow.callback_url, a)  # the load balancer sends the callback to B
    status, username = b.finish_sign_in(flow)
    assert (status, username) == (302, "traveller"), b.log()[-2000:]
    session = flow.browser.get(f"{a.url}/accounts/session/", timeout=10).json()
    assert session["user"]["username"] == "traveller"  # and A knows that session too


def test_after_a_key_rotation_concurrent_sign_ins_on_both_instances_cause_one_jwks_fetch(instances, op):
    a, b = instances
    sign_in_everywhere(instances, op)
    op.rotate("RSA")
    op.hits.clear()
    pairs = []
    for n in range(PARALLEL):
        site = (a, b)[n % 2]
        op.next_user = {**DEFAULT_USER, "sub": f"rotated-{n}", "preferred_username": f"rotated{n}"}
        pairs.append((site, site.start_sign_in(op, "test-op")))

    results = finish_all_at_once(pairs)

    assert [status for status, _ in results] == [302] * PARALLEL, a.log()[-2000:] + b.log()[-2000:]
    assert op.hits["/jwks"] == 1
    assert op.hits["/.well-known/openid-configuration"] == 0


def test_a_rotation_within_the_cooldown_of_a_refetch_waits_on_every_instance_for_one_fetch(instances, op):
    """Delay, don't deny, across processes: instance A refetched for an unknown kid; under a second later
    the provider rotates again and sign-ins arrive at both instances. The cooldown and the fetch lock
    are in the shared cache: every worker waits for the cooldown to end, then one fetch serves all."""
    a, b = instances
    sign_in_everywhere(instances, op)
    pairs = []
    for n in range(PARALLEL // 2):
        site = (a, b)[n % 2]
        op.next_user = {**DEFAULT_USER, "sub": f"delayed-{n}", "preferred_username": f"delayed{n}"}
        pairs.append((site, site.start_sign_in(op, "test-op")))
    op.next_user = {**DEFAULT_USER, "sub": "first-after-rotation", "preferred_username": "firstafter"}
    first = a.start_sign_in(op, "test-op")
    op.rotate("RSA")
    fetches = op.hits["/jwks"]
    assert a.finish_sign_in(first)[0] == 302, a.log()[-2000:]  # the unknown kid: a refetch, the cooldown starts
    refetched = time.monotonic()
    assert op.hits["/jwks"] == fetches + 1
    op.rotate("RSA")
    assert time.monotonic() - refetched < 1

    results = finish_all_at_once(pairs)

    assert [status for status, _ in results] == [302] * (PARALLEL // 2), a.log()[-2000:] + b.log()[-2000:]
    assert op.hits["/jwks"] == fetches + 2


def test_concurrent_first_sign_ins_of_one_identity_on_both_instances_make_one_user(instances, op):
    a, b = instances
    op.next_user = {**DEFAULT_USER, "sub": "same-everywhere", "preferred_username": "sameeverywhere"}
    pairs = [((a, b)[n % 2], None) for n in range(PARALLEL)]
    pairs = [(site, site.start_sign_in(op, "test-op")) for site, _ in pairs]

    results = finish_all_at_once(pairs)

    assert [status for status, _ in results] == [302] * PARALLEL, a.log()[-2000:] + b.log()[-2000:]
    assert {username for _, username in results} == {"sameeverywhere"}
    users = {
        flow.browser.get(f"{a.url}/accounts/session/", timeout=10).json()["identities"][0]["sub"] for _, flow in pairs
    }
    assert users == {"same-everywhere"}


def test_with_the_provider_s_documents_down_cached_keys_keep_serving_sign_ins(instances, op):
    a, b = instances
    sign_in_everywhere(instances, op)
    down = {"status": 503, "body": "down for maintenance", "content_type": "text/plain"}
    op.faults["/.well-known/openid-configuration"] = op.faults["/jwks"] = down
    op.hits.clear()
    try:
        started = time.monotonic()
        for n in range(6):
            site = (a, b)[n % 2]
            op.next_user = {**DEFAULT_USER, "sub": f"outage-{n}", "preferred_username": f"outage{n}"}
            assert site.finish_sign_in(site.start_sign_in(op, "test-op"))[0] == 302, site.log()[-2000:]
        assert time.monotonic() - started < 30
        assert op.hits["/jwks"] == 0 and op.hits["/.well-known/openid-configuration"] == 0
    finally:
        op.faults.clear()


def test_each_instance_answers_on_its_own(instances):
    for site in instances:
        assert requests.get(f"{site.url}/accounts/login/", timeout=10).status_code == 200
