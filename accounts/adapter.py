"""The one documented place where a project customises how identities become users.

Subclass ``DefaultAccountAdapter``, override what you need, and point the ``ACCOUNTS_ADAPTER``
setting at your class. Each method says why it exists; none of them can switch off a protocol
check (signatures, nonce, state...): those are not policy.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.utils.module_loading import import_string

from .conf import conf
from .oidc.clients import ProviderClient, client_class
from .oidc.quirks import Quirks
from .presets import quirks_for

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

    from .models import Provider


class DefaultAccountAdapter:
    def is_sign_in_allowed(self, request: HttpRequest | None, provider: Provider, claims: dict[str, Any]) -> bool:
        """Last word on whether verified ``claims`` may sign in (e.g. only staff emails, only one tenant).

        Asked for every sign-in and every connect (``accounts.admission``), after the provider's own
        restrictions. Return False to refuse; the person sees the "cannot sign in here" page and the
        attempt is logged. The claims are verified: signature, issuer, audience and nonce are checked.
        """
        return True

    def client_class(self, provider: Provider) -> type[ProviderClient]:
        """The protocol client for ``provider``: by default the one for its kind.

        Return a subclass of ``OpenIDConnectClient`` or ``GitHubClient`` (``accounts.oidc.clients``)
        to adapt a provider that bends the standard -- say, one that needs an extra token request
        parameter (override ``exchange_code``) or names its claims its own way (``verified_login``).
        """
        return client_class(provider.kind)

    def quirks(self, provider: Provider) -> Quirks:
        """The documented departures from the standard the client may allow (by default, its preset's)."""
        return quirks_for(provider.preset)

    def get_client(self, provider: Provider) -> ProviderClient:
        """The client a request uses for ``provider``, its metadata loaded (``SignInError`` if it cannot be)."""
        return self.client_class(provider).for_provider(provider, quirks=self.quirks(provider))

    def username_candidates(self, claims: dict[str, Any]) -> list[str]:
        """Preferred usernames for a new user, best first. A numbered suffix is added on collision.

        Derived from the provider's preferred_username, then the email's local part, then the subject.
        The username is only a display handle here: the identity key is always issuer + subject.
        """
        candidates = []
        email_local_part = str(claims.get("email") or "").split("@")[0]
        for value in (claims.get("preferred_username"), email_local_part, claims.get("sub")):
            cleaned = _clean_username(value)
            if cleaned:
                candidates.append(cleaned)
        return candidates or ["user"]

    def populate_user(self, user: AbstractBaseUser, claims: dict[str, Any], *, email_verified: bool) -> None:
        """Copy profile fields from verified claims onto a new user before it is saved.

        The email is copied only when the provider says it is verified: an unverified address may
        belong to somebody else, and other parts of a site (password reset!) trust ``user.email``.
        """
        if email_verified and isinstance(claims.get("email"), str):
            setattr(user, user.get_email_field_name(), claims["email"])
        if hasattr(user, "first_name") and isinstance(claims.get("given_name"), str):
            user.first_name = claims["given_name"][:150]
        if hasattr(user, "last_name") and isinstance(claims.get("family_name"), str):
            user.last_name = claims["family_name"][:150]

    def update_user(
        self, request: HttpRequest | None, user: AbstractBaseUser, claims: dict[str, Any], *, created: bool
    ) -> None:
        """Bring ``user`` in line with verified ``claims`` on every sign-in, new user or returning.

        It runs inside the sign-in's transaction, after the identity is found or made, so what it
        changes commits with the sign-in or not at all; changed fields of ``user`` are saved for you
        (related objects, such as groups, through their own API). Because it runs every time, it can
        take away what the claims no longer grant -- a hook that ran only at creation could not. See
        ``docs``/the README for a recipe mapping a ``groups`` claim to Django groups and ``is_staff``.
        Raise ``accounts.errors.SignInRefused(reason, message=...)`` to refuse with your own words.
        """

    def new_user(self) -> AbstractBaseUser:
        """An unsaved user for a first sign-in; provider-created users get no usable password."""
        user = get_user_model()()
        user.set_unusable_password()
        return user


def _clean_username(value: object) -> str:
    if not isinstance(value, str):
        return ""
    ascii_value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return re.sub(r"[^\w.@+-]", "", ascii_value)[:140]


@lru_cache(maxsize=4)
def _adapter_class(path: str) -> type[DefaultAccountAdapter]:
    return import_string(path)


def get_adapter() -> DefaultAccountAdapter:
    return _adapter_class(conf.ADAPTER)()
