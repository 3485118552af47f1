"""Single-use tokens: a token's ``jti`` is spent once, atomically, and remembered until the token expires.

Two kinds of token are single-use here: back-channel logout tokens (Back-Channel Logout 1.0 section
2.6, step 8, in ``accounts.logout``) and the access tokens of an API that refuses replays
(``accounts.api``). Both spend their ``jti`` through ``spend``, which inserts one ``SpentToken`` row
under a unique key: the database decides, so of two parallel requests carrying the same token
exactly one inserts and the other is told it is a replay, on every database backend.

The memory is a table, not the cache, because a cache forgets on its own: an LRU cache evicts, a
database cache culls a third of its entries when full, and anonymous requests can fill it. A spent
token must stay spent until it can no longer be accepted anyway: its ``exp`` plus the clock leeway.
After that, ``manage.py prune_signin_events`` deletes the row (``prune``); nothing a request does
removes one earlier.

A caller that spends a token and then fails to act on it (a busy database while ending the sessions
a logout token names) spends it inside the transaction of its action: the failure rolls the row
back, so the provider's retry of the very same token is not refused as a replay.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import time
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .conf import conf
from .models import SpentToken

#: The longest a token is remembered, whatever its ``exp`` says (a date the database can store).
_LONGEST = timedelta(days=366 * 100)


class TokenUse(enum.StrEnum):
    """What a single-use token is for: part of its key, so a provider's jti spaces may be kept per use."""

    LOGOUT = "logout"
    ACCESS = "access"
    #: A DPoP proof (RFC 9449 11.1), keyed by the thumbprint of the key that signed it.
    DPOP_PROOF = "dpop-proof"


def spend(use: TokenUse, *, issuer: str, jti: str, exp: float) -> bool:
    """Mark the token ``(use, issuer, jti)`` spent; False when it already was (a replay).

    One INSERT under the row's unique key, in a savepoint of its own so that the refusal of a
    replay leaves the caller's transaction usable. ``OperationalError`` (a busy database) is the
    caller's to answer (503): the token is neither spent nor refused.
    """
    row = SpentToken(digest=digest(use, issuer=issuer, jti=jti), expires_at=_expiry(exp))
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        return False
    return True


def digest(use: TokenUse, *, issuer: str, jti: str) -> str:
    """The row's key: SHA-256 of the use, the issuer and the jti, unambiguously joined.

    JSON with ASCII escapes joins them, so no split point can be moved (``"a b" + "c"`` is not
    ``"a" + "b c"``) and any string hashes, a lone surrogate included.
    """
    return hashlib.sha256(json.dumps([str(use), issuer, jti]).encode("ascii")).hexdigest()


def expired() -> QuerySet[SpentToken]:
    """The memories of tokens that can no longer be accepted anyway, and only those."""
    return SpentToken.objects.filter(expires_at__lt=timezone.now())


def prune() -> int:
    """Delete the ``expired`` memories (``manage.py prune_signin_events``); returns how many."""
    deleted, _ = expired().delete()
    return deleted


def _expiry(exp: float) -> datetime:
    """When a token expiring at ``exp`` (seconds since the epoch) stops being accepted, leeway included."""
    remaining = float(exp) - time.time() + conf.OIDC_CLOCK_LEEWAY
    if not math.isfinite(remaining):
        remaining = _LONGEST.total_seconds()
    seconds = min(max(remaining, 1.0), _LONGEST.total_seconds())
    return timezone.now() + timedelta(seconds=math.ceil(seconds))
