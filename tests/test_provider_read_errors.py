"""A provider whose answer breaks off or cannot be read: a typed error page, never a crash.

With a streamed body, urllib3's errors (a body cut short, a body not in its declared encoding)
surface while the body is read, outside ``requests``' exception types. Through the real views and
the OpenID provider double, each must end as the provider-error page (or the back-channel logout's
JSON answer), leave its audit row, and still let an expired cached copy stand in.
"""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import SESSION_KEY
from django.core.cache import caches

from accounts.models import SignInEvent
from accounts.oidc import discovery
from tests.conftest import assert_error_page, logout_token, post_logout_token, sign_in, start_login
from tests.op_double import DISCOVERY_PATH

pytestmark = pytest.mark.django_db

#: The answer promises 4096 bytes, sends a dozen, and the double hangs up (it speaks HTTP/1.0).
CUT_SHORT = {
    "status": 200,
    "body": '{"issuer": "',
    "content_type": "application/json",
    "headers": {"Content-Length": "4096"},
    "content_length": False,
}
#: Labelled gzip, but plain JSON: urllib3's decoder fails while the body is read.
NOT_GZIP = {"status": 200, "body": "{}", "content_type": "application/json", "headers": {"Content-Encoding": "gzip"}}


def only_event() -> SignInEvent:
    [event] = SignInEvent.objects.all()
    return event


def nested(depth: int) -> dict:
    """``{"a": {"a": ... 1}}``, ``depth`` levels deep: valid JSON, built without recursion."""
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value  # type: ignore[return-value]


# --- answers that break off mid-body -------------------------------------------------------------


def test_login_start_with_a_discovery_answer_cut_short_is_a_502_page(client, op, provider):
    op.faults[DISCOVERY_PATH] = CUT_SHORT
    assert_error_page(client.get(f"/accounts/{provider.slug}/login/"), 502)
    event = only_event()
    assert (event.outcome, event.code) == ("failure", "provider_unavailable")
    assert event.reason == "discovery document sent an answer that could not be read (ProtocolError: IncompleteRead)"


@pytest.mark.parametrize(
    ("fault", "cause"), [(CUT_SHORT, "ProtocolError: IncompleteRead"), (NOT_GZIP, "DecodeError")], ids=["cut", "gzip"]
)
def test_callback_with_a_token_answer_that_cannot_be_read_is_a_502_page(client, op, provider, fault, cause):
    callback_params = op.authorize(start_login(client, provider))
    op.faults["/token"] = fault
    assert_error_page(client.get(f"/accounts/{provider.slug}/callback/", callback_params), 502)
    event = only_event()
    assert (event.outcome, event.code) == ("failure", "provider_unavailable")
    assert event.reason == f"token endpoint sent an answer that could not be read ({cause})"
    assert SESSION_KEY not in client.session


def test_backchannel_logout_with_a_jwks_answer_cut_short_is_a_502_answer(op, provider):
    op.faults["/jwks"] = CUT_SHORT
    response = post_logout_token(logout_token(op))
    assert response.status_code == 502 and response.json()["error"] == "invalid_request"
    event = only_event()
    assert (event.action, event.outcome, event.code) == ("backchannel-logout", "failure", "provider_unavailable")
    assert event.reason == "JWKS sent an answer that could not be read (ProtocolError: IncompleteRead)"


def test_expired_discovery_copy_is_used_when_its_refresh_breaks_off(client, op, provider, caplog):
    assert sign_in(client, op, provider).status_code == 302
    client.post("/accounts/logout/")
    discovery.in_process(discovery.discovery_url(provider.issuer)).expires_at = 0
    caches["default"].clear()  # the JWKS stays fresh in this process
    op.faults[DISCOVERY_PATH] = CUT_SHORT
    with caplog.at_level(logging.WARNING, logger="accounts.oidc.discovery"):
        response = sign_in(client, op, provider)
    assert response.status_code == 302 and SESSION_KEY in client.session
    assert op.hits[DISCOVERY_PATH] > 1  # the refresh was tried, and broke off
    assert "using expired discovery document" in caplog.text and "IncompleteRead" in caplog.text


# --- answers nested too deep ---------------------------------------------------------------------


def test_login_start_with_a_discovery_document_nested_too_deep_is_a_502_page(client, op, provider):
    op.metadata["x_nested"] = nested(700)
    assert_error_page(client.get(f"/accounts/{provider.slug}/login/"), 502)
    event = only_event()
    assert (event.outcome, event.code) == ("failure", "provider_unavailable")
    assert event.reason == "discovery document answered JSON that nests more than 32 levels"


def test_callback_with_a_userinfo_claim_nested_too_deep_is_a_502_page(client, op, provider, userinfo_always):
    op.userinfo_mutator = lambda info: {**info, "address": nested(700)}
    assert_error_page(sign_in(client, op, provider), 502)
    event = only_event()
    assert (event.outcome, event.code) == ("failure", "provider_unavailable")
    assert event.reason == "userinfo endpoint answered JSON that nests more than 32 levels"
    assert SESSION_KEY not in client.session


def test_a_callback_that_ended_on_a_502_page_cannot_be_replayed(client, op, provider):
    """The pending login is spent even though Django saves no session on a server-error answer."""
    callback_params = op.authorize(start_login(client, provider))
    op.faults["/token"] = CUT_SHORT
    assert_error_page(client.get(f"/accounts/{provider.slug}/callback/", callback_params), 502)
    del op.faults["/token"]  # the provider is back: the very same callback URL, once more
    replayed = client.get(f"/accounts/{provider.slug}/callback/", callback_params)
    assert_error_page(
        replayed, 400, code="invalid_request", reason="callback state matches no sign-in started in this browser"
    )
    assert SESSION_KEY not in client.session
