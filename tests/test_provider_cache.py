"""Provider rows kept in-process behind a version in the shared cache (``accounts.provider_cache``).

A sign-in and a bearer request no longer read the provider row each time; a change made anywhere
(the admin, the CLI, a disable) must still reach every process on its next request. In-process
with the local-memory cache first, then two real servers (gunicorn, several workers) sharing
PostgreSQL and Redis, the change made by a third process.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts import provider_cache
from accounts.models import Provider
from tests import sites
from tests.conftest import sign_in
from tests.op_double import OpenIDProviderDouble
from tests.sites import SiteProcess

REDIS_DB = 13  # the instances tests use 14, the suite's second pass 15


@pytest.mark.django_db
def test_a_kept_row_is_read_once(provider):
    assert provider_cache.enabled_provider("test-op") == provider
    with CaptureQueriesContext(connection) as queries:
        assert provider_cache.enabled_provider("test-op") == provider
    assert [q["sql"] for q in queries.captured_queries if "oidc_signin_provider" in q["sql"]] == []


@pytest.mark.django_db
def test_disabling_a_provider_reaches_the_next_sign_in(client, op, provider):
    assert sign_in(client, op, provider).status_code == 302
    provider.enabled = False
    provider.save()
    response = Client().get("/accounts/test-op/login/")
    assert response.status_code == 404


@pytest.mark.django_db
def test_an_edit_reaches_the_next_lookup(provider):
    assert provider_cache.enabled_provider("test-op").name == "Test OP"
    provider.name = "Renamed"
    provider.save()
    assert provider_cache.enabled_provider("test-op").name == "Renamed"


@pytest.mark.django_db
def test_a_deleted_provider_is_gone_at_once(provider):
    assert provider_cache.enabled_provider("test-op") is not None
    provider.delete()
    assert provider_cache.enabled_provider("test-op") is None


@pytest.mark.django_db
def test_another_processs_bump_voids_the_kept_rows(provider, django_assert_num_queries):
    """Another process's change arrives as a new version in the shared cache, nothing else."""
    provider_cache.enabled_provider("test-op")
    Provider.objects.filter(pk=provider.pk).update(enabled=False)  # as another process's save: no signal here
    provider_cache._cache().incr(provider_cache.PROVIDERS_VERSION_KEY)  # ... and its bump
    assert provider_cache.enabled_provider("test-op") is None


@pytest.mark.django_db(transaction=True)
def test_the_version_is_bumped_again_when_the_change_commits(provider):
    """Between the save and the commit another process may read the old row: the commit's bump voids it."""
    from django.db import transaction

    with transaction.atomic():
        provider.enabled = False
        provider.save()
        during = provider_cache.providers_version()
    assert provider_cache.providers_version() > during


# --- two servers, a shared cache -------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_services():
    with sites.shared_services("oidc_signin_provider_cache", REDIS_DB) as services:
        yield services


def starts(site: SiteProcess, times: int = 6) -> set[int]:
    """The statuses of ``times`` sign-in starts (spread over the site's workers)."""
    import requests

    return {
        requests.get(f"{site.url}/accounts/test-op/login/", allow_redirects=False, timeout=30).status_code
        for _ in range(times)
    }


@pytest.mark.services
@pytest.mark.django_db
def test_a_change_made_in_a_third_process_reaches_every_worker_of_both_servers(tmp_path, shared_services):
    if connection.vendor != "postgresql":
        pytest.skip("runs in the second pass of make test, with PostgreSQL and Redis")
    with OpenIDProviderDouble() as op:
        a = SiteProcess(tmp_path / "a", gunicorn_workers=2, **shared_services)
        b = SiteProcess(tmp_path / "b", gunicorn_workers=2, migrate=False, **shared_services)
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with a:
            a.add_provider("test-op", op)
            with b:
                assert starts(a) == starts(b) == {302}  # every worker now keeps the row
                toggle = "from accounts.models import Provider; p = Provider.objects.get(slug='test-op'); "
                a.manage("shell", "-c", toggle + "p.enabled = False; p.save()")  # a process of its own
                assert starts(a) == starts(b) == {404}, (a.log()[-1500:], b.log()[-1500:])
                a.manage("shell", "-c", toggle + "p.enabled = True; p.save()")
                assert starts(a) == starts(b) == {302}
