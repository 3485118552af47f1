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
    domains = provider.email_domains
    if domains:
        email, verified = verified_email(claims)
        domain = email.rsplit("@", 1)[-1].lower() if email else ""
        if not verified or domain not in domains:
            raise SignInRefused(
                f"{provider.slug}: email domain {domain or '-'} (verified={verified}) not in the allowed list",
                message=f"Only people with a verified email address at {_listed(domains)} can sign in here.",
            )
    hosted = provider.hosted_domains
    if hosted:
        hd = claims.get("hd")
        if not isinstance(hd, str) or hd.lower() not in hosted:
            raise SignInRefused(
                f"{provider.slug}: Google hosted domain {str(hd)[:64]!r} not allowed",
                message=f"Only Google Workspace accounts of {_listed(hosted)} can sign in here.",
            )
    tenants = provider.tenants
    if tenants:
        tid = claims.get("tid")
        if not isinstance(tid, str) or tid.lower() not in tenants:
            raise SignInRefused(
                f"{provider.slug}: Microsoft tenant {str(tid)[:64]!r} not allowed",
                message="Only accounts of this organisation's Microsoft tenant can sign in here.",
            )


def _listed(values: list[str]) -> str:
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]
