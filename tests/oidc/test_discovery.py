"""Discovery and JWKS: validated, cached across processes, refetched on key rotation within budgets."""

from __future__ import annotations

import re
import threading
import time

import pytest
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from accounts.errors import ProviderMisconfigured, ProviderUnavailable, TokenRejected
from accounts.oidc import discovery
from accounts.oidc.tokens import verify_id_token, verify_logout_token
from tests.conftest import claims_for, logout_claims, made_up_kid_token

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


def test_back_channel_unknown_kids_are_held_back_by_the_cooldown(op, provider, settings):
    """Thirty ID tokens naming made-up keys within moments: one refetch per cooldown, not thirty."""
    settings.ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN = 2.0
    verify(op, provider, op.sign(claims_for(op)))
    assert op.hits["/jwks"] == 1
    forged = [made_up_kid_token(claims_for(op), f"made-up-{i}") for i in range(30)]
    started = time.monotonic()
    for token in forged:
        with pytest.raises(TokenRejected, match=r"kid 'made-up-\d+' matches no RS256 key"):
            verify(op, provider, token)
    elapsed = time.monotonic() - started
    # Thirty refusals take milliseconds: the first load and one refetch (one more per cooldown passed).
    assert 2 <= op.hits["/jwks"] <= 2 + int(elapsed // 2.0)


class LaterClock:
    """``time`` as discovery sees it, ``ahead`` seconds later: a cooldown passes without sleeping."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def time(self) -> float:
        return time.time() + self.ahead

    def __getattr__(self, name: str):
        return getattr(time, name)


def test_back_channel_refetch_is_allowed_again_after_the_cooldown(op, provider, settings, monkeypatch):
    settings.ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN = 5  # long enough for a loaded machine, passed by the clock
    verify(op, provider, op.sign(claims_for(op)))
    with pytest.raises(TokenRejected, match="matches no RS256 key"):
        verify(op, provider, made_up_kid_token(claims_for(op), "made-up"))  # a refetch: the cooldown starts
    op.rotate("RSA")
    rotated = op.sign(claims_for(op))
    with pytest.raises(TokenRejected, match="matches no RS256 key"):
        verify(op, provider, rotated)  # within the cooldown: held back
    assert op.hits["/jwks"] == 2
    monkeypatch.setattr(discovery, "time", LaterClock(6))
    assert verify(op, provider, rotated)["sub"] == "user-1"
    assert op.hits["/jwks"] == 3


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
    with pytest.raises(ProviderMisconfigured, match="no 'keys' list"):
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


def test_a_refetch_held_back_is_logged_naming_the_key_set(op, provider, settings, caplog):
    settings.ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN = 60
    verify(op, provider, op.sign(claims_for(op)))
    for kid in ("made-up-1", "made-up-2"):  # the first refetches, the second is held back
        with pytest.raises(TokenRejected):
            verify(op, provider, made_up_kid_token(claims_for(op), kid))
    url = op.metadata["jwks_uri"]
    assert any(
        re.fullmatch(
            rf"not refetching JWKS {re.escape(url)} for a token from back-channel: refetched [\d.]+s ago, "
            r"at most every 60.0s",
            r.getMessage(),
        )
        for r in caplog.records
    ), caplog.messages
