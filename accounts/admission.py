"""Who may sign in here: one policy for sign-in and connect alike, decided from verified claims only.

Three things are asked, in this order, and the first that refuses wins (``SignInRefused``, whose
message says why):

1. the provider's restrictions an admin configured: email domains (checked against
   provider-verified emails only), Google Workspace domains (the ``hd`` claim of the verified ID
   token -- never a request parameter, which anybody can edit) and Microsoft tenants (``tid``);
2. the adapter's ``is_sign_in_allowed`` (``accounts.adapter``), the project's own rule;
3. once the account is known, that it is active (``admit_user``, run by ``accounts.identities``
   inside the sign-in's transaction, before anything is written for it).

An API (``accounts.api``) asks the same ``admit`` on every request carrying a user's access token,
with the account given and the claims of ``returning_claims``: a person the browser's sign-in
would now refuse (a tightened restriction, the adapter's rule, a disabled account) is refused by
the API too, not admitted for as long as an old identity row exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext as _

from .adapter import get_adapter
from .claims import verified_email
from .errors import SignInRefused

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

    from .models import Provider


def admit(
    request: HttpRequest | None, provider: Provider, claims: dict[str, Any], *, user: AbstractBaseUser | None = None
) -> None:
    """Raise ``SignInRefused`` when these verified ``claims`` may not sign in (or be connected) here.

    ``user``, when the account is already known (an API call), must be active as well; a browser
    sign-in learns its account later and checks it with ``admit_user`` then.
    """
    check_restrictions(provider, claims)
    if not get_adapter().is_sign_in_allowed(request, provider, claims):
        raise SignInRefused(f"adapter refused {provider.slug} subject")
    if user is not None:
        admit_user(user)


def returning_claims(stored: dict[str, Any], token: dict[str, Any]) -> dict[str, Any]:
    """What admission reads for a returning identity that presents a verified access token.

    The identity's last verified claims (what its provider said at its last browser sign-in, stored
    on ``Identity.claims``), updated with every claim the token carries -- its ``hd`` or ``tid``,
    say, are the provider's latest word. An email the token does not vouch for (no
    ``email_verified: true``, as in most access tokens) does not replace a verified one stored:
    access tokens often carry a bare ``email``, and it would refuse people the browser admits.
    """
    claims = {**stored, **token}
    if not verified_email(token)[1] and verified_email(stored)[1]:
        claims["email"], claims["email_verified"] = stored["email"], stored["email_verified"]
    return claims


def admit_user(user: AbstractBaseUser) -> None:
    """Refuse a disabled account, whichever identity leads to it."""
    if not user.is_active:
        raise SignInRefused(f"user {user.pk} is inactive", message=_("This account has been disabled."))


def check_restrictions(provider: Provider, claims: dict[str, Any]) -> None:
    """The provider's configured restrictions (see the module docstring)."""
    email, verified = verified_email(claims)
    domain = email.rsplit("@", 1)[-1] if email and verified else None
    _require(
        domain, provider.email_domains, f"{provider.slug}: verified email domain",
        _("Only people with a verified email address at {allowed} can sign in here."),
    )  # fmt: skip
    _require(
        claims.get("hd"), provider.hosted_domains, f"{provider.slug}: Google hosted domain",
        _("Only Google Workspace accounts of {allowed} can sign in here."),
    )  # fmt: skip
    _require(
        claims.get("tid"), provider.tenants, f"{provider.slug}: Microsoft tenant",
        _("Only accounts of this organisation's Microsoft tenant can sign in here."),
    )  # fmt: skip


def _require(value: object, allowed: list[str], what: str, message: str) -> None:
    """``value`` (case-insensitive) must be one of ``allowed``, unless no restriction is configured."""
    if not allowed:
        return
    if not isinstance(value, str) or value.lower() not in allowed:
        raise SignInRefused(f"{what} {str(value)[:64]!r} not allowed", message=message.format(allowed=_listed(allowed)))


def _listed(values: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``: in the person's language (the list's own words are domain names)."""
    if len(values) == 1:
        return values[0]
    return _("{values} or {last}").format(values=", ".join(values[:-1]), last=values[-1])
