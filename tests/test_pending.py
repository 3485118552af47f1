"""accounts.pending: started sign-ins, a signed cookie each -- single use, bounded in count and bytes, tamper-proof."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core import signing
from django.test import Client

from accounts import pending
from tests.conftest import assert_error_page, incompressible, pending_flows, put_flow, sign_in, start_login

pytestmark = pytest.mark.django_db
User = get_user_model()


def callback(client, params):
    return client.get("/accounts/test-op/callback/", params)


#: Why a callback whose state names no sign-in started in this browser is refused (accounts.pending).
NO_SUCH_STATE = pending.NO_SUCH_STATE


# --- the started sign-ins kept in the browser ---------------------------------------------------------
# The first rules were found by mutation testing (mutmut over accounts/flow.py): they guard the
# started sign-ins against a failed attempt being retried, stale entries, and what a browser sends
# after an upgrade or a tampering. accounts.pending keeps them in signed cookies since.


UNREADABLE = "the stored sign-in for this callback is unreadable"


def the_flow_cookie(response):
    """The one flow cookie ``response`` sets or deletes."""
    [morsel] = [m for name, m in response.cookies.items() if pending.COOKIE_PREFIX in name]
    return morsel


def test_a_state_is_spent_by_its_first_callback_even_one_the_provider_refused(client, op, provider):
    """The pending login is removed before the provider is asked: a refused code does not leave it for another."""
    params = op.authorize(start_login(client, provider))
    assert_error_page(callback(client, {**params, "code": "forged"}), 400, code="token_rejected")
    assert_error_page(callback(client, params), 400, code="invalid_request", reason=NO_SUCH_STATE)
    assert op.hits["/token"] == 1 and not pending_flows(client)


def test_a_replayed_callback_is_refused_in_the_session_it_signed_in(client, op, provider):
    params = op.authorize(start_login(client, provider))
    finished = callback(client, params)
    assert finished.status_code == 302
    assert finished.cookies[pending.cookie_name(params["state"], secure=False)]["max-age"] == 0  # deleted
    assert_error_page(callback(client, params), 400, code="invalid_request", reason=NO_SUCH_STATE)
    assert op.hits["/token"] == 1


def test_an_expired_pending_login_is_dropped_when_another_starts(client, provider, settings):
    stale = start_login(client, provider)["state"]
    settings.ACCOUNTS_OIDC_FLOW_TTL = 0  # every sign-in started before now has expired
    response = client.get(f"/accounts/{provider.slug}/login/")
    assert response.cookies[pending.cookie_name(stale, secure=False)]["max-age"] == 0  # deleted


def test_an_unreadable_flow_cookie_is_deleted_when_another_sign_in_starts(client, provider):
    client.cookies[pending.cookie_name("forged", secure=False)] = "not-a-signed-value"
    response = client.get(f"/accounts/{provider.slug}/login/")
    assert response.cookies[pending.cookie_name("forged", secure=False)]["max-age"] == 0


def test_on_https_the_bound_counts_the_host_prefixed_flows(client, provider, settings):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = True
    settings.ACCOUNTS_OIDC_MAX_PENDING_FLOWS = 2
    for _ in range(5):
        client.get(f"/accounts/{provider.slug}/login/", secure=True)
    assert len(pending_flows(client)) == 2


def test_an_expired_pending_login_is_refused_at_its_callback(client, op, provider, settings):
    params = op.authorize(start_login(client, provider))
    settings.ACCOUNTS_OIDC_FLOW_TTL = 0
    response = callback(client, params)
    assert_error_page(response, 400, code="invalid_request", reason="sign-in expired before its callback arrived")
    assert op.hits["/token"] == 0 and not pending_flows(client)


@pytest.mark.parametrize("length", [900, 2000, 5000])
def test_the_longest_next_url_still_fits_its_flow_cookie(client, op, provider, length):
    """Browsers drop a cookie over 4096 bytes, and the sign-in with it. A ``next`` longer than a flow
    cookie keeps (``pending.MAX_NEXT_URL``) goes to LOGIN_REDIRECT_URL instead."""
    long_next = "/accounts/profile/?q=" + incompressible(length)
    started = client.get(f"/accounts/{provider.slug}/login/", {"next": long_next})
    morsel = the_flow_cookie(started)
    assert len(morsel.OutputString()) < 2048
    response = callback(client, op.authorize(dict(parse_qsl(urlsplit(started["Location"]).query))))
    assert response.status_code == 302
    assert response["Location"] == (long_next if len(long_next) < pending.MAX_NEXT_URL else "/accounts/profile/")


def test_a_next_url_too_long_to_keep_goes_to_login_redirect_url_with_one_log_line(client, op, provider, caplog):
    # Kept as JSON: the quotes count, so 1,022 characters are the longest kept.
    kept, dropped = "/" + incompressible(pending.MAX_NEXT_URL - 3), "/" + incompressible(pending.MAX_NEXT_URL - 2)
    with caplog.at_level(logging.INFO, logger="accounts.pending"):
        start_login(client, provider, next=kept)
        start_login(client, provider, next=dropped)
    assert sorted(flow["next_url"] for flow in pending_flows(client).values()) == sorted([kept, "/accounts/profile/"])
    [line] = [r.getMessage() for r in caplog.records if r.name == "accounts.pending"]
    assert line == "next URL too long to keep with a started sign-in (1025 > 1024); using /accounts/profile/"


def flow_cookie_header_bytes(client) -> int:
    """What this browser's flow cookies add to the ``Cookie`` header of its next request."""
    flows = [f"{name}={m.value}" for name, m in client.cookies.items() if pending.COOKIE_PREFIX in name and m.value]
    return len("; ".join(flows))


def test_started_sign_ins_never_make_a_cookie_header_over_4kb(client, op, provider):
    """Any page on the web can make a browser start sign-ins here (top-level navigations): eight with
    the longest ``next`` a flow keeps must not make a header that servers refuse (about 8 KB)."""
    starts = [
        start_login(client, provider, next="/" + incompressible(pending.MAX_NEXT_URL - 3, seed=str(n)))
        for n in range(8)
    ]
    assert flow_cookie_header_bytes(client) <= pending.MAX_COOKIE_HEADER_BYTES
    kept = set(pending_flows(client))
    assert 2 <= len(kept) < 8  # bounded by bytes, well before the count
    assert kept == {params["state"] for params in starts[-len(kept) :]}  # the newest, the oldest evicted
    # Then an ordinary sign-in still starts, and finishes.
    assert sign_in(client, op, provider).status_code == 302
    assert flow_cookie_header_bytes(client) <= pending.MAX_COOKIE_HEADER_BYTES


def test_eight_ordinary_sign_ins_stay_under_the_header_bound(client, provider):
    for _ in range(12):
        start_login(client, provider)
        assert flow_cookie_header_bytes(client) <= pending.MAX_COOKIE_HEADER_BYTES
    assert len(pending_flows(client)) >= 6


@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
def test_signing_out_spends_the_sign_ins_started_before(client, op, provider, django_user_model, settings, secure):
    """A sign-in started before signing out does not finish after it, say on a shared computer."""
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = True
    client.force_login(django_user_model.objects.create_user("earlier"))
    client.cookies["theme"] = "dark"  # the project's own cookie
    started = client.get(f"/accounts/{provider.slug}/login/", secure=secure)
    params = op.authorize(dict(parse_qsl(urlsplit(started["Location"]).query)))
    signed_out = client.post("/accounts/logout/", secure=secure)
    flow_cookie = the_flow_cookie(signed_out)
    assert flow_cookie.key.startswith("__Host-") == secure and flow_cookie["max-age"] == 0  # deleted
    assert "theme" not in signed_out.cookies  # the project's own cookie is left alone
    assert_error_page(
        client.get(f"/accounts/{provider.slug}/callback/", params, secure=secure),
        400, code="invalid_request", reason=NO_SUCH_STATE,
    )  # fmt: skip
    assert op.hits["/token"] == 0


def test_the_bound_on_pending_logins_keeps_the_newest(client, op, provider, settings):
    settings.ACCOUNTS_OIDC_MAX_PENDING_FLOWS = 3
    started = [op.authorize(start_login(client, provider)) for _ in range(7)]
    eighth = client.get(f"/accounts/{provider.slug}/login/")
    oldest_kept = started[-3]["state"]
    assert eighth.cookies[pending.cookie_name(oldest_kept, secure=False)]["max-age"] == 0  # deleted, not blanked
    started.append(op.authorize(dict(parse_qsl(urlsplit(eighth["Location"]).query))))
    assert set(pending_flows(client)) == {params["state"] for params in started[-3:]}
    assert_error_page(callback(client, started[0]), 400, code="invalid_request", reason=NO_SUCH_STATE)
    assert callback(client, started[-1]).status_code == 302


def test_starting_a_sign_in_writes_nothing_to_the_database(client, provider, django_assert_num_queries):
    """A visitor (or a bot) starting sign-ins costs no row: the flow waits in its own cookie."""
    with django_assert_num_queries(1):  # the provider's row, read
        start_login(client, provider)
    assert not Session.objects.exists()


@pytest.mark.parametrize(
    "value",
    ["", "not-a-signed-value", "eyJub3QiOiJzaWduZWQifQ:1tAbCd:forged-signature"],
    ids=["empty", "garbage", "a forged signature"],
)
def test_a_flow_cookie_this_site_did_not_sign_is_refused(client, op, provider, value):
    params = op.authorize(start_login(client, provider))
    client.cookies[pending.cookie_name(params["state"], secure=False)] = value
    response = callback(client, params)
    reason = NO_SUCH_STATE if not value else UNREADABLE
    assert_error_page(response, 400, code="invalid_request", reason=reason)
    assert op.hits["/token"] == 0


def test_a_flow_cookie_signed_for_something_else_is_refused(client, op, provider):
    """Django's signing with another salt (a signed cookie of the project's, say) is not a flow."""
    params = op.authorize(start_login(client, provider))
    [flow] = pending_flows(client).values()
    client.cookies[pending.cookie_name(params["state"], secure=False)] = signing.dumps(flow, salt="another.purpose")
    response = callback(client, params)
    assert_error_page(
        response, 400, code="invalid_request", reason="the stored sign-in for this callback is unreadable"
    )
    assert op.hits["/token"] == 0


def test_a_flow_cookie_renamed_for_another_state_is_refused(client, op, provider):
    """The attacker's own flow under the name of the victim's state still names the attacker's state."""
    attacker = Client()
    attacker_params = op.authorize(start_login(attacker, provider))
    [attacker_flow] = pending_flows(attacker).values()
    params = op.authorize(start_login(client, provider))
    put_flow(client, attacker_flow, state=params["state"])
    response = callback(client, params)
    assert_error_page(
        response, 400, code="invalid_request", reason="the stored sign-in for this callback belongs to another state"
    )
    assert op.hits["/token"] == 0 and attacker_params["state"] != params["state"]


def test_a_pending_login_stored_by_another_version_is_refused_as_unreadable(client, op, provider):
    params = op.authorize(start_login(client, provider))
    [flow] = pending_flows(client).values()
    put_flow(client, {**flow, "field_of_a_later_version": 1})
    assert_error_page(
        callback(client, params),
        400,
        code="invalid_request",
        reason=re.compile(r"^the stored sign-in for this callback is unreadable$"),
    )
    assert not pending_flows(client) and op.hits["/token"] == 0  # used up all the same


@pytest.mark.parametrize("field", ["created_at", "state"])
def test_a_signed_flow_with_a_field_of_the_wrong_type_is_unreadable_not_a_500(client, op, provider, field):
    """Signed by this site but not by this version (or by a bug): refused, and the next start still works."""
    params = op.authorize(start_login(client, provider))
    [flow] = pending_flows(client).values()
    put_flow(client, {**flow, field: ["not", "a", "scalar"]}, state=params["state"])
    assert_error_page(callback(client, params), 400, code="invalid_request", reason=UNREADABLE)
    put_flow(client, {**flow, field: ["not", "a", "scalar"]}, state=params["state"])
    assert client.get(f"/accounts/{provider.slug}/login/").status_code == 302  # sorting the flows: no TypeError


def test_flow_cookies_are_httponly_lax_and_expire_with_the_flow(client, provider, settings):
    settings.ACCOUNTS_OIDC_FLOW_TTL = 300
    response = client.get(f"/accounts/{provider.slug}/login/")
    morsel = the_flow_cookie(response)
    assert (morsel["httponly"], morsel["samesite"], morsel["max-age"], morsel["path"]) == (True, "Lax", 300, "/")
    assert not morsel["secure"] and not morsel.key.startswith("__Host-")  # plain http: no __Host- cookie


def test_on_https_flow_cookies_are_host_only_and_secure(client, provider, settings):
    """__Host-: a sibling subdomain cannot plant (toss) a flow of its own choosing in the browser."""
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = True
    response = client.get(f"/accounts/{provider.slug}/login/", secure=True)
    morsel = the_flow_cookie(response)
    assert morsel.key.startswith("__Host-" + pending.COOKIE_PREFIX)
    assert (morsel["secure"], morsel["path"], morsel["domain"]) == (True, "/", "")


def test_a_flow_without_the_host_prefix_is_not_read_on_https(client, op, provider):
    """A tossed cookie cannot carry __Host- from a subdomain; its plain name is never looked at on https."""
    params = op.authorize(start_login(client, provider))  # over http: a plain-named cookie
    response = client.get(f"/accounts/{provider.slug}/callback/", params, secure=True)
    assert_error_page(response, 400, code="invalid_request", reason=NO_SUCH_STATE)
    assert op.hits["/token"] == 0
