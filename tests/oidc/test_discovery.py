"""Discovery and JWKS: validated, cached across processes, refetched on key rotation within budgets."""

from __future__ import annotations

import re
import threading
import time

import pytest
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from joserfc.jwk import OKPKey

from accounts.errors import ProviderMisconfigured, ProviderRecentlyFailed, ProviderUnavailable, TokenRejected
from accounts.oidc import discovery
from accounts.oidc.quirks import Quirks
from accounts.oidc.tokens import verify_id_token, verify_logout_token
from tests.conftest import claims_for, logout_claims, made_up_kid_token
from tests.op_double import HangingServer, OpenIDProviderDouble

pytestmark = pytest.mark.django_db

DISCOVERY = "/.well-known/openid-configuration"


def verify(op, provider, token):
    return verify_id_token(provider, token, jwks_uri=op.metadata["jwks_uri"], nonce="n-1")


def forget_this_process():
    """What another process sees: the shared cache, but none of this process's memory."""
    discovery.forget_in_process()


# --- discovery document -------------------------------------------------------------------------


def test_metadata_comes_from_the_well_known_url(op, provider):
    assert discovery.get_metadata(provider.issuer)["token_endpoint"] == op.issuer + "/token"
    assert op.hits[DISCOVERY] == 1


def test_issuer_in_discovery_must_match_configuration_exactly(op, provider):
    op.metadata["issuer"] = op.issuer + "/"
    with pytest.raises(ProviderMisconfigured, match="configured issuer is"):
        discovery.get_metadata(provider.issuer)


def test_discovery_without_jwks_uri_is_refused(op, provider):
    del op.metadata["jwks_uri"]
    with pytest.raises(ProviderMisconfigured, match="lacks jwks_uri"):
        discovery.get_metadata(provider.issuer)


def test_discovery_pointing_to_plain_http_elsewhere_is_refused(op, provider, settings):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = False
    settings.DEBUG = True  # loopback http is allowed in debug, but not a token endpoint on another host
    op.metadata["token_endpoint"] = "http://idp.example/token"
    with pytest.raises(ProviderMisconfigured, match="token_endpoint uses http"):
        discovery.get_metadata(provider.issuer)


def test_metadata_is_cached_in_process_and_shared(op, provider):
    discovery.get_metadata(provider.issuer)
    discovery.get_metadata(provider.issuer)
    forget_this_process()
    discovery.get_metadata(provider.issuer)
    assert op.hits[DISCOVERY] == 1


@pytest.mark.parametrize(
    ("header", "ttl"),
    [
        (None, 3600),
        ("max-age=600", 600),
        ("public, max-age=10", 300),
        ("max-age=9999999", 86400),
        ("no-store", 300),
        ("no-cache, max-age=5000", 300),
        ("private", 3600),
        ("No-Store, max-age=5000", 300),  # directive names are case-insensitive (RFC 9111 5.2)
    ],
)
def test_cache_lifetime_honours_max_age_within_bounds(header, ttl):
    assert discovery.cache_ttl(header) == ttl


def test_expired_document_is_refetched(op, provider, monkeypatch):
    discovery.get_metadata(provider.issuer)
    doc = discovery.in_process(discovery.discovery_url(provider.issuer))
    doc.expires_at = 0
    caches["default"].clear()
    discovery.get_metadata(provider.issuer)
    assert op.hits[DISCOVERY] == 2


def test_stale_copy_is_used_when_the_provider_is_down(op, provider, caplog):
    discovery.get_metadata(provider.issuer)
    discovery.in_process(discovery.discovery_url(provider.issuer)).expires_at = 0
    caches["default"].clear()
    op.faults[DISCOVERY] = {"status": 503, "body": "down", "content_type": "text/plain"}
    assert discovery.get_metadata(provider.issuer)["issuer"] == op.issuer
    assert "using expired discovery document" in caplog.text


@pytest.fixture
def instant_expiry(settings):
    """Documents expire the moment they are fetched, as if their lifetime had passed."""
    settings.ACCOUNTS_OIDC_CACHE_MIN_TTL = settings.ACCOUNTS_OIDC_CACHE_MAX_TTL = 0


def test_in_an_outage_the_stale_copy_is_retried_at_most_every_retry_interval(op, provider, caplog, instant_expiry):
    """One failing refresh, then the stale copy serves every request until the retry is due: no hammering."""
    discovery.get_metadata(provider.issuer)
    op.faults[DISCOVERY] = {"status": 503, "body": "down", "content_type": "text/plain"}
    op.hits.clear()
    for _ in range(5):
        assert discovery.get_metadata(provider.issuer)["issuer"] == op.issuer
        discovery.forget_in_process()  # another process: it reads the shared copy's retry time too
    assert op.hits[DISCOVERY] == 1
    assert "next try in 30s" in caplog.text


def test_the_stale_copy_stands_in_only_within_the_stale_window(op, provider, settings, instant_expiry):
    settings.ACCOUNTS_OIDC_CACHE_STALE_WINDOW = 0
    discovery.get_metadata(provider.issuer)
    op.faults[DISCOVERY] = {"status": 503, "body": "down", "content_type": "text/plain"}
    with pytest.raises(ProviderUnavailable, match="discovery document"):
        discovery.get_metadata(provider.issuer)


def test_the_shared_copy_outlives_its_expiry_by_the_stale_window(op, provider):
    discovery.get_metadata(provider.issuer)
    doc = discovery.in_process(discovery.discovery_url(provider.issuer))
    assert doc.usable_until - doc.expires_at == 86400


def test_unreachable_provider_without_a_copy_raises(op, provider):
    op.faults[DISCOVERY] = {"close": True}
    with pytest.raises(ProviderUnavailable, match=r"^discovery document unreachable "):
        discovery.get_metadata(provider.issuer)


# --- keys ---------------------------------------------------------------------------------------


def test_steady_state_verification_fetches_nothing(op, provider):
    verify(op, provider, op.sign(claims_for(op)))
    before = dict(op.hits)
    for _ in range(5):
        verify(op, provider, op.sign(claims_for(op)))
    assert dict(op.hits) == before


def test_parsed_keys_are_reused_between_verifications(op, provider):
    first = discovery.get_keys(op.metadata["jwks_uri"]).keys
    second = discovery.get_keys(op.metadata["jwks_uri"]).keys
    assert first is second


def test_key_rotation_costs_exactly_one_jwks_fetch(op, provider):
    verify(op, provider, op.sign(claims_for(op)))
    assert op.hits["/jwks"] == 1
    op.rotate("RSA")
    assert verify(op, provider, op.sign(claims_for(op)))["sub"] == "user-1"
    assert op.hits["/jwks"] == 2
    verify(op, provider, op.sign(claims_for(op)))
    assert op.hits["/jwks"] == 2


def verify_logout(op, provider, token):
    return verify_logout_token(provider, token, jwks_uri=op.metadata["jwks_uri"])


def test_back_channel_unknown_kids_are_spaced_by_the_cooldown(op, provider, settings, skipping_clock):
    """Thirty ID tokens naming made-up keys at once: each waits out the cooldown (never longer) before
    its refetch, so the provider sees one refetch per cooldown, not thirty in a moment."""
    settings.ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN = 2.0
    verify(op, provider, op.sign(claims_for(op)))
    assert op.hits["/jwks"] == 1
    forged = [made_up_kid_token(claims_for(op), f"made-up-{i}") for i in range(30)]
    for token in forged:
        waited_before = skipping_clock.skipped
        with pytest.raises(TokenRejected, match=r"kid 'made-up-\d+' matches no RS256 key"):
            verify(op, provider, token)
        assert skipping_clock.skipped - waited_before <= 2.0
    # The first load, then one refetch per token, each a cooldown after the one before.
    assert op.hits["/jwks"] == 31
    assert 29 * 1.9 <= skipping_clock.skipped <= 29 * 2.0


class LaterClock:
    """``time`` as discovery sees it, ``ahead`` seconds later: a cooldown passes without sleeping."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def time(self) -> float:
        return time.time() + self.ahead

    def __getattr__(self, name: str):
        return getattr(time, name)


def test_a_rotation_within_the_back_channel_cooldown_waits_for_it_and_signs_in(op, provider, settings, skipping_clock):
    """Delay, don't deny: the new key appears moments after a refetch; the ID token waits, then refetches."""
    settings.ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN = 5
    verify(op, provider, op.sign(claims_for(op)))
    with pytest.raises(TokenRejected, match="matches no RS256 key"):
        verify(op, provider, made_up_kid_token(claims_for(op), "made-up"))  # a refetch: the cooldown starts
    assert skipping_clock.skipped == 0
    op.rotate("RSA")
    assert verify(op, provider, op.sign(claims_for(op)))["sub"] == "user-1"  # within the cooldown: waits
    assert op.hits["/jwks"] == 3
    assert 4.5 <= skipping_clock.skipped <= 5  # for what was left of the cooldown, no longer


def test_untrusted_unknown_kids_are_bounded_by_their_own_budget(op, provider, caplog):
    """Anyone can post a logout token: ten under made-up kids cause one refetch at most, and say so."""
    verify(op, provider, op.sign(claims_for(op)))
    for i in range(10):
        with pytest.raises(TokenRejected, match=r"logout token kid 'made-up-\d+' matches no RS256 key"):
            verify_logout(op, provider, made_up_kid_token(logout_claims(op), f"made-up-{i}"))
    assert op.hits["/jwks"] - 1 <= 1  # beyond the first load: one refetch at most
    assert "not refetching JWKS" in caplog.text and "for a token from anyone" in caplog.text


def test_untrusted_refetch_is_allowed_again_after_its_interval(op, provider, settings, monkeypatch):
    settings.ACCOUNTS_OIDC_JWKS_UNTRUSTED_REFETCH_INTERVAL = 5
    verify(op, provider, op.sign(claims_for(op)))
    with pytest.raises(TokenRejected, match="matches no RS256 key"):
        verify_logout(op, provider, made_up_kid_token(logout_claims(op), "made-up"))
    op.rotate("RSA")
    with pytest.raises(TokenRejected, match="matches no RS256 key"):
        verify_logout(op, provider, op.sign(logout_claims(op)))  # within the interval: held back
    monkeypatch.setattr(discovery, "time", LaterClock(6))
    assert verify_logout(op, provider, op.sign(logout_claims(op)))["sid"] == "op-session-1"
    assert op.hits["/jwks"] == 3


def test_untrusted_refetch_does_not_spend_the_back_channel_cooldown(op, provider):
    verify(op, provider, op.sign(claims_for(op)))
    with pytest.raises(TokenRejected, match="matches no RS256 key"):
        verify_logout(op, provider, made_up_kid_token(logout_claims(op), "made-up"))
    assert op.hits["/jwks"] == 2
    op.rotate("RSA")
    assert verify(op, provider, op.sign(claims_for(op)))["sub"] == "user-1"
    assert op.hits["/jwks"] == 3


@pytest.mark.services
def test_back_channel_refetch_adopts_an_untrusted_fetch_in_flight(op, provider):
    """One lock for both: an ID token meeting the new key while a logout token's refetch runs waits for it."""
    verify(op, provider, op.sign(claims_for(op)))
    op.rotate("RSA")
    op.faults["/jwks"] = {"delay": 0.5}
    outcome = []
    untrusted = threading.Thread(target=lambda: outcome.append(verify_logout(op, provider, op.sign(logout_claims(op)))))
    untrusted.start()
    deadline = time.monotonic() + 5
    while op.hits["/jwks"] < 2 and time.monotonic() < deadline:  # until its refetch reached the provider
        time.sleep(0.01)
    assert verify(op, provider, op.sign(claims_for(op)))["sub"] == "user-1"
    untrusted.join(timeout=5)
    assert outcome and outcome[0]["sid"] == "op-session-1"
    assert op.hits["/jwks"] == 2


def test_another_process_adopts_the_rotated_keys_without_fetching(op, provider):
    verify(op, provider, op.sign(claims_for(op)))
    stale = discovery.in_process(op.metadata["jwks_uri"])
    op.rotate("RSA")
    verify(op, provider, op.sign(claims_for(op)))  # "process A" refetches: 2 fetches in all
    discovery.remember_in_process(stale)  # "process B" still holds the old set
    verify(op, provider, op.sign(claims_for(op)))
    assert op.hits["/jwks"] == 2


@pytest.mark.services
def test_concurrent_unknown_kid_requests_share_one_fetch(op, provider):
    """Single flight: twenty requests meeting a new kid at once cause one JWKS fetch, and all succeed."""
    verify(op, provider, op.sign(claims_for(op)))
    op.rotate("RSA")
    op.faults["/jwks"] = {"delay": 0.3}  # keep the fetch in flight while the others arrive
    token = op.sign(claims_for(op))
    results, barrier = [], threading.Barrier(20)

    def worker():
        barrier.wait(timeout=5)
        try:
            results.append(verify(op, provider, token)["sub"])
        except Exception as exc:  # collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert results == ["user-1"] * 20
    assert op.hits["/jwks"] == 2


def test_oct_keys_in_the_jwks_are_ignored(op, provider):
    op.jwks_override = {"keys": [*op.jwks()["keys"], {"kty": "oct", "k": "c2VjcmV0", "kid": "shared"}]}
    keys = discovery.get_keys(op.metadata["jwks_uri"]).keys
    assert "shared" not in [k.kid for k in keys.keys]


def test_jwks_without_keys_list_is_refused(op, provider):
    op.jwks_override = {"not-keys": []}
    with pytest.raises(ProviderMisconfigured, match=r"^JWKS has no 'keys' list$"):
        discovery.get_keys(op.metadata["jwks_uri"])


@pytest.mark.parametrize("name", ["jwks_uri", "token_endpoint", "end_session_endpoint"])
def test_discovery_urls_with_control_characters_are_refused(op, provider, name):
    """Endpoint URLs end up in log lines: a newline in one would forge a second line."""
    op.metadata[name] = op.issuer + "/x\n2026-12-01 ERROR accounts forged"
    with pytest.raises(ProviderMisconfigured, match=f"{name} contains control characters"):
        discovery.get_metadata(provider.issuer)


# --- every endpoint is checked; a stand-in is shared for its whole stale window ----------------------
# Found by mutation testing (mutmut over accounts/oidc/discovery.py): nothing failed when the https
# check skipped an endpoint, or a stand-in's shared copy got another lifetime or its log line no URL.


@pytest.mark.parametrize(
    "name", ["authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint", "end_session_endpoint"]
)
def test_every_discovered_endpoint_must_be_https(op, provider, settings, name):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = False
    settings.DEBUG = True  # loopback http is allowed in debug, but not an endpoint on another host
    op.metadata[name] = "http://idp.example/" + name
    with pytest.raises(ProviderMisconfigured, match=rf"^{name} uses http:// \(idp.example\); only https is allowed$"):
        discovery.get_metadata(provider.issuer)


def test_discovery_lacking_several_required_names_is_refused_naming_each(op, provider):
    del op.metadata["token_endpoint"], op.metadata["jwks_uri"]
    with pytest.raises(ProviderMisconfigured, match=r"^discovery document lacks token_endpoint, jwks_uri$"):
        discovery.get_metadata(provider.issuer)


class TimeoutSpy:
    """The shared cache, remembering the timeout each key was last set with."""

    def __init__(self, cache):
        self.cache, self.timeouts = cache, {}

    def __getattr__(self, name):
        return getattr(self.cache, name)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, **kwargs):
        self.timeouts[key] = timeout
        return self.cache.set(key, value, timeout, **kwargs)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, **kwargs):
        self.timeouts[key] = timeout
        return self.cache.add(key, value, timeout, **kwargs)


def test_a_stand_in_is_shared_until_its_stale_window_ends_and_its_log_line_names_it(
    op, provider, settings, caplog, instant_expiry, monkeypatch
):
    """Other processes need the stand-in for the rest of the outage: evicted sooner (the cache's
    default timeout is minutes), they would fail sign-ins the stale window is there to keep working."""
    settings.ACCOUNTS_OIDC_CACHE_STALE_WINDOW = 7200
    url = discovery.discovery_url(provider.issuer)
    discovery.get_metadata(provider.issuer)
    spy = TimeoutSpy(discovery._cache())
    monkeypatch.setattr(discovery, "_cache", lambda: spy)
    op.faults[DISCOVERY] = {"status": 503, "body": "down", "content_type": "text/plain"}
    assert discovery.get_metadata(provider.issuer)["issuer"] == op.issuer
    reason = "discovery document answered HTTP 503"
    assert 7198 <= spy.timeouts[discovery._key("doc", url)] <= 7200
    warning = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("using expired"))
    assert warning == f"using expired discovery document for {url}, next try in 30s: refresh failed: {reason}"


@pytest.mark.parametrize(
    "issuer",
    ["https://idp.example", "https://idp.example/", "https://idp.example/tenants/X", "https://idp.example/tenants/X/"],
)
def test_the_well_known_url_follows_the_issuer_with_one_slash(issuer):
    assert discovery.discovery_url(issuer) == issuer.rstrip("/") + "/.well-known/openid-configuration"
    assert "//.well-known" not in discovery.discovery_url(issuer)


def test_a_plain_http_issuer_is_refused_by_name(db, settings):
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = False
    with pytest.raises(ProviderMisconfigured, match=r"^issuer uses http:// \(idp.example\); only https is allowed$"):
        discovery.get_metadata("http://idp.example")


def test_a_discovered_endpoint_that_is_not_a_string_is_refused_by_name(op, provider):
    op.metadata["userinfo_endpoint"] = ["https://idp.example/userinfo"]
    with pytest.raises(ProviderMisconfigured, match=r"^discovery document userinfo_endpoint is not a string$"):
        discovery.get_metadata(provider.issuer)


def test_a_refetch_held_back_is_logged_naming_the_key_set(op, provider, settings, caplog, skipping_clock):
    settings.ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN = 60
    verify(op, provider, op.sign(claims_for(op)))
    for kid in ("made-up-1", "made-up-2"):  # the first refetches, the second waits for the cooldown first
        with pytest.raises(TokenRejected):
            verify(op, provider, made_up_kid_token(claims_for(op), kid))
    url = op.metadata["jwks_uri"]
    assert any(
        re.fullmatch(
            rf"waiting [\d.]+s to refetch JWKS {re.escape(url)} for a token from back-channel: refetched [\d.]+s "
            r"ago, at most every 60.0s",
            r.getMessage(),
        )
        for r in caplog.records
    ), caplog.messages
    assert op.hits["/jwks"] == 3


# --- boundaries, budgets spent by another process, and the small API around the caches ----------------
# Found by a second mutation-testing pass over accounts/oidc/discovery.py: an instant-exact boundary
# could move, a refetch another process finished could be refused, and cached_data/forget could
# answer for the wrong copy, with no test failing.


class FrozenClock:
    """``time`` as discovery sees it, stopped at ``now`` until the test moves it: a boundary is hit exactly.

    A whole number of seconds, so that ``now + ttl`` and its difference with ``now`` are exact floats.
    """

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch) -> FrozenClock:
    frozen = FrozenClock()
    monkeypatch.setattr(discovery, "time", frozen)
    return frozen


def test_a_document_is_stale_from_the_instant_it_expires(op, provider, instant_expiry, clock):
    """A lifetime of zero means "ask again": not "reuse until the clock ticks"."""
    discovery.get_metadata(provider.issuer)
    discovery.get_metadata(provider.issuer)
    assert op.hits[DISCOVERY] == 2


def test_a_stale_copy_stands_in_until_not_at_the_end_of_its_window(op, provider, settings, instant_expiry, clock):
    settings.ACCOUNTS_OIDC_CACHE_STALE_WINDOW = 60
    discovery.get_metadata(provider.issuer)
    op.faults[DISCOVERY] = {"status": 503, "body": "down", "content_type": "text/plain"}
    clock.now += 59
    assert discovery.get_metadata(provider.issuer)["issuer"] == op.issuer  # within the window
    clock.now += 1  # the failure that stood the copy in is still remembered: no second call to say so
    with pytest.raises(ProviderUnavailable, match=r"failed 1.0s ago \(discovery document answered HTTP 503\)"):
        discovery.get_metadata(provider.issuer)


def test_a_stand_in_with_under_a_second_left_is_shared_for_one_second_not_longer(
    op, provider, settings, instant_expiry, clock, monkeypatch
):
    settings.ACCOUNTS_OIDC_CACHE_STALE_WINDOW = 60
    url = discovery.discovery_url(provider.issuer)
    discovery.get_metadata(provider.issuer)
    spy = TimeoutSpy(discovery._cache())
    monkeypatch.setattr(discovery, "_cache", lambda: spy)
    op.faults[DISCOVERY] = {"status": 503, "body": "down", "content_type": "text/plain"}
    clock.now += 59.5
    assert discovery.get_metadata(provider.issuer)["issuer"] == op.issuer
    assert spy.timeouts[discovery._key("doc", url)] == 1


def test_a_back_channel_refetch_is_allowed_again_the_instant_its_cooldown_ends(op, provider, settings, clock):
    settings.ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN = 5
    verify(op, provider, op.sign(claims_for(op)))
    with pytest.raises(TokenRejected, match="matches no RS256 key"):
        verify(op, provider, made_up_kid_token(claims_for(op), "made-up"))  # the cooldown starts now
    op.rotate("RSA")
    clock.now += 5
    assert verify(op, provider, op.sign(claims_for(op)))["sub"] == "user-1"
    assert op.hits["/jwks"] == 3


class AnotherProcessRefetches:
    """The shared cache, in which another process refetches the key set (spending ``origin``'s
    budget) just before this process calls ``method`` on ``key`` for the first time."""

    def __init__(self, cache, url: str, origin: discovery.KeyOrigin, method: str, key: str) -> None:
        self.cache, self.url, self.origin, self.trigger = cache, url, origin, (method, key)
        self.done = False

    def _maybe_refetch(self, method: str, key: str) -> None:
        if self.done or (method, key) != self.trigger:
            return
        self.done = True
        self.cache.set(self.origin.budget_key(self.url), time.time())
        discovery._fetch(self.url, what="JWKS")
        discovery.forget_in_process(self.url)  # it was the other process that fetched, not this one

    def get(self, key, *args, **kwargs):
        self._maybe_refetch("get", key)
        return self.cache.get(key, *args, **kwargs)

    def add(self, key, *args, **kwargs):
        self._maybe_refetch("add", key)
        return self.cache.add(key, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.cache, name)


@pytest.mark.parametrize("origin", list(discovery.KeyOrigin))
@pytest.mark.parametrize("moment", ["before the budget is read", "while the lock is being taken"])
def test_a_refetch_another_process_just_finished_is_adopted_not_refused(op, provider, monkeypatch, origin, moment):
    """The budget is spent by the very refetch that brought the new key: refusing it would fail the
    token the refetch was for, and refetching again would cost the provider a second fetch."""
    verify(op, provider, op.sign(claims_for(op)))
    url = op.metadata["jwks_uri"]
    method, key = (
        ("get", origin.budget_key(url)) if moment.startswith("before") else ("add", discovery._key("lock", url))
    )
    shared = AnotherProcessRefetches(discovery._cache(), url, origin, method, key)
    monkeypatch.setattr(discovery, "_cache", lambda: shared)
    op.rotate("RSA")
    if origin is discovery.KeyOrigin.BACK_CHANNEL:
        assert verify(op, provider, op.sign(claims_for(op)))["sub"] == "user-1"
    else:
        assert verify_logout(op, provider, op.sign(logout_claims(op)))["sid"] == "op-session-1"
    assert shared.done
    assert op.hits["/jwks"] == 2


def test_keys_another_process_refreshed_on_expiry_are_adopted_without_a_fetch(op, provider):
    """No budget was spent (the other process's copy had simply expired), yet the shared copy is newer: use it."""
    verify(op, provider, op.sign(claims_for(op)))
    stale = discovery.in_process(op.metadata["jwks_uri"])
    op.rotate("RSA")
    forget_this_process()
    caches["default"].clear()
    discovery.get_keys(op.metadata["jwks_uri"])  # "process A": its copy expired, it fetches the new set
    discovery.remember_in_process(stale)  # "process B" still holds the old set
    assert verify(op, provider, op.sign(claims_for(op)))["sub"] == "user-1"
    assert op.hits["/jwks"] == 2


def test_the_key_set_says_where_and_when_it_was_fetched(op, provider, clock):
    url = op.metadata["jwks_uri"]
    jwks = discovery.get_keys(url)
    doc = discovery.in_process(url)
    assert (jwks.url, jwks.version, jwks.fetched_at, jwks.expires_at) == (url, doc.version, clock.now, clock.now + 3600)


def test_cached_data_answers_from_this_process_else_the_shared_cache_else_none(op, provider):
    url = discovery.discovery_url(provider.issuer)
    discovery.get_metadata(provider.issuer)
    caches["default"].clear()
    assert discovery.cached_data(url)["issuer"] == op.issuer  # this process's copy
    forget_this_process()
    discovery.get_metadata(provider.issuer)
    forget_this_process()
    assert discovery.cached_data(url)["issuer"] == op.issuer  # the shared copy
    discovery.forget(url)
    assert discovery.cached_data(url) is None


def test_forgetting_one_document_keeps_the_others_in_this_process(op, provider):
    discovery.get_metadata(provider.issuer)
    discovery.get_keys(op.metadata["jwks_uri"])
    discovery.forget(op.metadata["jwks_uri"])
    assert discovery.in_process(op.metadata["jwks_uri"]) is None
    assert discovery.in_process(discovery.discovery_url(provider.issuer)) is not None


@pytest.fixture
def tenant_op():
    """A multi-tenant provider: configured as ``.../common/v2.0``, its metadata names ``.../{tenantid}/v2.0``."""
    with OpenIDProviderDouble(path="/common/v2.0") as double:
        double.metadata["issuer"] = double.base_url + "/{tenantid}/v2.0"
        yield double


def test_metadata_is_validated_with_the_clients_quirks_once_per_issuer_and_quirks(tenant_op, db, monkeypatch):
    validations = []
    real = discovery.validate_metadata
    monkeypatch.setattr(discovery, "validate_metadata", lambda *a, **kw: validations.append(kw) or real(*a, **kw))
    tenant = Quirks(tenant_issuer=True)
    for _ in range(3):
        assert discovery.get_metadata(tenant_op.issuer, quirks=tenant)["issuer"].endswith("/{tenantid}/v2.0")
    assert len(validations) == 1
    with pytest.raises(ProviderMisconfigured, match="configured issuer is"):  # the exception is the quirk's alone
        discovery.get_metadata(tenant_op.issuer)


def test_keys_the_app_cannot_use_are_skipped_one_at_a_time_and_an_unparsable_one_is_logged(op, provider, caplog):
    """Junk ahead of the good keys costs only itself: the keys after it still verify tokens."""
    op.add_key(OKPKey.generate_key("Ed25519", parameters={"kid": "okp-1", "use": "sig"}))
    junk = [
        "not a key",
        {"kty": "oct", "k": "c2VjcmV0", "kid": "shared"},
        {"kty": "RSA", "kid": "bad-1", "n": "!", "e": "AQAB"},
    ]
    op.jwks_override = {"keys": [*junk, *op.jwks()["keys"]]}
    keys = discovery.get_keys(op.metadata["jwks_uri"]).keys
    assert [k.kid for k in keys.keys] == ["rsa-1", "ec-1", "okp-1"]
    ignored = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ignoring")]
    assert ignored == ["ignoring an unparsable RSA key (kid='bad-1')"]


def test_a_copy_refreshed_by_another_process_keeps_this_processs_parsed_keys(op, provider):
    """Same version, later expiry: only the expiry is new, so the keys parsed for it stay (parsing costs)."""
    url = op.metadata["jwks_uri"]
    parsed = discovery.get_keys(url).keys
    mine = discovery.in_process(url)
    shared_expiry = mine.expires_at
    mine.expires_at = 0  # this process's copy expired; the shared one (same version) has not
    assert discovery.get_keys(url).keys is parsed
    assert discovery.in_process(url) is mine and mine.expires_at == shared_expiry
    assert op.hits["/jwks"] == 1


# --- the fetch lock: one fetch in flight per document, the others wait for it -------------------------


class SteppingClock:
    """``time`` as discovery sees it, where ``sleep`` sleeps not but moves the monotonic clock on, after
    first running ``during_sleep`` once: what another process does while this one waits happens at a
    known moment. The wall clock stands still, as in ``FrozenClock``."""

    def __init__(self) -> None:
        self.wall, self.mono = 1_800_000_000.0, 1000.0
        self.during_sleep = None

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.mono += seconds
        hook, self.during_sleep = self.during_sleep, None
        if hook is not None:
            hook()


@pytest.fixture
def stepping(monkeypatch) -> SteppingClock:
    clock = SteppingClock()
    monkeypatch.setattr(discovery, "time", clock)
    return clock


class OtherProcess:
    """Another process sharing the cache: it holds the fetch lock of ``url``, then fetches or gives up."""

    def __init__(self, url: str, what: str) -> None:
        self.url, self.what, self.lock_key = url, what, discovery._key("lock", url)
        assert caches["default"].add(self.lock_key, "theirs")

    def fetches(self, *, spending: discovery.KeyOrigin | None = None) -> None:
        if spending is not None:
            caches["default"].set(spending.budget_key(self.url), discovery.time.time())
        discovery._fetch(self.url, what=self.what)
        discovery.forget_in_process(self.url)  # what it fetched is in the shared cache, not in this process
        caches["default"].delete(self.lock_key)

    def gives_up(self) -> None:
        caches["default"].delete(self.lock_key)


def test_a_request_waits_for_the_fetch_in_flight_and_takes_its_result(op, provider, stepping):
    other = OtherProcess(discovery.discovery_url(provider.issuer), "discovery document")
    stepping.during_sleep = other.fetches
    started = stepping.mono
    assert discovery.get_metadata(provider.issuer)["issuer"] == op.issuer
    assert op.hits[DISCOVERY] == 1  # the other process's fetch: none of its own
    assert stepping.mono - started <= 0.06  # and it noticed within one poll (50 ms)


def test_a_request_fetches_itself_when_the_fetch_it_waited_for_came_to_nothing(op, provider, stepping, caplog):
    other = OtherProcess(discovery.discovery_url(provider.issuer), "discovery document")
    stepping.during_sleep = other.gives_up
    assert discovery.get_metadata(provider.issuer)["issuer"] == op.issuer
    assert op.hits[DISCOVERY] == 1
    url = discovery.discovery_url(provider.issuer)
    assert caplog.messages == [f"fetched discovery document {url} (cached 3600s)"]
    assert stepping.mono - 1000.0 <= 0.06


def test_a_request_waits_for_a_hung_fetch_only_until_the_fetch_wait_ends(op, provider, settings, stepping):
    """The lock holder died or hangs: after ``ACCOUNTS_OIDC_FETCH_WAIT`` the request fetches itself."""
    settings.ACCOUNTS_OIDC_FETCH_WAIT = 2.0
    OtherProcess(discovery.discovery_url(provider.issuer), "discovery document")
    assert discovery.get_metadata(provider.issuer)["issuer"] == op.issuer
    assert op.hits[DISCOVERY] == 1
    assert 2.0 <= stepping.mono - 1000.0 <= 2.06


def seconds_kept(timeout) -> float | None:
    """How long the shared cache keeps an entry set with ``timeout`` (None: for ever).

    Read from the timeout itself, not from ``get_backend_timeout``: that is an absolute time for the
    locmem and database caches but a relative one for Redis.
    """
    if timeout is DEFAULT_TIMEOUT:
        timeout = caches["default"].default_timeout
    return None if timeout is None else float(timeout)


class LockWatch(TimeoutSpy):
    """The shared cache, noting what other processes would read in the fetch lock while the document is
    written; ``take_over`` makes the lock another process's by then (ours expired during a slow fetch)."""

    def __init__(self, cache, url: str, *, take_over: bool = False) -> None:
        super().__init__(cache)
        self.doc_key, self.lock_key, self.take_over = discovery._key("doc", url), discovery._key("lock", url), take_over
        self.lock_during_fetch = "unseen"

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, **kwargs):
        if key == self.doc_key:
            self.lock_during_fetch = self.cache.get(self.lock_key)
            if self.take_over:
                self.cache.set(self.lock_key, "theirs")
        return super().set(key, value, timeout, **kwargs)


def test_the_fetch_lock_is_held_during_the_fetch_and_released_after(op, provider, settings, monkeypatch):
    """Held: others see a fetch in flight and wait for it. Bounded: a holder that dies blocks them for
    seconds only. Released: the next fetch need not wait for it to expire."""
    settings.ACCOUNTS_OIDC_FETCH_WAIT = 5.0
    url = discovery.discovery_url(provider.issuer)
    watch = LockWatch(discovery._cache(), url)
    monkeypatch.setattr(discovery, "_cache", lambda: watch)
    discovery.get_metadata(provider.issuer)
    assert watch.lock_during_fetch not in (None, "unseen")
    lifetime = seconds_kept(watch.timeouts[watch.lock_key])
    assert (
        lifetime is not None and settings.ACCOUNTS_OIDC_FETCH_WAIT < lifetime <= settings.ACCOUNTS_OIDC_FETCH_WAIT + 10
    )
    assert caches["default"].get(watch.lock_key) is None


def test_a_fetch_does_not_release_a_lock_another_process_took_over(op, provider, monkeypatch):
    url = discovery.discovery_url(provider.issuer)
    watch = LockWatch(discovery._cache(), url, take_over=True)
    monkeypatch.setattr(discovery, "_cache", lambda: watch)
    discovery.get_metadata(provider.issuer)
    assert caches["default"].get(watch.lock_key) == "theirs"


@pytest.mark.parametrize("origin", list(discovery.KeyOrigin))
def test_with_its_budget_spent_a_request_still_waits_for_the_refetch_in_flight(op, provider, stepping, origin):
    """The refetch that spent the budget is the one in flight: its result is what the token needs."""
    verify(op, provider, op.sign(claims_for(op)))
    stepping.wall += 1
    op.rotate("RSA")
    other = OtherProcess(op.metadata["jwks_uri"], "JWKS")
    caches["default"].set(origin.budget_key(op.metadata["jwks_uri"]), stepping.time())
    stepping.during_sleep = other.fetches
    if origin is discovery.KeyOrigin.BACK_CHANNEL:
        assert verify(op, provider, op.sign(claims_for(op)))["sub"] == "user-1"
    else:
        assert verify_logout(op, provider, op.sign(logout_claims(op)))["sid"] == "op-session-1"
    assert op.hits["/jwks"] == 2


def test_a_back_channel_refetch_goes_ahead_when_the_fetch_it_waited_for_came_to_nothing(op, provider, stepping):
    """The lock holder's own budget was spent (say, a logout token's), so it did not fetch: ours is not."""
    verify(op, provider, op.sign(claims_for(op)))
    stepping.wall += 1  # the copy at hand is older than the wait: only a fetch after it counts
    op.rotate("RSA")
    stepping.during_sleep = OtherProcess(op.metadata["jwks_uri"], "JWKS").gives_up
    assert verify(op, provider, op.sign(claims_for(op)))["sub"] == "user-1"
    assert op.hits["/jwks"] == 2


def test_an_unchanged_key_set_fetched_while_a_request_waited_is_not_fetched_again(op, provider, stepping):
    """A logout token's refetch found the same keys while an ID token under a made-up kid waited:
    the back channel's own refetch would fetch the very same set, so it is spared."""
    verify(op, provider, op.sign(claims_for(op)))
    stepping.wall += 1
    other = OtherProcess(op.metadata["jwks_uri"], "JWKS")
    stepping.during_sleep = lambda: other.fetches(spending=discovery.KeyOrigin.ANYONE)
    with pytest.raises(TokenRejected, match="kid 'made-up' matches no RS256 key"):
        verify(op, provider, made_up_kid_token(claims_for(op), "made-up"))
    assert op.hits["/jwks"] == 2


def test_a_key_set_fetch_that_hangs_is_waited_for_until_the_fetch_wait_ends(op, provider, settings, stepping):
    settings.ACCOUNTS_OIDC_FETCH_WAIT = 2.0
    verify(op, provider, op.sign(claims_for(op)))
    stepping.wall += 1
    op.rotate("RSA")
    OtherProcess(op.metadata["jwks_uri"], "JWKS")
    with pytest.raises(TokenRejected, match="matches no RS256 key"):
        verify(op, provider, op.sign(claims_for(op)))
    assert 2.0 <= stepping.mono - 1000.0 <= 2.06
    assert op.hits["/jwks"] == 1


class SpentWhileTakingTheLock(TimeoutSpy):
    """The shared cache, where another process refetches the same key set (spending ``origin``'s
    budget) just before this process takes the fetch lock; counting the locks this process takes."""

    def __init__(self, cache, url: str, origin: discovery.KeyOrigin) -> None:
        super().__init__(cache)
        self.url, self.origin, self.lock_key = url, origin, discovery._key("lock", url)
        self.armed, self.locks_taken = False, 0

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, **kwargs):
        if key == self.lock_key:
            if self.armed:
                self.armed = False
                self.cache.set(self.origin.budget_key(self.url), time.time())
                discovery._fetch(self.url, what="JWKS")
            self.locks_taken += 1
        return super().add(key, value, timeout, **kwargs)


def test_budgets_are_kept_for_at_least_their_interval_and_refusals_take_no_lock(
    op, provider, settings, monkeypatch, caplog
):
    """A refusal takes no lock (others would wait on a fetch that is not happening); a refusal found
    only once the lock is taken is logged as any other; a budget outlives its interval, however long."""
    settings.ACCOUNTS_OIDC_JWKS_UNTRUSTED_REFETCH_INTERVAL = 600
    url = op.metadata["jwks_uri"]
    origin = discovery.KeyOrigin.ANYONE
    verify(op, provider, op.sign(claims_for(op)))
    watch = SpentWhileTakingTheLock(discovery._cache(), url, origin)
    monkeypatch.setattr(discovery, "_cache", lambda: watch)
    with pytest.raises(TokenRejected, match="matches no RS256 key"):
        verify_logout(op, provider, made_up_kid_token(logout_claims(op), "made-up-1"))  # refetches
    lifetime = seconds_kept(watch.timeouts[origin.budget_key(url)])
    assert lifetime is None or lifetime >= 600
    assert watch.locks_taken == 1
    with pytest.raises(TokenRejected, match="matches no RS256 key"):
        verify_logout(op, provider, made_up_kid_token(logout_claims(op), "made-up-2"))  # refused
    assert watch.locks_taken == 1
    caches["default"].delete(origin.budget_key(url))
    watch.armed = True
    with pytest.raises(TokenRejected, match="matches no RS256 key"):
        verify_logout(op, provider, made_up_kid_token(logout_claims(op), "made-up-3"))  # refused under the lock
    assert (watch.locks_taken, op.hits["/jwks"]) == (2, 3)  # the first load, our refetch, the other's
    refusal = re.compile(
        rf"not refetching JWKS {re.escape(url)} for a token from anyone: refetched [\d.]+s ago, at most every 600.0s"
    )
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("not refetching")]
    assert len(refusals) == 2 and all(refusal.fullmatch(m) for m in refusals), refusals


def test_a_fetched_document_is_shared_for_its_max_age_and_the_stale_window_and_logged(
    op, provider, settings, caplog, monkeypatch
):
    """Evicted sooner, other processes would fetch it again (or lack it in an outage); kept for ever, the
    shared cache would fill with documents nobody can use."""
    settings.ACCOUNTS_OIDC_CACHE_STALE_WINDOW = 7200
    op.cache_control = "max-age=600"
    url = discovery.discovery_url(provider.issuer)
    spy = TimeoutSpy(discovery._cache())
    monkeypatch.setattr(discovery, "_cache", lambda: spy)
    discovery.get_metadata(provider.issuer)
    doc = discovery.in_process(url)
    assert (doc.expires_at - doc.fetched_at, doc.usable_until - doc.fetched_at) == (600, 7800)
    assert spy.timeouts[discovery._key("doc", url)] == 7800
    assert caplog.messages == [f"fetched discovery document {url} (cached 600s)"]


def test_a_document_served_with_its_members_reordered_is_the_same_version(op, provider):
    """Providers serialise their JSON in any order: a reordering is no new key set to adopt or parse."""
    url = op.metadata["jwks_uri"]
    before = discovery.get_keys(url)
    op.jwks_override = {"keys": [dict(reversed(jwk.items())) for jwk in op.jwks()["keys"]]}
    discovery.forget(url)
    assert discovery.get_keys(url).version == before.version


def test_in_an_outage_the_newest_stale_copy_stands_in(op, provider, instant_expiry, clock):
    """This process still holds an older copy; another process has fetched a newer one since."""
    url = discovery.discovery_url(provider.issuer)
    discovery.get_metadata(provider.issuer)
    older = discovery.in_process(url)
    op.metadata["token_endpoint"] = op.issuer + "/token-2"
    clock.now += 1
    forget_this_process()
    discovery.get_metadata(provider.issuer)  # "another process": the newer copy is the shared one
    discovery.forget_in_process()
    discovery.remember_in_process(older)
    op.faults[DISCOVERY] = {"status": 503, "body": "down", "content_type": "text/plain"}
    clock.now += 1
    assert discovery.get_metadata(provider.issuer)["token_endpoint"] == op.issuer + "/token-2"


def test_a_refetch_that_finds_the_same_key_set_reports_no_newer_one(op, provider):
    """``None`` tells the caller the kid is unknown for good; the same set again would be matched in vain."""
    url = op.metadata["jwks_uri"]
    seen = discovery.get_keys(url)
    assert discovery.keys_after_unknown_kid(url, seen, origin=discovery.KeyOrigin.BACK_CHANNEL) is None
    assert op.hits["/jwks"] == 2


def test_a_request_takes_the_result_of_the_fetch_it_waits_for_before_the_lock_is_released(op, provider, stepping):
    """The holder writes the document, then releases its lock: the waiter need not wait for the second."""
    url = discovery.discovery_url(provider.issuer)
    other = OtherProcess(url, "discovery document")

    def fetched_but_still_locked():
        discovery._fetch(url, what="discovery document")
        discovery.forget_in_process(url)

    stepping.during_sleep = fetched_but_still_locked
    assert discovery.get_metadata(provider.issuer)["issuer"] == op.issuer
    assert stepping.mono - 1000.0 <= 0.06
    assert caches["default"].get(other.lock_key) == "theirs"


class FinishesBetweenTwoReads(TimeoutSpy):
    """The shared cache, where the other process's fetch finishes just as this one reads the lock:
    after it found no document, before it finds the lock free."""

    def __init__(self, cache, other: OtherProcess) -> None:
        super().__init__(cache)
        self.other, self.done = other, False

    def get(self, key, *args, **kwargs):
        if key == self.other.lock_key and not self.done:
            self.done = True
            self.other.fetches()
        return self.cache.get(key, *args, **kwargs)


def test_a_fetch_that_finished_between_two_reads_of_the_waiter_is_still_taken(op, provider, stepping, monkeypatch):
    other = OtherProcess(discovery.discovery_url(provider.issuer), "discovery document")
    shared = FinishesBetweenTwoReads(discovery._cache(), other)
    monkeypatch.setattr(discovery, "_cache", lambda: shared)
    assert discovery.get_metadata(provider.issuer)["issuer"] == op.issuer
    assert shared.done and op.hits[DISCOVERY] == 1


# --- delay, don't deny; and a provider that hangs costs one call --------------------------------------


def test_tokens_anyone_can_post_never_wait_for_their_budget(op, provider, settings, skipping_clock):
    """Only the back channel waits: a logout token under a made-up kid, its budget spent, is refused at once."""
    settings.ACCOUNTS_OIDC_JWKS_UNTRUSTED_REFETCH_INTERVAL = 5
    verify(op, provider, op.sign(claims_for(op)))
    for i in range(5):
        with pytest.raises(TokenRejected, match="matches no RS256 key"):
            verify_logout(op, provider, made_up_kid_token(logout_claims(op), f"made-up-{i}"))
    assert skipping_clock.skipped == 0
    assert op.hits["/jwks"] == 2


def test_a_back_channel_token_whose_kid_a_fetch_since_its_arrival_lacks_is_refused_without_waiting(
    op, provider, settings, skipping_clock, monkeypatch
):
    """The set fetched after the token arrived is as fresh as a fetch of its own: waiting could not help."""
    settings.ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN = 5
    url = op.metadata["jwks_uri"]
    verify(op, provider, op.sign(claims_for(op)))
    real = discovery._last_refetch_age

    def another_process_refetches_first(url_, origin):
        age = real(url_, origin)
        if age is None:  # the first look: another process refetches (same keys) and spends the cooldown
            caches["default"].set(origin.budget_key(url_), discovery.time.time())
            discovery._fetch(url_, what="JWKS")
            return real(url_, origin)
        return age

    monkeypatch.setattr(discovery, "_last_refetch_age", another_process_refetches_first)
    with pytest.raises(TokenRejected, match="kid 'made-up' matches no RS256 key"):
        verify(op, provider, made_up_kid_token(claims_for(op), "made-up"))
    assert skipping_clock.skipped == 0
    assert op.hits["/jwks"] == 2
    assert discovery.in_process(url) is not None


def test_a_failed_fetch_is_remembered_in_the_shared_cache_for_other_processes(op, provider):
    op.faults[DISCOVERY] = {"status": 503, "body": "down", "content_type": "text/plain"}
    with pytest.raises(ProviderUnavailable, match=r"^discovery document answered HTTP 503$"):
        discovery.get_metadata(provider.issuer)
    assert isinstance(caches["default"].get(discovery._key("failed", discovery.discovery_url(provider.issuer))), dict)
    forget_this_process()  # another process: only the shared cache
    with pytest.raises(ProviderRecentlyFailed, match=r"failed [\d.]+s ago \(discovery document answered HTTP 503\)"):
        discovery.get_metadata(provider.issuer)
    assert op.hits[DISCOVERY] == 1


def test_failures_are_remembered_for_the_setting_give_or_take_a_jitter(op, provider, settings, monkeypatch):
    """Jittered, so the documents and providers that failed together are not all asked again at once."""
    settings.ACCOUNTS_OIDC_FETCH_FAILURE_TTL = 10
    spy = TimeoutSpy(discovery._cache())
    monkeypatch.setattr(discovery, "_cache", lambda: spy)
    op.faults[DISCOVERY] = {"status": 503, "body": "down", "content_type": "text/plain"}
    url = discovery.discovery_url(provider.issuer)
    retries = set()
    for _ in range(20):
        with pytest.raises(ProviderUnavailable):
            discovery.get_metadata(provider.issuer)
        with pytest.raises(ProviderRecentlyFailed) as remembered:
            discovery.get_metadata(provider.issuer)
        retries.add(remembered.value.retry_after)
        assert 8 <= spy.timeouts[discovery._key("failed", url)] <= 12
        discovery.forget(url)  # as `oidc_provider refresh` does: ask again now
    assert op.hits[DISCOVERY] == 20
    assert len(retries) > 1 and retries <= set(range(8, 13)), retries


def test_a_zero_failure_ttl_remembers_nothing(op, provider, settings):
    settings.ACCOUNTS_OIDC_FETCH_FAILURE_TTL = 0
    op.faults[DISCOVERY] = {"status": 503, "body": "down", "content_type": "text/plain"}
    for _ in range(3):
        with pytest.raises(ProviderUnavailable, match=r"^discovery document answered HTTP 503$"):
            discovery.get_metadata(provider.issuer)
    assert op.hits[DISCOVERY] == 3


def test_parallel_requests_to_a_hanging_provider_make_one_call_and_all_fail_fast(db, settings):
    """Six at once: one holds the fetch lock and times out; the others wait for it, then see its failure."""
    settings.ACCOUNTS_OIDC_HTTP_TIMEOUT = (0.3, 0.3)
    with HangingServer() as hanging:
        outcomes: list[tuple[str, float]] = []

        def attempt() -> None:
            started = time.monotonic()
            try:
                discovery.get_metadata(hanging.base_url)
                outcomes.append(("fetched", time.monotonic() - started))
            except ProviderUnavailable as exc:
                outcomes.append((exc.code, time.monotonic() - started))

        threads = [threading.Thread(target=attempt) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert hanging.accepted == 1
    assert sorted(code for code, _ in outcomes) == ["provider_timeout"] + ["provider_unavailable"] * 5
    assert all(seconds < 1 for _, seconds in outcomes), outcomes


def test_a_newer_set_from_another_process_that_still_lacks_the_kid_is_not_the_last_word(
    op, provider, settings, skipping_clock
):
    """Two rotations in moments: another process refetched after the first (spending the cooldown), this
    process still holds the set before it, and the token is signed with the second rotation's key.
    Adopting the other process's set is not enough: the token waits out the cooldown and refetches."""
    settings.ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN = 2
    url = op.metadata["jwks_uri"]
    verify(op, provider, op.sign(claims_for(op)))
    before_rotations = discovery.in_process(url)
    op.rotate("RSA")
    caches["default"].set(discovery.KeyOrigin.BACK_CHANNEL.budget_key(url), discovery.time.time())
    discovery._fetch(url, what="JWKS")  # "another process" refetched after the first rotation
    discovery.forget_in_process(url)
    discovery.remember_in_process(before_rotations)  # this process still holds the set before it
    op.rotate("RSA")
    assert verify(op, provider, op.sign(claims_for(op)))["sub"] == "user-1"
    assert op.hits["/jwks"] == 3
    assert 1.5 <= skipping_clock.skipped <= 2
