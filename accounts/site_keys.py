"""The site's own signing keys: generated, rotated safely, published as a JWKS, used to sign assertions.

A provider that authenticates the site by ``private_key_jwt`` (RFC 7523, OpenID Connect Core 9)
checks each client assertion with a key it fetched from the site's ``/accounts/jwks.json``. It
caches that set, so a key must be there before the site signs with it, and stay there until the
last assertion it signed has expired. Each key therefore lives through three states
(``SiteKeyState``):

* ``next``: published, not signing. ``generate`` makes one (the very first key of a site is
  ``current`` at once: no provider can hold a set that lacks it, because there was none);
* ``current``: published and signing; at most one (a database constraint);
* ``retiring``: published, no longer signing, until ``retiring_since`` plus the assertion
  lifetime and the clock leeway has passed; then ``retire`` deletes it.

``rotate`` promotes a ``next`` key only once it has been published for
``ACCOUNTS_SITE_KEY_PUBLISH_DELAY`` seconds (longer than providers cache the set); without such a key
it generates one and says when to run it again. The private halves are encrypted with the keys of
``ACCOUNTS_CLIENT_SECRET_KEYS`` (``client_secrets.encrypt``) and decrypted only to sign.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from . import client_secrets
from .choices import SiteKeyAlgorithm, SiteKeyState
from .conf import conf
from .errors import SiteKeyUnavailable
from .models import SiteKey

#: The states whose keys ``/accounts/jwks.json`` publishes: every key that exists.
PUBLISHED = (SiteKeyState.NEXT, SiteKeyState.CURRENT, SiteKeyState.RETIRING)
#: Public members a JWK of ours may carry: nothing else is ever published (no ``d``, ``p``, ``q``...).
_PUBLIC_MEMBERS = frozenset({"kty", "crv", "x", "y", "n", "e"})


class KeyStateError(Exception):
    """A key command that would break a rule (retire the current key, or a key still needed)."""


@dataclass(frozen=True)
class Rotation:
    """What ``rotate`` did: promoted ``current`` (retiring ``retired``), or left ``waiting`` until ``ready_at``."""

    current: SiteKey | None = None
    retired: SiteKey | None = None
    waiting: SiteKey | None = None
    ready_at: datetime | None = None


def _new_key(algorithm: str) -> ECKey | RSAKey:
    if algorithm == SiteKeyAlgorithm.ES256:
        return ECKey.generate_key("P-256", private=True)
    if algorithm in (SiteKeyAlgorithm.PS256, SiteKeyAlgorithm.RS256):
        return RSAKey.generate_key(3072, private=True)
    raise ValueError(f"site keys sign with ES256, PS256 or RS256, not {algorithm!r:.20}")


@sensitive_variables("key", "private")
def generate(*, algorithm: str | None = None) -> SiteKey:
    """A new key pair, published from now on: ``next``, or ``current`` when the site has no key at all."""
    algorithm = algorithm or conf.SITE_KEY_ALGORITHM
    key = _new_key(algorithm)
    kid = key.thumbprint()  # RFC 7638: stable, and says nothing but the public key
    public = {name: value for name, value in key.as_dict(private=False).items() if name in _PUBLIC_MEMBERS}
    private = json.dumps(key.as_dict(private=True))
    with transaction.atomic():
        first = not SiteKey.objects.select_for_update().exists()
        now = timezone.now()
        return SiteKey.objects.create(
            kid=kid,
            algorithm=algorithm,
            state=SiteKeyState.CURRENT if first else SiteKeyState.NEXT,
            private_jwk=client_secrets.encrypt(private),
            public_jwk=public,
            activated_at=now if first else None,
        )


def rotate(*, algorithm: str | None = None, now: datetime | None = None) -> Rotation:
    """Let the oldest ``next`` key published long enough sign; the current one starts retiring.

    Without such a key nothing changes hands: a ``next`` key is generated when there is none, and
    ``Rotation.waiting`` / ``ready_at`` say which key and when ``rotate`` will promote it.
    """
    now = now or timezone.now()
    delay = timedelta(seconds=conf.SITE_KEY_PUBLISH_DELAY)
    with transaction.atomic():
        keys = list(SiteKey.objects.select_for_update().order_by("created_at"))
        ready = [k for k in keys if k.state == SiteKeyState.NEXT and k.created_at + delay <= now]
        if not ready:
            waiting = next((k for k in keys if k.state == SiteKeyState.NEXT), None)
            if waiting is None:
                waiting = generate(algorithm=algorithm)
            if waiting.state == SiteKeyState.CURRENT:  # the site had no key: its first one signs at once
                return Rotation(current=waiting)
            return Rotation(waiting=waiting, ready_at=waiting.created_at + delay)
        promoted = ready[0]
        retired = next((k for k in keys if k.state == SiteKeyState.CURRENT), None)
        if retired is not None:
            retired.state, retired.retiring_since = SiteKeyState.RETIRING, now
            retired.save(update_fields=["state", "retiring_since"])
        promoted.state, promoted.activated_at = SiteKeyState.CURRENT, now
        promoted.save(update_fields=["state", "activated_at"])
    return Rotation(current=promoted, retired=retired)


def retire_after(key: SiteKey) -> datetime | None:
    """When a retiring key may go: its last assertion's expiry plus the clock leeway (None: not retiring)."""
    if key.state != SiteKeyState.RETIRING or key.retiring_since is None:
        return None
    return key.retiring_since + timedelta(seconds=conf.PRIVATE_KEY_JWT_LIFETIME + conf.OIDC_CLOCK_LEEWAY)


def retire(*, kid: str | None = None, now: datetime | None = None) -> list[str]:
    """Delete the retiring keys whose assertions have all expired (or the one ``kid`` names); their kids.

    A named ``next`` key never signed anything and may go at once. The current key, and a retiring
    key whose assertions may still be in use, raise ``KeyStateError``.
    """
    now = now or timezone.now()
    with transaction.atomic():
        keys = SiteKey.objects.select_for_update()
        if kid is not None:
            key = keys.filter(kid=kid).first()
            if key is None:
                raise KeyStateError(f"no site key {kid!r:.80}")
            if key.state == SiteKeyState.CURRENT:
                raise KeyStateError(f"{kid} is the current key: rotate first")
            until = retire_after(key)
            if until is not None and until > now:
                raise KeyStateError(f"{kid} may have signed assertions valid until {until:%Y-%m-%d %H:%M:%S} UTC")
            key.delete()
            return [kid]
        gone = [k for k in keys.filter(state=SiteKeyState.RETIRING) if (retire_after(k) or now) <= now]
        SiteKey.objects.filter(pk__in=[k.pk for k in gone]).delete()
    return [k.kid for k in gone]


def status() -> list[SiteKey]:
    """Every key, oldest first (what ``oidc_keys status`` and the admin list show; no private part)."""
    return list(SiteKey.objects.order_by("created_at").defer("private_jwk"))


def public_jwks() -> dict[str, list[dict[str, Any]]]:
    """The JWKS ``/accounts/jwks.json`` serves: each published key's public members, ``kid``, ``use``, ``alg``."""
    keys = SiteKey.objects.filter(state__in=PUBLISHED).order_by("created_at").only("kid", "algorithm", "public_jwk")
    return {
        "keys": [
            {**{n: v for n, v in key.public_jwk.items() if n in _PUBLIC_MEMBERS}, "kid": key.kid, "use": "sig",
             "alg": key.algorithm}
            for key in keys
        ]
    }  # fmt: skip


@functools.lru_cache(maxsize=4)
def _imported(kid: str, stored: str) -> ECKey | RSAKey:
    """The parsed private key (decrypted and imported once per process and key)."""
    data = json.loads(client_secrets.decrypt(stored, owner=f"site key {kid}"))
    return RSAKey.import_key(data) if data.get("kty") == "RSA" else ECKey.import_key(data)


def current_signing_key() -> tuple[str, str, str]:
    """(kid, algorithm, encrypted private JWK) of the current key, read from the database each time."""
    key = SiteKey.objects.filter(state=SiteKeyState.CURRENT).only("kid", "algorithm", "private_jwk").first()
    if key is None:
        raise SiteKeyUnavailable("this site has no current signing key (run manage.py oidc_keys generate)")
    return key.kid, key.algorithm, key.private_jwk


@sensitive_variables("key")
def sign(claims: dict[str, Any], *, algorithms: list[str] | None = None, typ: str | None = None) -> str:
    """``claims`` as a JWT signed with the current key; ``algorithms`` are those the recipient accepts.

    The current key is read from the database on every signature (one indexed row), so a rotation
    made by another process is used at once; its parsed private key is kept in-process.
    """
    kid, algorithm, stored = current_signing_key()
    if algorithms is not None and algorithm not in algorithms:
        raise SiteKeyUnavailable(
            f"the site's current key signs {algorithm}, which the provider does not accept ({algorithms!r:.120}): "
            "generate and rotate to a key of an accepted algorithm"
        )
    header = {"alg": algorithm, "kid": kid, **({"typ": typ} if typ else {})}
    return jwt.encode(header, claims, _imported(kid, stored), algorithms=[algorithm])


def seconds_until(when: datetime, now: datetime | None = None) -> int:
    """Whole seconds from ``now`` until ``when`` (0 when past), for messages."""
    return max(0, math.ceil((when - (now or timezone.now())).total_seconds()))
