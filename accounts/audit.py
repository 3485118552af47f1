"""The audit trail: one ``SignInEvent`` row per sign-in attempt, written in one place.

Rows hold who, how and why -- provider, identity, IP, user agent, outcome and a short reason --
and never a token, a code or a secret (reasons are written to be safe to log, see errors.py).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import TYPE_CHECKING

from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.core.validators import validate_ipv46_address
from django.db import DatabaseError, transaction

from .conf import conf
from .errors import printable
from .models import SignInEvent
from .oidc.config import MAX_ISSUER_LENGTH, MAX_SUBJECT_LENGTH

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

    from .models import Provider

logger = logging.getLogger(__name__)

_CACHE_PREFIX = "oidc_signin:audit:anonymous-failures:"
#: How long a count of suppressed failures waits for the next row from the same address.
_SUPPRESSED_MEMORY = 7 * 86400


def record(
    request: HttpRequest | None,
    *,
    outcome: str,
    provider: Provider | None,
    action: str = "login",
    user: AbstractBaseUser | None = None,
    issuer: str = "",
    subject: str = "",
    code: str = "",
    reason: str = "",
    with_caller: bool = False,
) -> None:
    """Write one event. An audit failure is logged but never turns a failure page into a 500.

    With ``with_caller`` the row is one more write of the caller's transaction, without a
    savepoint of its own: a successful sign-in and its audit row commit together or not at all
    (the sign-in then fails as the database's error, not silently unaudited).

    Failures of anonymous visitors cost an attacker nothing to cause, so they are rate-limited per
    client address (``ACCOUNTS_AUDIT_ANONYMOUS_FAILURES_PER_MINUTE``): past the limit they are
    counted, and the count is stored on the next row written for that address (``suppressed``).
    Failures of signed-in people and every success are always written.
    """
    meta = request.META if request is not None else {}
    ip_address = _client_ip(meta)
    suppressed = 0
    if outcome == SignInEvent.Outcome.FAILURE and user is None:
        admitted, suppressed = _anonymous_failure_admitted(ip_address)
        if not admitted:
            return
    # django-stubs types the ``user`` foreign key as the project's AUTH_USER_MODEL, which this
    # reusable app cannot name; ``user`` is always an instance of that model at runtime.
    event = SignInEvent(
        outcome=outcome,
        action=action,
        provider=provider if provider is not None and provider.pk else None,
        provider_slug=provider.slug if provider is not None else "",
        user=user,  # type: ignore[misc]
        issuer=printable(issuer, limit=MAX_ISSUER_LENGTH),
        subject=printable(subject, limit=MAX_SUBJECT_LENGTH),
        code=code[:40],
        reason=printable(reason),
        ip_address=ip_address,
        user_agent=printable(meta.get("HTTP_USER_AGENT", ""), limit=300),
        suppressed=suppressed,
    )
    if with_caller:
        event.save(force_insert=True)
        return
    try:
        with transaction.atomic():  # a savepoint: a failed write must not spoil the caller's transaction
            event.save(force_insert=True)
    except DatabaseError:
        logger.exception("could not write the sign-in audit event")


def _anonymous_failure_admitted(ip_address: str | None) -> tuple[bool, int]:
    """Whether this anonymous failure gets a row, and how many before it were suppressed."""
    cache = caches[conf.OIDC_CACHE_ALIAS]
    source = _network(ip_address)
    window = f"{_CACHE_PREFIX}{source}:{int(time.time() // 60)}"
    pending = f"{_CACHE_PREFIX}{source}:suppressed"
    if _count(cache, window, timeout=120) > conf.AUDIT_ANONYMOUS_FAILURES_PER_MINUTE:
        _count(cache, pending, timeout=_SUPPRESSED_MEMORY)
        return False, 0
    suppressed = cache.get(pending) or 0
    if suppressed:
        cache.delete(pending)
    return True, int(suppressed)


def client_network(request: HttpRequest | None) -> str:
    """The unit anonymous failures are counted by: the request's IPv4 address or IPv6 /64."""
    return _network(_client_ip(request.META if request is not None else {}))


def count(cache, key: str, *, timeout: int) -> int:
    """Add one to the counter at ``key`` (see ``_count``); for other per-address limits."""
    return _count(cache, key, timeout=timeout)


def _count(cache, key: str, *, timeout: int) -> int:
    """Add one to the counter at ``key`` (created with ``timeout``) and return it; atomic where the cache is."""
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # evicted between add and incr: count this one as the first
        cache.set(key, 1, timeout=timeout)
        return 1


def _network(ip_address: str | None) -> str:
    """The unit one client controls: an IPv4 address, or an IPv6 /64 (one host usually has a whole /64)."""
    if ip_address is None:
        return "unknown"
    address = ipaddress.ip_address(ip_address)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)
    return str(address)


def _client_ip(meta: dict) -> str | None:
    """REMOTE_ADDR only: X-Forwarded-For is set by the client unless a trusted proxy rewrites it.

    Behind a proxy, have it set REMOTE_ADDR (e.g. gunicorn's --forwarded-allow-ips) rather than
    trusting a header here.
    """
    addr = meta.get("REMOTE_ADDR")
    if not isinstance(addr, str):  # absent (no request, or a test client that sets none)
        return None
    try:
        validate_ipv46_address(addr)
    except ValidationError:
        return None
    return addr
