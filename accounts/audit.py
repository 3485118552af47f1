"""The audit trail: one ``SignInEvent`` row per sign-in attempt, written in one place.

Rows hold who, how and why -- provider, identity, IP, user agent, outcome and a short reason --
and never a token, a code or a secret (reasons are written to be safe to log, see errors.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.core.validators import validate_ipv46_address
from django.db import DatabaseError

from .models import SignInEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

    from .models import Provider

logger = logging.getLogger(__name__)


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
) -> None:
    """Write one event. An audit failure is logged but never turns a sign-in into an error."""
    meta = request.META if request is not None else {}
    try:
        SignInEvent.objects.create(
            outcome=outcome,
            action=action,
            provider=provider if provider is not None and provider.pk else None,
            provider_slug=provider.slug if provider is not None else "",
            user=user,
            issuer=issuer[:500],
            subject=subject[:255],
            code=code[:40],
            reason=reason[:500],
            ip_address=_client_ip(meta),
            user_agent=str(meta.get("HTTP_USER_AGENT", ""))[:300],
        )
    except DatabaseError:
        logger.exception("could not write the sign-in audit event")


def _client_ip(meta: dict) -> str | None:
    """REMOTE_ADDR only: X-Forwarded-For is set by the client unless a trusted proxy rewrites it.

    Behind a proxy, have it set REMOTE_ADDR (e.g. gunicorn's --forwarded-allow-ips) rather than
    trusting a header here.
    """
    addr = meta.get("REMOTE_ADDR")
    try:
        validate_ipv46_address(addr)
    except ValidationError:
        return None
    return addr
