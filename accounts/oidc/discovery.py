"""Provider metadata and signing keys: fetched rarely, shared by every process, parsed once.

Two levels of caching keep a login free of network calls in steady state:

* the JSON documents (discovery, JWKS) live in Django's cache, so with Redis every process and
  every server shares one copy, for the provider's Cache-Control max-age bounded by
  ``ACCOUNTS_OIDC_CACHE_MIN_TTL`` / ``_MAX_TTL``;
* each process memoises what it read, plus the parsed ``KeySet`` (importing keys costs ~200 µs,
  verifying a signature ~25 µs), keyed by the document's URL and content hash.

A token whose ``kid`` is not in the key set may mean the provider rotated its keys, or may be an
attacker's invention; which is likelier depends on where the token came from (``KeyOrigin``).
``keys_after_unknown_kid`` first adopts a newer copy another process already fetched, and
otherwise refetches, with a lock in the shared cache so concurrent requests wait for that one
fetch, within a budget per origin and key set:

* a token from the back channel (ID token, signed userinfo) may always cause a refetch, spaced
  by ``ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN`` (seconds) against a misbehaving provider. Delay, don't
  deny: a token that meets the cooldown waits for it to end (single-flight with any fetch in
  flight, across processes through the shared lock) and then refetches; it is refused only if the
  fresh set still lacks its kid;
* a token anyone can submit (logout token, bearer token) gets its own, stricter budget,
  ``ACCOUNTS_OIDC_JWKS_UNTRUSTED_REFETCH_INTERVAL``, which never delays the back channel's; it is
  refused when that budget is spent, and never waits for it.

A fetch that fails (unreachable, timed out, an error answer, garbage) is remembered per URL in the
shared cache for ``ACCOUNTS_OIDC_FETCH_FAILURE_TTL`` seconds, give or take a jitter: meanwhile a
request that needs the document and has no copy of it fails at once (``ProviderRecentlyFailed``)
instead of calling again, so a provider that hangs costs one call per period, not one per request.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import math
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import caches
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization

from ..conf import conf
from ..errors import ProviderMisconfigured, ProviderRecentlyFailed, ProviderUnavailable, SignInError
from .http import request_json, require_secure_url
from .quirks import STANDARD, Quirks

logger = logging.getLogger(__name__)

_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
_CACHE_PREFIX = "oidc_signin:oidc:"


@dataclass
class Document:
    """A fetched JSON document, as shared through the cache."""

    url: str
    data: dict[str, Any]
    version: str  # content hash: tells two copies apart without comparing them
    fetched_at: float
    expires_at: float
    #: Until when an expired copy may stand in while the provider cannot be reached (see
    #: ``ACCOUNTS_OIDC_CACHE_STALE_WINDOW``); 0 for copies cached before this existed.
    usable_until: float = 0.0
    #: When the fetch that brought this copy was sent: a fetch sent after a token arrived is as fresh
    #: as one of the token's own (0 for copies cached before this existed).
    requested_at: float = 0.0
    #: Parsed key set (JWKS documents) -- parsed once per process and version.
    keys: KeySet | None = field(default=None, compare=False)
    #: For which issuer and quirks the metadata was validated (discovery documents): once per process and version.
    validated_for: tuple[str, Quirks, tuple[str, ...]] | None = field(default=None, compare=False)

    def fresh(self, now: float | None = None) -> bool:
        return (now or time.time()) < self.expires_at

    def to_cache(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "version": self.version,
            "fetched_at": self.fetched_at,
            "expires_at": self.expires_at,
            "usable_until": self.usable_until,
            "requested_at": self.requested_at,
        }

    def usable(self, now: float) -> bool:
        """Whether the copy may still stand in for a document the provider cannot serve right now."""
        return now < max(self.usable_until, self.expires_at)


_memo: dict[str, Document] = {}
_memo_lock = threading.Lock()


def _cache():
    return caches[conf.OIDC_CACHE_ALIAS]


def _key(kind: str, url: str) -> str:
    return _CACHE_PREFIX + kind + ":" + hashlib.sha256(url.encode()).hexdigest()


def cache_ttl(cache_control: str | None) -> int:
    """Seconds to keep a document: the provider's max-age, bounded; no-store/no-cache get the minimum."""
    low, high = conf.OIDC_CACHE_MIN_TTL, conf.OIDC_CACHE_MAX_TTL
    if not cache_control:
        return max(low, min(high, conf.OIDC_CACHE_DEFAULT_TTL))
    if re.search(r"no-store|no-cache", cache_control, re.IGNORECASE):
        return low
    match = _MAX_AGE.search(cache_control)
    age = int(match.group(1)) if match else conf.OIDC_CACHE_DEFAULT_TTL
    return max(low, min(high, age))


def _shared(url: str) -> Document | None:
    raw = _cache().get(_key("doc", url))
    if not isinstance(raw, dict):
        return None
    return Document(url=url, **raw)


def _remember(doc: Document) -> Document:
    with _memo_lock:
        current = _memo.get(doc.url)
        if current is not None and current.version == doc.version:
            current.expires_at = max(current.expires_at, doc.expires_at)  # keep its parsed keys
            return current
        _memo[doc.url] = doc
        return doc


def _fetch(url: str, *, what: str) -> Document:
    requested = time.time()
    try:
        resp = request_json("GET", url, what=what)
    except ProviderUnavailable as exc:
        _remember_failure(url, reason=exc.reason)
        raise
    now = time.time()
    ttl = cache_ttl(resp.headers.get("Cache-Control"))
    canonical = json.dumps(resp.data, sort_keys=True, separators=(",", ":"))
    window = conf.OIDC_CACHE_STALE_WINDOW
    doc = Document(
        url=url,
        data=resp.data,
        version=hashlib.sha256(canonical.encode()).hexdigest(),
        fetched_at=now,
        expires_at=now + ttl,
        usable_until=now + ttl + window,
        requested_at=requested,
    )
    # Kept past its expiry, for the stale window: every process can fall back on it in an outage.
    _cache().set(_key("doc", url), doc.to_cache(), timeout=math.ceil(ttl + window))
    logger.info("fetched %s %s (cached %ss)", what, url, ttl)
    return _remember(doc)


def _remember_failure(url: str, *, reason: str) -> None:
    """Note in the shared cache that fetching ``url`` just failed, for ``ACCOUNTS_OIDC_FETCH_FAILURE_TTL``.

    The period is jittered (0.8 to 1.2 times the setting) so that the documents of a provider, and
    the providers of a site, that failed together are not all asked again in the same instant. The
    failing request logs its own error; the requests that meet the memory log theirs.
    """
    ttl = float(conf.OIDC_FETCH_FAILURE_TTL)
    if ttl <= 0:
        return
    hold = ttl * random.uniform(0.8, 1.2)  # noqa: S311 -- spreads retries, nothing secret
    memory = {"at": time.time(), "until": time.time() + hold, "reason": reason}
    _cache().set(_key("failed", url), memory, timeout=math.ceil(hold))


def _raise_if_failed_recently(url: str, *, what: str) -> None:
    """Raise ``ProviderRecentlyFailed`` while a failed fetch of ``url`` is remembered (see above)."""
    memory = _cache().get(_key("failed", url))
    if not isinstance(memory, dict):
        return
    now = time.time()
    left = float(memory.get("until", 0)) - now
    if left <= 0:
        return
    ago = max(now - float(memory.get("at", now)), 0.0)
    raise ProviderRecentlyFailed(
        f"{what} {url} failed {ago:.1f}s ago ({memory.get('reason', '?')}); not asked again for {left:.1f}s",
        retry_after=math.ceil(left),
    )


class KeyOrigin(enum.Enum):
    """Where a token came from, which decides how far an unknown ``kid`` in it is believed.

    A key id is read before the signature can be checked, so it is whatever the sender wrote.
    Whether a refetch of the key set is worth it therefore depends on who the sender could be:

    * ``BACK_CHANNEL`` -- the token is the answer to our own request to the provider (the token
      endpoint's ID token, a signed userinfo response), over a TLS connection we opened to a host
      we authenticated. Nobody else could have put it there, so an unknown kid is evidence that the
      provider rotated its keys: a refetch is always allowed, spaced by a cooldown of seconds
      (``ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN``) in case the provider misbehaves. A token that meets
      the cooldown waits for it to end (``waits``) and then refetches: refusing it would fail a
      real sign-in after a second rotation, or after a refetch some other token caused.
    * ``ANYONE`` -- the token was handed to us by whoever sent a request (a back-channel logout
      POST, a bearer access token). Its kid may be invented to make us fetch, so its refetches get
      their own budget (``ACCOUNTS_OIDC_JWKS_UNTRUSTED_REFETCH_INTERVAL``) that such requests can
      spend but that is never the back channel's: an anonymous POST cannot block key rotation.
      Such a token never waits for its budget: it is refused at once.

    Both share the fetch lock: a fetch in flight is a real fetch, so either kind may wait for it.
    """

    BACK_CHANNEL = "back-channel"
    ANYONE = "anyone"

    @property
    def waits(self) -> bool:
        """Whether a token of this origin that meets its spent budget waits for it, rather than being refused."""
        return self is KeyOrigin.BACK_CHANNEL

    @property
    def refetch_interval(self) -> float:
        """Fewest seconds between two refetches of one key set for tokens of this origin."""
        if self is KeyOrigin.BACK_CHANNEL:
            return float(conf.OIDC_JWKS_REFETCH_COOLDOWN)
        return float(conf.OIDC_JWKS_UNTRUSTED_REFETCH_INTERVAL)

    def budget_key(self, url: str) -> str:
        """Shared-cache key holding when this origin last refetched ``url`` (one per origin)."""
        kind = "refetch-cooldown" if self is KeyOrigin.BACK_CHANNEL else "refetch-untrusted"
        return _key(kind, url)


def _last_refetch_age(url: str, origin: KeyOrigin) -> float | None:
    """Seconds since ``origin`` last refetched ``url``, if that is within its interval, else None."""
    last = _cache().get(origin.budget_key(url))
    if not isinstance(last, int | float):
        return None
    age = time.time() - last
    return age if age < origin.refetch_interval else None  # a clock ahead of ours counts as recent


def _newer_shared(url: str, seen_version: str | None) -> Document | None:
    """The shared copy of ``url`` if it is not ``seen_version`` (another process fetched it), else None."""
    shared = _shared(url)
    if shared is not None and shared.version != seen_version:
        return _remember(shared)
    return None


def _fetched_since(url: str, moment: float) -> bool:
    """Whether the shared copy of ``url`` was requested at or after ``moment``: as fresh as a fetch of ours."""
    shared = _shared(url)
    return shared is not None and shared.requested_at >= moment


def _newer_or_refused(
    url: str, *, what: str, origin: KeyOrigin, age: float, seen_version: str | None
) -> Document | None:
    """The budget is spent; but the refetch that spent it may have just finished, with what we came for."""
    newer = _newer_shared(url, seen_version)
    if newer is not None:
        return newer
    _refuse_refetch(url, what=what, origin=origin, age=age)
    return None


def _wait_out_cooldown(url: str, *, what: str, origin: KeyOrigin, age: float) -> None:
    """Delay, don't deny: sleep until ``origin``'s refetch interval, ``age`` seconds old, has passed.

    Bounded by the interval itself, whatever the clocks say (a budget written by a clock ahead of
    ours has a negative age).
    """
    interval = origin.refetch_interval
    pause = min(max(interval - age, 0.0), interval)
    logger.info(
        "waiting %.2fs to refetch %s %s for a token from %s: refetched %.1fs ago, at most every %ss",
        pause,
        what,
        url,
        origin.value,
        age,
        interval,
    )
    time.sleep(pause)


def _refuse_refetch(url: str, *, what: str, origin: KeyOrigin, age: float) -> None:
    logger.warning(
        "not refetching %s %s for a token from %s: refetched %.1fs ago, at most every %ss",
        what,
        url,
        origin.value,
        age,
        origin.refetch_interval,
    )


def _fetch_single_flight(url: str, *, what: str, seen_version: str | None, origin: KeyOrigin | None) -> Document | None:
    """Fetch ``url`` once across all processes; others wait for the result.

    Returns a document other than ``seen_version`` when one is (or becomes) available, else
    ``None``. With an ``origin``, a fetch must also fit that origin's budget (see ``KeyOrigin``):
    a back-channel token whose budget is spent waits (once) for it to end, then refetches unless a
    fetch sent since it arrived already answered; any other is refused. A request that waited on
    another's fetch takes its result as its own; if the lock holder did not fetch (its budget was
    spent), the waiter tries again within its own budget. A failure of the lock holder's fetch, or
    one remembered from moments ago, raises ``ProviderRecentlyFailed`` instead of a call of our own.
    """
    cache = _cache()
    lock_key = _key("lock", url)
    wait = conf.OIDC_FETCH_WAIT
    started, deadline = time.time(), time.monotonic() + wait
    waited = False  # whether this request waited out its cooldown already: it does so once at most
    while True:
        _raise_if_failed_recently(url, what=what)
        if origin is not None and not waited:
            age = _last_refetch_age(url, origin)
            if age is not None and cache.get(lock_key) is None:  # spent, and nothing in flight to wait for
                if not origin.waits:
                    return _newer_or_refused(url, what=what, origin=origin, age=age, seen_version=seen_version)
                newer = _newer_shared(url, seen_version)
                if newer is not None or _fetched_since(url, started):
                    return newer  # None: a fetch sent after this token arrived found no newer set
                _wait_out_cooldown(url, what=what, origin=origin, age=age)
                waited, deadline = True, time.monotonic() + wait
                continue
        token = uuid.uuid4().hex
        if cache.add(lock_key, token, timeout=int(wait) + 5):
            try:
                if origin is not None:
                    # Again: another process may have fetched meanwhile.
                    age = None if waited else _last_refetch_age(url, origin)
                    if age is not None:
                        if not origin.waits:
                            return _newer_or_refused(url, what=what, origin=origin, age=age, seen_version=seen_version)
                        continue  # the lock is released (finally), and the loop waits out the cooldown
                    if waited:
                        newer = _newer_shared(url, seen_version)
                        if newer is not None or _fetched_since(url, started):
                            return newer
                    # Spent before fetching, so a provider that fails or hangs is not asked again at once.
                    cache.set(origin.budget_key(url), time.time(), timeout=math.ceil(origin.refetch_interval) + 1)
                _raise_if_failed_recently(url, what=what)  # a fetch may have failed while we took the lock
                doc = _fetch(url, what=what)
                return doc if doc.version != seen_version else None
            finally:
                if cache.get(lock_key) == token:
                    cache.delete(lock_key)
        while time.monotonic() < deadline:
            time.sleep(0.05)
            shared = _shared(url)
            if shared is not None and shared.version != seen_version:
                return _remember(shared)
            if cache.get(lock_key) is None:
                break
        shared = _shared(url)
        if shared is not None and shared.version != seen_version:
            return _remember(shared)
        _raise_if_failed_recently(url, what=what)  # the fetch we waited for failed: ours would too
        if origin is None or time.monotonic() >= deadline:
            return None
        if shared is not None and shared.requested_at >= started:
            return None  # fetched while we waited: as fresh as a fetch of our own would be


def load_document(url: str, *, what: str) -> Document:
    """The current document at ``url``: from this process, else the shared cache, else the network.

    If a refresh fails while an expired copy is at hand, the expired copy is used (and logged): a
    provider's outage should not take sign-in down with it. It stands in for a bounded time, at
    most ``ACCOUNTS_OIDC_CACHE_STALE_WINDOW`` seconds past its expiry, and the provider is asked
    again at most every ``ACCOUNTS_OIDC_CACHE_RETRY_AFTER_FAILURE`` seconds, by one request of
    one process: an outage is not answered by every sign-in hammering a provider that is down.
    """
    doc = _memo.get(url)
    if doc is not None and doc.fresh():
        return doc
    shared = _shared(url)
    if shared is not None and shared.fresh():
        return _remember(shared)
    try:
        fetched = _fetch_single_flight(url, what=what, seen_version=None, origin=None)
    except SignInError as exc:
        now = time.time()
        stale = max(
            (d for d in (doc, shared) if d is not None and d.usable(now)), key=lambda d: d.fetched_at, default=None
        )
        if stale is None:
            raise
        return _stand_in(stale, what=what, reason=exc.reason, now=now)
    if fetched is None:  # another process fetched it but it could not be read back; fetch ourselves
        fetched = _fetch(url, what=what)
    return fetched


def _stand_in(stale: Document, *, what: str, reason: str, now: float) -> Document:
    """Serve ``stale`` until the next retry, and tell every process so (they would retry at once)."""
    until = min(now + conf.OIDC_CACHE_RETRY_AFTER_FAILURE, max(stale.usable_until, stale.expires_at))
    stale.expires_at = until
    _cache().set(_key("doc", stale.url), stale.to_cache(), timeout=max(math.ceil(stale.usable_until - now), 1))
    wait = until - now
    logger.warning("using expired %s for %s, next try in %.0fs: refresh failed: %s", what, stale.url, wait, reason)
    return _remember(stale)


def cached_data(url: str) -> dict[str, Any] | None:
    """The document at ``url`` if this process or the shared cache holds it (fresh or not), else None."""
    doc = _memo.get(url) or _shared(url)
    return doc.data if doc is not None else None


def forget(url: str) -> None:
    """Drop a document from the shared cache and from this process (``oidc_provider refresh``).

    A remembered failure to fetch it is dropped too: whoever refreshes means to ask the provider now.
    """
    _cache().delete_many([_key("doc", url), _key("failed", url)])
    forget_in_process(url)


def forget_in_process(url: str | None = None) -> None:
    """Drop this process's copy of one document, or of all (``url=None``); the shared cache keeps its own.

    The next use reads the shared copy again, as a freshly started process would.
    """
    with _memo_lock:
        if url is None:
            _memo.clear()
        else:
            _memo.pop(url, None)


def remember_in_process(doc: Document) -> Document:
    """Keep ``doc`` as this process's copy, unless it already holds that version (whose parsed keys it keeps)."""
    return _remember(doc)


def in_process(url: str) -> Document | None:
    """This process's copy of the document at ``url``, if it holds one (for diagnostics and tests)."""
    return _memo.get(url)


# --- discovery --------------------------------------------------------------------------------

REQUIRED_METADATA = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


#: What a document must hold for an issuer that only signs tokens (GitHub Actions publishes no endpoints).
TOKEN_ISSUER_METADATA = ("issuer", "jwks_uri")


def get_metadata(
    issuer: str, *, quirks: Quirks = STANDARD, required: tuple[str, ...] = REQUIRED_METADATA
) -> dict[str, Any]:
    """The validated discovery document of ``issuer`` (OpenID Connect Discovery 1.0, section 4).

    ``required``: the members it must have; a sign-in provider needs its endpoints, an issuer
    that only signs tokens needs ``TOKEN_ISSUER_METADATA``.
    """
    require_secure_url(issuer, what="issuer")
    doc = load_document(discovery_url(issuer), what="discovery document")
    if doc.validated_for != (issuer, quirks, required):
        validate_metadata(doc.data, issuer=issuer, quirks=quirks, required=required)
        doc.validated_for = (issuer, quirks, required)
    return doc.data


def validate_metadata(
    data: dict[str, Any], *, issuer: str, quirks: Quirks = STANDARD, required: tuple[str, ...] = REQUIRED_METADATA
) -> None:
    missing = [name for name in required if not isinstance(data.get(name), str)]
    if missing:
        raise ProviderMisconfigured(f"discovery document lacks {', '.join(missing)}")
    if not quirks.metadata_issuer_matches(issuer, data["issuer"]):
        # Section 4.3: the issuer must match exactly, or tokens could be accepted from a look-alike.
        raise ProviderMisconfigured(
            f"discovery document says issuer {data['issuer']!r}, configured issuer is {issuer!r}"
        )
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint", "end_session_endpoint"):
        if data.get(name) is not None:
            if not isinstance(data[name], str):
                raise ProviderMisconfigured(f"discovery document {name} is not a string")
            require_secure_url(data[name], what=name)


# --- signing keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JWKS:
    """A provider's key set, parsed: what token verification reads."""

    url: str
    keys: KeySet
    version: str
    fetched_at: float
    expires_at: float


def _with_keys(doc: Document) -> JWKS:
    if doc.keys is None:
        try:
            doc.keys = KeySet.import_key_set(_public_jwks(doc.data))
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ProviderMisconfigured(f"JWKS at {doc.url} cannot be parsed: {type(exc).__name__}") from exc
    return JWKS(url=doc.url, keys=doc.keys, version=doc.version, fetched_at=doc.fetched_at, expires_at=doc.expires_at)


def _public_jwks(data: dict[str, Any]) -> KeySetSerialization:
    """The key set minus keys this app cannot or must not use, so one odd key does not break the rest.

    Symmetric ("oct") keys are dropped: a provider has no business publishing a shared secret,
    and accepting one would let anybody who read the JWKS forge tokens.
    """
    keys = data.get("keys")
    if not isinstance(keys, list):
        raise ProviderMisconfigured("JWKS has no 'keys' list")
    usable = []
    for jwk in keys:
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        try:
            KeySet.import_key_set({"keys": [jwk]})
        except (JoseError, ValueError, TypeError, KeyError):
            logger.warning("ignoring an unparsable %s key (kid=%r)", jwk.get("kty"), jwk.get("kid"))
            continue
        usable.append(jwk)
    return {"keys": usable}


def get_keys(jwks_uri: str) -> JWKS:
    """The provider's current key set, parsed and memoised for this process."""
    return _with_keys(load_document(jwks_uri, what="JWKS"))


def keys_after_unknown_kid(jwks_uri: str, seen: JWKS, *, origin: KeyOrigin) -> JWKS | None:
    """A newer key set after a token named a key we do not have, or ``None`` if there is none.

    Adopts a copy another process already fetched; otherwise refetches, single-flight, within the
    budget of the token's ``origin`` (see ``KeyOrigin``).
    """
    shared = _shared(jwks_uri)
    if shared is not None and shared.version != seen.version:
        return _with_keys(_remember(shared))
    newer = _fetch_single_flight(jwks_uri, what="JWKS", seen_version=seen.version, origin=origin)
    return _with_keys(newer) if newer is not None else None
