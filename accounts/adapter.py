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

from . import site_keys
from .conf import conf
from .errors import LastSignInMethod
from .oidc.clients import ProviderClient, client_class
from .oidc.quirks import Quirks
from .presets import quirks_for

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest, HttpResponse

    from .errors import SignInError
    from .models import Identity, Provider


class DefaultAccountAdapter:
    """Each policy hook receives the request (None when the identity logic runs outside a view),
    because a rule often depends on it: the site, the language, what the person was doing.

    Any of them may refuse with your own words: raise ``accounts.errors.SignInRefused("reason for
    the log", message="What the person reads.")``. The person reads the message (on the error page,
    or on the profile page for a disconnect); the reason goes to the log line (and, for a sign-in or
    a connect, to the audit trail). The protocol hooks (``client_class``, ``quirks``) take only the
    provider: they are asked outside any request too, by ``manage.py oidc_provider check``.
    """

    def is_sign_in_allowed(self, request: HttpRequest | None, provider: Provider, claims: dict[str, Any]) -> bool:
        """Last word on whether verified ``claims`` may sign in (e.g. only staff emails, only one tenant).

        Asked for every sign-in and every connect (``accounts.admission``), after the provider's own
        restrictions and before anything is stored, and for every API call made with a user's access
        token (``accounts.api``; the claims are then the identity's stored ones updated with the
        token's, and a refusal is a 403). Return False to refuse; the person sees the
        "cannot sign in here" page and the attempt is logged. Raise ``SignInRefused(reason,
        message=...)`` instead to tell them why. The claims are verified: signature, issuer,
        audience and nonce are checked.
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
        client = self.client_class(provider).for_provider(provider, quirks=self.quirks(provider))
        client.assertion_signer = site_keys.sign  # private_key_jwt: the site's current key signs
        return client

    def username_candidates(self, request: HttpRequest | None, claims: dict[str, Any]) -> list[str]:
        """Preferred usernames for a new user, best first. A numbered suffix is added on collision.

        Derived from the provider's preferred_username, then the email's local part; the subject
        only when there is neither, since it is often an opaque id nobody recognises ("alice2"
        reads better than "f554adc7..."). The username is only a display handle here: the identity
        key is always issuer + subject.
        """
        email_local_part = str(claims.get("email") or "").split("@")[0]
        readable = [_clean_username(value) for value in (claims.get("preferred_username"), email_local_part)]
        candidates = [name for name in readable if name] or [_clean_username(claims.get("sub"))]
        return [name for name in candidates if name] or ["user"]

    def populate_user(
        self, request: HttpRequest | None, user: AbstractBaseUser, claims: dict[str, Any], *, email_verified: bool
    ) -> None:
        """Copy profile fields from verified claims onto a new user before it is saved.

        This is where a custom user model's own required fields are filled (a display name, an
        organisation...): the app knows only the username and the email. A field the model requires
        -- not ``blank``, no ``default``, not ``null`` -- that is still empty when the user is about to
        be saved refuses the sign-in with ``AccountIncomplete``, naming the field in the log, and
        stores nothing. Raise ``SignInRefused(reason, message=...)`` yourself when the claims lack
        what you need and you can say better what the person should do.

        It also runs on each later sign-in of a provider whose profile data is set to ``follow``.
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

    def new_user(self, request: HttpRequest | None) -> AbstractBaseUser:
        """An unsaved user for a first sign-in; provider-created users get no usable password.

        Override to start from another class or preset fields that do not come from the claims
        (``populate_user`` runs next, then the username is set, then it is saved).
        """
        user = get_user_model()()
        user.set_unusable_password()
        return user

    def get_login_redirect_url(
        self, request: HttpRequest, user: AbstractBaseUser, *, provider: Provider, next_url: str
    ) -> str:
        """Where the person goes once signed in: by default ``next_url``.

        ``next_url`` is where they asked to go (the ``next`` they came with, already checked to be
        on this site) or else ``LOGIN_REDIRECT_URL``. Override to send, say, people whose profile is
        incomplete to a page of your own. It runs after the sign-in is complete; a ``SignInError``
        raised here signs the person out again and shows its page. A URL pattern name works as in
        ``LOGIN_REDIRECT_URL``. Whatever you return is checked again like ``next``: a URL off this
        site is logged and replaced by ``LOGIN_REDIRECT_URL``, so a mistake here cannot become an
        open redirect.
        """
        return next_url

    def get_connect_redirect_url(
        self, request: HttpRequest, user: AbstractBaseUser, *, provider: Provider, next_url: str
    ) -> str:
        """Where the person goes once ``provider`` is connected to their account: by default ``next_url``.

        ``next_url`` is the checked ``next`` the connect was started with, or else the profile page:
        where the connect button usually is, and which now lists the new sign-in method.
        The URL is checked like ``get_login_redirect_url``'s. It runs once the identity is stored: to
        refuse a connect, use ``is_sign_in_allowed``, which is asked before anything is stored.
        """
        return next_url

    def sign_in_failed_response(
        self, request: HttpRequest, error: SignInError, *, provider: Provider | None, response: HttpResponse
    ) -> HttpResponse:
        """The answer to a failed sign-in or connect: by default ``response``, the app's error page (or JSON).

        Called once the failure is logged, audited and announced (``sign_in_failed``), so whatever
        you return, nothing of that is lost. Return another response to show your own page, send the
        person somewhere else (a redirect to your login page with a message, say) or answer in your
        API's format. ``error.code`` says which rule refused (``accounts.errors``), ``error.message``
        is the sentence for people; ``error.reason`` is for logs only. As allauth's
        ``on_authentication_error``, but it may replace the answer, not only look at it.
        """
        return response

    def is_disconnect_allowed(self, request: HttpRequest | None, identity: Identity) -> bool:
        """Whether the signed-in owner of ``identity`` may disconnect it from their account.

        Asked inside the transaction that removes it, with the user's identities locked, so two
        parallel disconnects cannot both pass a rule that counts them. Return False to refuse with
        a general message, or raise ``SignInRefused(reason, message=...)`` to say why; either way
        the person stays on the profile page with the message, and the reason is logged.

        By default the last way into an account cannot go: without another identity or a usable
        password the person would be locked out for good (``LastSignInMethod``). Override without
        calling ``super()`` only if the account has a way in this app cannot see (a passkey, say).
        """
        user = identity.user
        others = type(identity).objects.filter(user_id=user.pk).exclude(pk=identity.pk)
        if user.has_usable_password() or others.exists():
            return True
        raise LastSignInMethod(f"user {user.pk} tried to remove their only sign-in method")


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
