"""Verified bearer tokens, remembered in-process until they expire (the API's hot path).

An API called many times with one access token would check the same signature each time: a
public-key verification, the JOSE header and claim rules, the issuer's provider row. As Envoy's
JWT filter does, this keeps what a verification established -- the provider and the verified
claims -- in a bounded in-process LRU keyed by the token's SHA-256 (never the token itself), so
a repeated token costs a dictionary lookup and two version checks.

What an entry may never outlive, checked on every hit:

* the token's ``exp``: an entry is served only while ``time.time() < exp`` (the clock leeway the
  verification grants is not extended to cached entries);
* the issuer's key set: the version (content hash) of the JWKS the token was verified against;
  a rotation that drops the key turns the next hit into a miss and a full verification;
* the provider rows: the version ``accounts.provider_cache`` keeps in the shared cache, bumped by
  every save or delete of a ``Provider`` (admin, ``oidc_provider`` command, a disable), so every
  process sees the change on its next request.

Not cached, by design: single-use tokens (``refuse_replay``): their ``jti`` must be spent on each
call, and a cache hit would skip that. Nor is the caller: the identity, the user and the
admission policy are looked up on each request (an account disabled or restricted a moment ago
is refused at once), only the cryptography and the claim rules are remembered.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import provider_cache
from .conf import conf
from .oidc import discovery
from .provider_cache import PROVIDERS_VERSION_KEY, providers_version

if TYPE_CHECKING:
    from .models import Provider


@dataclass(frozen=True)
class Entry:
    """What one verification established, and the versions it holds under."""

    provider: Provider
    claims: dict[str, Any]
    exp: float
    jwks_uri: str
    keys_version: str
    providers_version: int


class VerifiedTokens:
    """A bounded LRU of ``Entry`` by (token SHA-256, audiences); thread-safe."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[bytes, tuple[str, ...]], Entry] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(raw: str, audiences: Collection[str]) -> tuple[bytes, tuple[str, ...]]:
        return hashlib.sha256(raw.encode()).digest(), tuple(audiences)

    def get(self, raw: str, audiences: Collection[str]) -> Entry | None:
        """The entry for this token and audiences if it still holds (see the module's list), else None."""
        if conf.API_TOKEN_CACHE_SIZE <= 0:
            return None
        key = self.key(raw, audiences)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.time() >= entry.exp or entry.providers_version != providers_version():
            self.discard(key)
            return None
        current = discovery.in_process(entry.jwks_uri)
        if current is None or current.version != entry.keys_version or not current.fresh():
            self.discard(key)  # the key set changed, or must be reloaded: verify again
            return None
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
        return entry

    def put(self, raw: str, audiences: Collection[str], entry: Entry) -> None:
        size = conf.API_TOKEN_CACHE_SIZE
        if size <= 0 or time.time() >= entry.exp:
            return
        key = self.key(raw, audiences)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > size:
                self._entries.popitem(last=False)

    def discard(self, key: tuple[bytes, tuple[str, ...]]) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


#: This process's verified tokens.
_verified = VerifiedTokens()
provider_cache.on_forget(_verified.clear)  # a provider changed: every entry is void


def lookup(raw: str, audiences: Collection[str]) -> Entry | None:
    return _verified.get(raw, audiences)


def remember(
    raw: str,
    audiences: Collection[str],
    *,
    provider: Provider,
    claims: dict[str, Any],
    jwks_uri: str,
    keys_version: str,
    providers_version_seen: int,
) -> None:
    """Keep a verification's result; ``keys_version`` and ``providers_version_seen`` are read BEFORE verifying.

    Read before, a change racing with the verification leaves the entry holding the older
    version, so its next use is a miss: the race can only cost a verification, never serve a
    token past a change.
    """
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return
    _verified.put(
        raw,
        audiences,
        Entry(provider, claims, float(exp), jwks_uri, keys_version, providers_version_seen),
    )


def clear() -> None:
    """Forget every verified token of this process (tests; a key compromise)."""
    _verified.clear()


def size() -> int:
    return len(_verified)


__all__ = ["PROVIDERS_VERSION_KEY", "clear", "lookup", "providers_version", "remember", "size"]
