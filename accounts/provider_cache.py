"""Provider rows, read once per process and kept until any provider changes (a version in the shared cache).

Every sign-in and every bearer request starts by finding a ``Provider`` row: by slug (the sign-in
URL) or by issuer (a bearer token's ``iss``). The rows change rarely (an admin edit, the
``oidc_provider`` command, a disable), so each process keeps what it read, keyed by the query,
behind one version number kept in the shared cache (``PROVIDERS_VERSION_KEY``).

* Every save or delete of a ``Provider`` bumps the version (``post_save``/``post_delete``,
  connected in ``apps.py``), once at once and once more when its transaction commits: a process
  that read the row between the two, still seeing the old one, holds it under a version that is
  already gone. Every process reads the version on each lookup, so the change reaches all of
  them on their next request. A queryset ``update()`` sends no signal: call
  ``bump_providers_version()`` after one (the app itself never updates providers that way).
* The rows kept are shared between a process's requests: read them, never change and save them
  (load a fresh copy to edit one, as the admin does).
* The verified-token cache (``accounts.token_cache``) holds under the same version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.cache import caches
from django.db import transaction

from .conf import conf

if TYPE_CHECKING:
    from .models import Provider

T = TypeVar("T")

#: Shared-cache key of the provider rows' version.
PROVIDERS_VERSION_KEY = "oidc_signin:providers:version"

_rows: dict[Hashable, Any] = {}
_rows_version: int | None = None
_lock = threading.Lock()
_listeners: list[Callable[[], None]] = []


def _cache():
    return caches[conf.OIDC_CACHE_ALIAS]


def providers_version() -> int:
    """The provider rows' version in the shared cache (0 until a first change)."""
    value = _cache().get(PROVIDERS_VERSION_KEY)
    return value if isinstance(value, int) else 0


def _bump() -> None:
    cache = _cache()
    cache.add(PROVIDERS_VERSION_KEY, 0, timeout=None)
    try:
        cache.incr(PROVIDERS_VERSION_KEY)
    except ValueError:  # evicted between add and incr: a value no process holds
        cache.set(PROVIDERS_VERSION_KEY, int(time.time() * 1000), timeout=None)
    forget_in_process()


def bump_providers_version(**_signal: Any) -> None:
    """A provider row changed: every process's kept rows (and verified tokens) are void from now on."""
    _bump()
    transaction.on_commit(_bump)  # again once the change is visible to other connections


def forget_in_process() -> None:
    """Drop this process's rows and tell the caches that hold under the version (tests; a bump)."""
    global _rows_version
    with _lock:
        _rows.clear()
        _rows_version = None
    for listener in _listeners:
        listener()


def on_forget(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever this process drops its rows (the verified-token cache empties itself)."""
    _listeners.append(listener)


def kept(key: Hashable, load: Callable[[], T]) -> T:
    """``load()``'s result for ``key``, read once per process and provider version.

    The version is read before loading: a change racing with the load leaves the result under an
    older version, so the next lookup loads again. Never stale past the next bump.
    """
    global _rows_version
    version = providers_version()
    with _lock:
        if _rows_version != version:
            _rows.clear()
            _rows_version = version
        if key in _rows:
            return _rows[key]
    value = load()
    with _lock:
        if _rows_version == version:
            _rows[key] = value
    return value


def enabled_provider(slug: str) -> Provider | None:
    """The enabled provider named ``slug`` (a sign-in URL's), or None; kept as above."""
    from .models import Provider

    return kept(("slug", slug), lambda: Provider.objects.filter(slug=slug, enabled=True).first())
