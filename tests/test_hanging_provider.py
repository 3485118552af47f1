"""A provider that hangs costs one call, not one per request (``ACCOUNTS_OIDC_FETCH_FAILURE_TTL``).

The attack: with no cached copy of a provider's documents, every anonymous request that needs them
(a sign-in start, a callback, a bearer token naming the issuer) would call the provider and hold a
worker for the whole timeout. The defence: a failed discovery or JWKS fetch is remembered per URL
in the shared cache for a few seconds; meanwhile such requests are answered at once (502 for a page,
503 with ``Retry-After`` for an API) with one log line; bearer requests never fetch discovery at all.

The provider is a real loopback server that accepts connections and never answers
(``tests.op_double.HangingServer``); the app's timeout is made small so that the one call that is
made ends quickly, and every answer is timed.
"""

from __future__ import annotations

import logging
import time

import pytest
from django.test import Client

from accounts.models import Provider
from accounts.oidc import discovery
from tests.conftest import start_login
from tests.op_double import DISCOVERY_PATH, HangingServer
from tests.test_api import access_token

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_api")]

REQUESTS = 6
TIMEOUT = 0.3  # the app's (connect, read) timeouts in these tests, in seconds


@pytest.fixture(autouse=True)
def _short_timeouts(settings):
    settings.ACCOUNTS_OIDC_HTTP_TIMEOUT = (TIMEOUT, TIMEOUT)


@pytest.fixture
def hanging():
    with HangingServer() as server:
        yield server


@pytest.fixture
def hung_provider(db, hanging) -> Provider:
    """An OpenID provider whose issuer is the hanging server: its discovery document never comes."""
    return Provider.objects.create(
        slug="hung", name="Hung", issuer=hanging.base_url, client_id="client-1", client_secret="secret-1"
    )


def timed(request):
    started = time.monotonic()
    response = request()
    return response, time.monotonic() - started


def log_lines(caplog, prefix: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix)]


# --- pages ---------------------------------------------------------------------------------------


def test_sign_in_starts_against_a_hanging_provider_make_one_call_and_answer_at_once(hung_provider, hanging, caplog):
    caplog.set_level(logging.INFO, logger="accounts")
    answers = [timed(lambda: Client().get("/accounts/hung/login/")) for _ in range(REQUESTS)]

    assert hanging.accepted == 1
    assert [response.status_code for response, _ in answers] == [504] + [502] * (REQUESTS - 1)
    assert all(seconds < 1 for _, seconds in answers), [seconds for _, seconds in answers]
    failures = log_lines(caplog, "sign-in failed")
    assert len(failures) == REQUESTS, failures  # one line per request
    assert "code=provider_timeout" in failures[0]
    for line in failures[1:]:
        assert "code=provider_unavailable" in line and "failed" in line and "not asked again for" in line, line


def test_the_failure_is_remembered_for_a_short_time_only(hung_provider, hanging, settings):
    settings.ACCOUNTS_OIDC_FETCH_FAILURE_TTL = 0.5  # at most 0.6 s with its jitter
    assert Client().get("/accounts/hung/login/").status_code == 504
    assert Client().get("/accounts/hung/login/").status_code == 502
    assert hanging.accepted == 1
    time.sleep(0.7)
    assert Client().get("/accounts/hung/login/").status_code == 504  # asked again
    assert hanging.accepted == 2


def test_callbacks_needing_a_discovery_document_that_hangs_make_one_call(op, provider, caplog):
    """Sign-ins started while the provider answered; its discovery document is then gone from the
    cache (evicted, say) and the provider hangs by the time the browsers come back."""
    browsers = []
    for _ in range(REQUESTS):
        browser = Client()
        callback = op.authorize(start_login(browser, provider))
        browsers.append((browser, callback))
    discovery.forget(discovery.discovery_url(provider.issuer))
    op.faults[DISCOVERY_PATH] = {"delay": 30}  # cut short when the double stops
    calls_before = op.hits[DISCOVERY_PATH]
    caplog.set_level(logging.INFO, logger="accounts")

    answers = [timed(lambda b=b, c=c: b.get("/accounts/test-op/callback/", c)) for b, c in browsers]

    assert op.hits[DISCOVERY_PATH] - calls_before == 1
    assert [response.status_code for response, _ in answers] == [504] + [502] * (REQUESTS - 1)
    assert all(seconds < 1 for _, seconds in answers), [seconds for _, seconds in answers]
    assert len(log_lines(caplog, "sign-in failed")) == REQUESTS


# --- APIs ----------------------------------------------------------------------------------------


def test_bearer_requests_never_fetch_a_discovery_document_that_is_not_cached(hung_provider, hanging, op, caplog):
    token = access_token(op, iss=hanging.base_url)
    caplog.set_level(logging.INFO, logger="accounts")
    answers = [timed(lambda: Client().get("/api/any/", HTTP_AUTHORIZATION=f"Bearer {token}")) for _ in range(REQUESTS)]

    assert hanging.accepted == 0
    for response, seconds in answers:
        assert response.status_code == 503 and response["Retry-After"] == "10"
        assert seconds < 1
    refusals = log_lines(caplog, "bearer token refused")
    assert len(refusals) == REQUESTS
    assert all("discovery document of hung is not cached and bearer requests do not fetch it" in r for r in refusals)


def test_bearer_requests_needing_keys_that_hang_make_one_call_and_say_when_to_retry(op, provider, hanging, caplog):
    op.metadata["jwks_uri"] = hanging.base_url + "/jwks"
    discovery.get_metadata(provider.issuer)  # a sign-in fetched the discovery document; the keys hang
    token = access_token(op)
    caplog.set_level(logging.INFO, logger="accounts")
    answers = [timed(lambda: Client().get("/api/any/", HTTP_AUTHORIZATION=f"Bearer {token}")) for _ in range(REQUESTS)]

    assert hanging.accepted == 1
    assert all(response.status_code == 503 for response, _ in answers)
    assert all(seconds < 1 for _, seconds in answers), [seconds for _, seconds in answers]
    assert answers[0][0]["Retry-After"] == "5"  # the call that timed out
    assert all(8 <= int(response["Retry-After"]) <= 12 for response, _ in answers[1:])
    refusals = log_lines(caplog, "bearer token refused")
    assert len(refusals) == REQUESTS
    assert all("keys unavailable" in r and "not asked again for" in r for r in refusals[1:]), refusals
