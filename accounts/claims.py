"""Reading verified claims the same way everywhere: the email and whether it is vouched for, storability."""

from __future__ import annotations

import logging
import math
from typing import Any

from .errors import printable
from .oidc.safejson import unstorable

logger = logging.getLogger(__name__)


def verified_email(claims: dict[str, Any]) -> tuple[str, bool]:
    """The claimed email and whether the provider vouches for it (``email_verified`` strictly true)."""
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email or len(email) > 254:
        return "", False
    return email.strip(), claims.get("email_verified") is True


def storable(claims: dict[str, Any]) -> dict[str, Any]:
    """Claims as every database can hold them, before anything reads them for a user or identity.

    A hostile provider may send NaN or Infinity (not JSON, refused by JSON columns): they become
    null. A string holding a character no database stores (``safejson.unstorable``: a NUL, a lone
    surrogate) is dropped with its claim -- a name, an email -- rather than stored altered: a
    mangled address must not be mistaken for the person's. One log line names what was dropped.
    The identity keys (``iss``, ``sub``, ``sid``) never get here unstorable: the token rules
    refuse them first (``accounts.oidc.tokens.key_problem``).
    """
    dropped: list[str] = []
    cleaned = _storable(claims, "", dropped)
    if dropped:
        logger.warning("dropped claim(s) holding text no database stores: %s", printable(", ".join(dropped), limit=200))
    return cleaned if isinstance(cleaned, dict) else {}


def _storable(value: Any, path: str, dropped: list[str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        if unstorable(value) is not None:
            dropped.append(path or "?")
            return _DROPPED
        return value
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if unstorable(str(key)) is not None:
                dropped.append(name)
                continue
            item = _storable(item, name, dropped)
            if item is not _DROPPED:
                kept[str(key)] = item
        return kept
    if isinstance(value, list):
        items = [_storable(item, f"{path}[]", dropped) for item in value]
        return [item for item in items if item is not _DROPPED]
    return value


#: What a dropped string becomes while its container is rebuilt (then left out).
_DROPPED = object()
