"""Signing keys: created on first use, published as a JWKS, rotated on demand.

Keys are generated with joserfc (the JOSE library Authlib 1.9 signs with) and kept in the
database as private JWKs, so every process and thread signs with the same key and publishes the
same JWKS. The ``kid`` is the key's RFC 7638 thumbprint: a new key always gets a new kid.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

from .models import SIGNING_ALGORITHMS, SigningKey

_KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}


def generate(alg: str) -> Key:
    """A fresh private key for ``alg`` (RS256: RSA 2048; ES256: EC P-256), with kid, alg and use set."""
    if alg == "RS256":
        key: Key = RSAKey.generate_key(2048, private=True)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", private=True)
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    return _with_metadata(key, alg)


def _with_metadata(key: Key, alg: str) -> Key:
    data = key.as_dict(private=True)
    data.update(kid=key.thumbprint(), alg=alg, use="sig")
    return type(key).import_key(data)


def _store(key: Key, alg: str) -> SigningKey:
    return SigningKey.objects.create(kid=key.kid, kty=_KEY_TYPES[alg], alg=alg, private_jwk=key.as_dict(private=True))


def ensure_keys() -> list[SigningKey]:
    """Make sure one active key exists per supported algorithm; returns the keys it created.

    Key generation happens outside any transaction (RSA takes a moment), and a concurrent request
    that created the same algorithm's key first simply wins: the unique "one active key per
    algorithm" constraint rejects the second.
    """
    created = []
    for alg in SIGNING_ALGORITHMS:
        if SigningKey.objects.filter(alg=alg, active=True).exists():
            continue
        key = generate(alg)
        try:
            with transaction.atomic():
                created.append(_store(key, alg))
        except IntegrityError:
            pass  # another thread or process got there first
    return created


def rotate(alg: str = "RS256") -> tuple[SigningKey, list[SigningKey]]:
    """Make a new key the active one for ``alg`` and retire the old; returns (new, retired).

    The old key leaves the JWKS at once, so tokens it signed can no longer be verified by a
    relying party that refetches -- harsh for production, but exactly what demonstrates a relying
    party's handling of an unknown ``kid``.
    """
    key = generate(alg)
    now = timezone.now()
    with transaction.atomic():
        retired = list(SigningKey.objects.filter(alg=alg, active=True))
        SigningKey.objects.filter(pk__in=[k.pk for k in retired]).update(active=False, retired_at=now)
        new = _store(key, alg)
    return new, retired


def _import(stored: SigningKey) -> Key:
    return KeySet.import_key_set({"keys": [stored.private_jwk]}).keys[0]


def signing_keys(alg: str) -> KeySet:
    """The active private key for ``alg``, as a one-key set.

    Handing joserfc a key set (rather than a bare key) makes it write the key's ``kid`` into the
    JWS header, which is how relying parties pick the verification key.
    """
    ensure_keys()
    stored = SigningKey.objects.filter(alg=alg, active=True).first()
    if stored is None:
        raise LookupError(f"no active {alg} signing key")
    return KeySet([_import(stored)])


def public_jwks() -> dict[str, list[dict]]:
    """The JWKS document: public halves of the active keys only (retired keys are withdrawn)."""
    ensure_keys()
    stored = SigningKey.objects.filter(active=True).order_by("alg")
    return {"keys": [_import(k).as_dict(private=False) for k in stored]}


def verification_keys() -> KeySet:
    """Public keys of every key ever used, active or retired, for checking our own past tokens."""
    return KeySet([_public(k) for k in SigningKey.objects.all()])


def _public(stored: SigningKey) -> Key:
    key = _import(stored)
    return type(key).import_key(key.as_dict(private=False))
