"""Single-use means single use: spent logout-token and API ``jti``s live in one table (``accounts.replay``).

The attacks: two copies of one token sent at the same instant (both must not pass); a cache filled
or cleared by anonymous traffic (a spent token must not come back to life); a forged token that
names someone else's ``jti`` (it must not spend it for them); and the prune command, which may
forget only what can no longer be accepted anyway.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from io import StringIO

import pytest
import requests
from django.core.cache import caches
from django.core.management import call_command
from django.db import OperationalError, connection
from django.test import Client
from django.urls import include, path
from django.utils import timezone

from accounts import replay
from accounts.models import SpentToken
from tests.conftest import assert_logout_refused, logout_token, post_logout_token
from tests.op_double import OpenIDProviderDouble
from tests.sites import SiteProcess
from tests.test_api import AUDIENCE, access_token, alice, assert_refused, call, caller
from tests.test_api import bearer_token_required as _bearer_token_required

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_replay")]

__all__ = ["alice"]  # the fixture, shared with tests/test_api.py

urlpatterns = [
    path("accounts/", include("accounts.urls")),
    path("api/once/", _bearer_token_required(audience=AUDIENCE, refuse_replay=True)(caller)),
]

PARALLEL = 8
JTI_REPLAY = "jti replay"


def all_at_once(send, copies: int = PARALLEL) -> list:
    """Run ``send()`` in ``copies`` threads released together; each thread closes its own connection.

    In-process threads need a database that several connections can write at once: SQLite's
    in-memory test database locks whole tables across connections and fails at once instead of
    waiting, so there the real server below (a file database, as deployed) plays the attack.
    """
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("SQLite's in-memory test database cannot take parallel writers; see the real-server tests")
    barrier = threading.Barrier(copies, timeout=30)

    def one(_):
        try:
            barrier.wait()
            return send()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=copies) as pool:
        return list(pool.map(one, range(copies), timeout=60))


# --- parallel replays: exactly one passes ------------------------------------------------------------


@pytest.mark.services  # also on PostgreSQL, where the copies really overlap inside the database
@pytest.mark.django_db(transaction=True)
def test_parallel_copies_of_one_jti_spend_it_exactly_once():
    exp = time.time() + 300
    results = all_at_once(lambda: replay.spend(replay.TokenUse.ACCESS, issuer="https://op.example", jti="j", exp=exp))
    assert sorted(results) == [False] * (PARALLEL - 1) + [True]
    assert SpentToken.objects.count() == 1


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_parallel_replays_of_an_api_token_are_admitted_once(op, alice):
    token = access_token(op)
    statuses = all_at_once(lambda: Client().get("/api/once/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code)
    assert sorted(statuses) == [200] + [401] * (PARALLEL - 1)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_parallel_replays_of_a_logout_token_are_accepted_once(op, provider):
    token = logout_token(op, sid="op-session-1")
    statuses = all_at_once(lambda: post_logout_token(token).status_code)
    assert sorted(statuses) == [200] + [400] * (PARALLEL - 1)


@pytest.fixture(scope="module")
def op_for_site():
    with OpenIDProviderDouble() as double:
        yield double


@pytest.fixture(scope="module")
def site(tmp_path_factory, op_for_site):
    """The demo site on SQLite (a file, WAL, as deployed) in its own threaded server, with an API of its own."""
    with SiteProcess(tmp_path_factory.mktemp("replay"), DJANGO_SETTINGS_MODULE="tests.settings_replay") as process:
        process.add_provider("test-op", op_for_site)
        status, username = process.finish_sign_in(process.start_sign_in(op_for_site, "test-op"))
        assert (status, username) == (302, "alice"), process.log()[-2000:]
        yield process


def post_all_at_once(site, send) -> list[int]:
    barrier = threading.Barrier(PARALLEL, timeout=30)

    def one(_):
        barrier.wait()
        return send().status_code

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return sorted(pool.map(one, range(PARALLEL), timeout=60))


def test_parallel_replays_of_an_api_token_on_a_real_server_are_admitted_once(site, op_for_site):
    token = access_token(op_for_site)
    headers = {"Authorization": f"Bearer {token}"}
    statuses = post_all_at_once(site, lambda: requests.get(f"{site.url}/api/once/", headers=headers, timeout=30))
    assert statuses == [200] + [401] * (PARALLEL - 1), site.log()[-3000:]
    assert site.query("SELECT count(*) FROM oidc_signin_spenttoken") == [(1,)]


def test_parallel_replays_of_a_logout_token_on_a_real_server_are_accepted_once(site, op_for_site):
    token = logout_token(op_for_site)
    url = f"{site.url}/accounts/test-op/backchannel-logout/"
    statuses = post_all_at_once(site, lambda: requests.post(url, data={"logout_token": token}, timeout=30))
    assert statuses == [200] + [400] * (PARALLEL - 1), site.log()[-3000:]


# --- the cache plays no part ---------------------------------------------------------------------------


def test_clearing_the_cache_does_not_readmit_a_spent_api_token(op, alice, caplog):
    token = access_token(op)
    assert call("/api/once/", token, caplog).status_code == 200
    for cache in caches.all():
        cache.clear()
    caplog.clear()
    assert_refused(call("/api/once/", token, caplog), caplog, 401, "invalid_token", JTI_REPLAY)


def test_filling_the_cache_does_not_readmit_a_spent_token(op, alice, caplog, settings):
    """A cache culls when full (LocMem, database); anyone can fill it with requests that cache something."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": 20, "CULL_FREQUENCY": 1},  # full: forget everything
        }
    }
    api_token, logout = access_token(op), logout_token(op)
    assert call("/api/once/", api_token, caplog).status_code == 200
    assert post_logout_token(logout).status_code == 200
    for n in range(100):
        caches["default"].set(f"anonymous-{n}", n)
    assert caches["default"].get("anonymous-0") is None  # culled long ago
    caplog.clear()
    assert_refused(call("/api/once/", api_token, caplog), caplog, 401, "invalid_token", JTI_REPLAY)
    assert_logout_refused(post_logout_token(logout), 400, code="invalid_request", reason=JTI_REPLAY)


def test_clearing_the_cache_does_not_readmit_a_spent_logout_token(op, provider):
    token = logout_token(op)
    assert post_logout_token(token).status_code == 200
    for cache in caches.all():
        cache.clear()
    assert_logout_refused(post_logout_token(token), 400, code="invalid_request", reason=JTI_REPLAY)


def test_a_forged_token_cannot_spend_someone_elses_jti(op, alice, caplog):
    """The jti is spent only once the signature is verified: a forgery naming it changes nothing."""
    token = access_token(op, jti="the-real-one")
    header, _payload, signature = token.split(".")
    _h, other_payload, _s = access_token(op, jti="the-real-one", sub="someone-else").split(".")
    forged = f"{header}.{other_payload}.{signature}"
    assert_refused(call("/api/once/", forged, caplog), caplog, 401, "invalid_token", "signature is not valid")
    assert not SpentToken.objects.exists()
    assert call("/api/once/", token, caplog).status_code == 200


# --- one table, keys that never collide -----------------------------------------------------------------


def test_a_token_is_remembered_until_it_can_no_longer_be_accepted(settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 60
    exp = time.time() + 300
    assert replay.spend(replay.TokenUse.LOGOUT, issuer="https://op.example", jti="j", exp=exp)
    remembered = SpentToken.objects.get().expires_at - timezone.now()
    assert timedelta(seconds=358) <= remembered <= timedelta(seconds=362)


@pytest.mark.parametrize("exp", [1e300, float("inf"), float("nan")])
def test_an_absurd_exp_is_remembered_for_a_century_not_a_500(exp):
    assert replay.spend(replay.TokenUse.ACCESS, issuer="https://op.example", jti="j", exp=exp)
    assert SpentToken.objects.get().expires_at > timezone.now() + timedelta(days=365 * 99)


def test_the_uses_and_issuers_of_a_jti_are_kept_apart():
    spend = replay.spend
    exp = time.time() + 300
    assert spend(replay.TokenUse.LOGOUT, issuer="https://a.example", jti="1", exp=exp)
    assert spend(replay.TokenUse.ACCESS, issuer="https://a.example", jti="1", exp=exp)
    assert spend(replay.TokenUse.ACCESS, issuer="https://b.example", jti="1", exp=exp)
    # A space (or anything) cannot move the boundary between issuer and jti.
    assert spend(replay.TokenUse.ACCESS, issuer="a b", jti="c", exp=exp)
    assert spend(replay.TokenUse.ACCESS, issuer="a", jti="b c", exp=exp)
    assert not spend(replay.TokenUse.ACCESS, issuer="a", jti="b c", exp=exp)


def test_any_jti_can_be_stored_a_lone_surrogate_included():
    assert replay.spend(replay.TokenUse.ACCESS, issuer="https://op.example", jti="\ud800\x00", exp=time.time() + 60)
    assert len(SpentToken.objects.get().digest) == 64


# --- a busy database is a 503, and the token is not burnt -----------------------------------------------


@pytest.fixture
def busy_spending(monkeypatch):
    """The database refuses the INSERT of a spent token, as a locked SQLite or a failed-over PostgreSQL does."""

    def busy(self, *args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(SpentToken, "save", busy)
    return monkeypatch


def test_a_busy_database_while_spending_an_api_token_is_503(op, alice, caplog, busy_spending):
    token = access_token(op)
    response = call("/api/once/", token, caplog)
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["error"] == "temporarily_unavailable"
    assert "reason=database unavailable: OperationalError" in caplog.text
    busy_spending.undo()
    assert call("/api/once/", token, caplog).status_code == 200  # the retry is not a replay


def test_a_busy_database_while_spending_a_logout_token_is_503_and_the_retry_works(op, provider, busy_spending):
    token = logout_token(op)
    response = post_logout_token(token)
    assert response.status_code == 503 and response["Retry-After"] == "5"
    busy_spending.undo()
    assert post_logout_token(token).status_code == 200
    assert_logout_refused(post_logout_token(token), 400, code="invalid_request", reason=JTI_REPLAY)


# --- pruning forgets only what has expired -----------------------------------------------------------------


@pytest.fixture
def spent_rows(db):
    now = timezone.now()
    for name, delta in [("expired-long-ago", -86400), ("just-expired", -1), ("live", 60), ("live-for-days", 86400 * 3)]:
        SpentToken.objects.create(digest=name, expires_at=now + timedelta(seconds=delta))


def test_prune_forgets_only_expired_spent_tokens(spent_rows):
    out = StringIO()
    call_command("prune_signin_events", stdout=out)
    assert "Forgot 2 expired spent token(s)." in out.getvalue()
    assert sorted(SpentToken.objects.values_list("digest", flat=True)) == ["live", "live-for-days"]


def test_prune_dry_run_only_counts_expired_spent_tokens(spent_rows):
    out = StringIO()
    call_command("prune_signin_events", "--dry-run", stdout=out)
    assert "2 expired spent token(s) would be forgotten." in out.getvalue()
    assert SpentToken.objects.count() == 4


def test_a_pruned_token_is_still_refused_as_expired(op, alice, caplog, settings):
    """Pruning is safe because whatever it forgets is refused anyway: its token has expired."""
    settings.ACCOUNTS_OIDC_CLOCK_LEEWAY = 0
    now = int(time.time())
    token = access_token(op, iat=now - 10, exp=now + 1)
    assert call("/api/once/", token, caplog).status_code == 200
    SpentToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    time.sleep(1.1)
    call_command("prune_signin_events", stdout=StringIO())
    assert not SpentToken.objects.exists()
    caplog.clear()
    assert_refused(call("/api/once/", token, caplog), caplog, 401, "invalid_token", "access token has expired")
