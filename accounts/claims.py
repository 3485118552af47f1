"""Reading verified claims the same way everywhere: the email and whether it is vouched for, storability."""

from __future__ import annotations

import math
from typing import Any


def verified_email(claims: dict[str, Any]) -> tuple[str, bool]:
    """The claimed email and whether the provider vouches for it (``email_verified`` strictly true)."""
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email or len(email) > 254:
        return "", False
    return email.strip(), claims.get("email_verified") is True


def storable(claims: dict[str, Any]) -> dict[str, Any]:
    """Claims as every database can hold them, before anything reads them for a user or identity.

    A hostile provider may send NaN or Infinity (not JSON, refused by JSON columns) or NUL
    characters (refused by PostgreSQL text), which would otherwise fail the sign-in with a 500.
    """
    return _storable(claims)


def _storable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {str(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value
