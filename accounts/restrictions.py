"""Per-provider sign-in restrictions: who may sign in, decided from verified claims only.

An admin can limit a provider to email domains (checked against provider-verified emails only),
Google Workspace domains (the ``hd`` claim of the verified ID token -- never a request
parameter, which anybody can edit) and Microsoft tenants (the ``tid`` claim).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import SignInRefused
from .identities import verified_email

if TYPE_CHECKING:
    from .models import Provider


def check_restrictions(provider: Provider, claims: dict[str, Any]) -> None:
    """Raise ``SignInRefused`` (with a message saying why) when ``claims`` may not sign in here."""
    email, verified = verified_email(claims)
    domain = email.rsplit("@", 1)[-1] if email and verified else None
    _require(
        domain, provider.email_domains, f"{provider.slug}: verified email domain",
        "Only people with a verified email address at {allowed} can sign in here.",
    )  # fmt: skip
    _require(
        claims.get("hd"), provider.hosted_domains, f"{provider.slug}: Google hosted domain",
        "Only Google Workspace accounts of {allowed} can sign in here.",
    )  # fmt: skip
    _require(
        claims.get("tid"), provider.tenants, f"{provider.slug}: Microsoft tenant",
        "Only accounts of this organisation's Microsoft tenant can sign in here.",
    )  # fmt: skip


def _require(value: object, allowed: list[str], what: str, message: str) -> None:
    """``value`` (case-insensitive) must be one of ``allowed``, unless no restriction is configured."""
    if not allowed:
        return
    if not isinstance(value, str) or value.lower() not in allowed:
        raise SignInRefused(f"{what} {str(value)[:64]!r} not allowed", message=message.format(allowed=_listed(allowed)))


def _listed(values: list[str]) -> str:
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]
