"""Why a sign-in failed, in two voices: a ``reason`` for the log and a ``message`` for the person.

Every failure in the flow raises a ``SignInError`` subclass. Views turn them into an error page in
one place (``accounts.views.render_sign_in_error``); nothing else decides status codes or wording.
A ``reason`` must never contain a token, a code or a secret; whatever it quotes from outside is
escaped when the error is made (``printable``), so one log line stays one log line.

The person's words (``title``, ``message``) are translated, lazily, so a page shows them in the
request's language; the operator's (``reason``, ``code``) never are: a log line, an audit row and a
signal read the same whatever language the visitor's browser asked for.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

from django.db import InterfaceError, OperationalError
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise

#: Longest reason kept: enough for any rule's explanation, too short to smuggle a document through.
MAX_REASON_LENGTH = 500


def printable(value: object, *, limit: int = MAX_REASON_LENGTH) -> str:
    """``value`` as one line of text that cannot forge another log line or break a terminal.

    Reasons quote what a provider or a request sent (an ``alg``, an ``error`` code, a URL). A
    newline or carriage return there would start a fabricated second log line; other control and
    format characters (ANSI escapes, U+2028, bidi overrides) mislead whoever reads the log. Each is
    replaced by its ``\\x``/``\\u`` escape, so the line still says what was sent.
    """
    text = str(value)
    if text.isprintable():
        return text[:limit]
    return "".join(char if char.isprintable() else _escape(char) for char in text[:limit])[:limit]


def _escape(char: str) -> str:
    code = ord(char)
    if unicodedata.category(char) == "Zs":  # an odd space is harmless, but keep it visible as one
        return " "
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class SignInError(Exception):
    """A sign-in that cannot go on. Subclasses set the status, the title and the default message."""

    status = 400
    #: The page's heading and the sentence the person reads: translated (lazily, in the request's language).
    title: _StrOrPromise = _("Sign-in failed")
    message: _StrOrPromise = _("We could not sign you in. Please try again.")
    #: Short machine-readable code, stored in the audit trail and sent with the sign-in-failed signal.
    #: Stable: the health view and a project's receivers count and branch on it, never on ``reason``.
    code = "sign_in_failed"
    #: Whether the provider, not the person or this site, was the trouble (the health view counts these).
    provider_side = False

    def __init__(self, reason: str, *, message: _StrOrPromise | None = None) -> None:
        reason = printable(reason)  # every log line and audit row gets its reason from here
        super().__init__(reason)
        self.reason = reason
        if message is not None:
            self.message = message


class UnknownProvider(SignInError):
    status = 404
    code = "unknown_provider"
    title = _("Unknown sign-in provider")
    message = _("This sign-in option does not exist or has been turned off.")


class InvalidRequest(SignInError):
    """The callback does not belong to a sign-in this browser started (tampered, replayed or stale)."""

    code = "invalid_request"
    title = _("This sign-in link is not valid")
    message = _(
        "The sign-in response did not match a sign-in started from this browser, or it was "
        "already used or has expired. Please start again from the sign-in page."
    )


class ProviderDenied(SignInError):
    """The provider answered the authorization request with ``error=``: the person cancelled, or it refused.

    ``for_error`` picks the class by the OAuth error code: a provider that reports its own failure
    (``server_error``, ``temporarily_unavailable``) did not refuse anybody, and saying "cancelled"
    would send the person looking for a mistake they did not make.
    """

    status = 403
    code = "provider_denied"
    title = _("Sign-in was cancelled or refused")
    message = _("The provider did not let the sign-in go ahead. You can try again or choose another option.")

    @staticmethod
    def for_error(error: str) -> type[ProviderDenied]:
        """The class for the ``error`` code of an authorization response (RFC 6749 4.1.2.1)."""
        return ProviderFailed if error in ProviderFailed.ERRORS else ProviderDenied


class ProviderFailed(ProviderDenied):
    """The authorization response's ``error=`` says the provider itself failed, not that it refused."""

    #: The codes of RFC 6749 4.1.2.1 that report the provider's own trouble.
    ERRORS = frozenset({"server_error", "temporarily_unavailable"})
    status = 502
    code = "provider_error"
    provider_side = True
    title = _("The provider had a problem")
    message = _("The provider could not complete the sign-in. Please try again in a few minutes.")


class TokenRejected(SignInError):
    """The provider's answer could not be verified (signature, issuer, audience, nonce, time ...)."""

    code = "token_rejected"
    title = _("We could not verify your sign-in")
    message = _(
        "The provider's answer failed our security checks, so we did not sign you in. "
        "Please try again; if it keeps happening, contact the site administrator."
    )


class UnknownKey(TokenRejected):
    """A token names a key (``kid``) the provider's key set lacks, even after the refetch it was allowed."""

    code = "unknown_key"


class ProviderMisconfigured(SignInError):
    """The provider's metadata or keys are unusable, or it violates the protocol."""

    status = 502
    code = "provider_misconfigured"
    provider_side = True
    title = _("The sign-in provider is not working correctly")
    message = _(
        "The provider sent something we cannot use, so sign-in with it is not possible right now. "
        "Please try again later or choose another option."
    )


class ClientSecretUnavailable(ProviderMisconfigured):
    """This site cannot produce its client secret: its environment variable is unset, or its key is gone.

    The site's configuration is at fault, not the provider: 503, and a reason that names the
    variable or the key problem, never a value.
    """

    status = 503
    code = "client_secret_unavailable"
    provider_side = False  # this site's configuration, not the provider
    title = _("Sign-in with this provider is not set up correctly")
    message = _(
        "This site is missing part of its settings for this provider, so sign-in with it is not possible "
        "right now. Please choose another option, or contact the site administrator."
    )


class ProviderUnavailable(SignInError):
    """The provider could not be reached or answered with an error or garbage."""

    status = 502
    code = "provider_unavailable"
    provider_side = True
    title = _("The sign-in provider is unavailable")
    message = _("We could not reach the provider. Please try again in a few minutes.")


class PushedAuthorizationFailed(ProviderUnavailable):
    """The provider refused or could not take the pushed authorization request (RFC 9126) of a sign-in.

    Nothing was sent to the browser yet: the sign-in never started, and trying again may work.
    """

    code = "par_failed"
    title = _("The sign-in could not be started")
    message = _(
        "The provider did not accept the start of this sign-in. Please try again in a few minutes; if it keeps "
        "happening, contact the site administrator."
    )


class SiteKeyUnavailable(ProviderMisconfigured):
    """This site has no key to sign its client assertion with (``manage.py oidc_keys generate``), or the
    provider accepts none of the algorithms of its current key. The site's configuration is at fault."""

    status = 503
    code = "site_key_unavailable"
    provider_side = False  # this site's configuration, not the provider
    # What the person reads is what a missing client secret tells them: this site's settings, not theirs.
    title = ClientSecretUnavailable.title
    message = ClientSecretUnavailable.message


class ProviderTimeout(ProviderUnavailable):
    status = 504
    code = "provider_timeout"
    message = _("The provider took too long to answer. Please try again in a few minutes.")


class ProviderRecentlyFailed(ProviderUnavailable):
    """A fetch of this provider document failed moments ago: it is not asked again until ``retry_after`` passes.

    A provider that hangs would otherwise hold a worker for the whole timeout on every request that
    needs it; remembering the failure (``ACCOUNTS_OIDC_FETCH_FAILURE_TTL``) makes it cost one call.
    """

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(reason)
        #: Whole seconds until the provider is asked again (an API's ``Retry-After``).
        self.retry_after = retry_after


class SignInRefused(SignInError):
    """This site's own policy refuses the identity (a domain or tenant restriction, an adapter rule)."""

    status = 403
    code = "sign_in_refused"
    title = _("This account cannot sign in here")
    message = _("This account is not allowed to sign in to this site.")


class ReconnectRequired(SignInError):
    """The provider account was disconnected by its owner here; only they can connect it again."""

    status = 403
    code = "identity_disconnected"
    title = _("This sign-in was disconnected")
    message = _(
        "This provider account was disconnected from an account on this site, so it is not attached "
        "again automatically. Sign in another way, then connect it again from your profile page."
    )


class AccountConflict(SignInError):
    """The identity cannot be attached where it was asked to go."""

    status = 409
    code = "account_conflict"
    title = _("This account is already in use")
    message = _("This sign-in is already connected to another account on this site.")


class LastSignInMethod(SignInError):
    """Removing this identity would lock the person out of their account."""

    status = 409
    code = "last_sign_in_method"
    title = _("This is your only way to sign in")
    message = _(
        "You cannot disconnect your only sign-in method. Connect another provider first, "
        "or set a password for your account."
    )


class DatabaseBusy(SignInError):
    """The site's own database refused or timed out (locked, connection lost): nobody's fault, retryable."""

    status = 503
    code = "database_busy"
    title = _("The site is busy")
    message = _("We could not finish this because the site is busy right now. Please try again in a moment.")


#: What the site's own database raises when it is busy, locked or unreachable (not a bug: a retry
#: may work). Integrity and programming errors are bugs and are left to surface as such.
DATABASE_BUSY = (OperationalError, InterfaceError)


def database_busy(exc: OperationalError | InterfaceError) -> DatabaseBusy:
    """``exc`` (one of ``DATABASE_BUSY``) as the 503 the person reads, its first line as the reason."""
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return DatabaseBusy(f"database unavailable ({type(exc).__name__}: {first_line[:200]})")


class AccountIncomplete(SignInError):
    """A new user would be saved with a field its model requires left empty (the project's adapter fills it).

    Raised before anything is written, so the site's omission is named in the log (the ``reason``
    lists the fields) instead of surfacing as a database error that every retry repeats.
    """

    status = 403
    code = "account_incomplete"
    title = _("Your account could not be created")
    message = _(
        "This site needs details about you that we could not get from your sign-in provider, so no account "
        "was created. Please contact the site administrator."
    )


class UnexpectedError(SignInError):
    """Not a rule: an exception nobody expected ended the sign-in (a bug). Only its audit row uses it.

    Django answers such an exception itself (its 500 page, its error report); this names it in the
    audit trail, by its type alone -- an exception's text may quote whatever was being processed.
    """

    status = 500
    code = "internal_error"


# --- sign-in without a redirect (accounts.no_redirect) ---------------------------------------------


class EndpointDisabled(UnknownProvider):
    """The provider exists but does not accept ID tokens at this endpoint (off unless an admin turned it on)."""

    code = "endpoint_disabled"
    message = _("This way of signing in is not turned on for this provider.")


class TooManyAttempts(SignInError):
    """Too many refused attempts from this address in the last minute (``ACCOUNTS_NO_REDIRECT_FAILURES_PER_MINUTE``)."""

    status = 429
    code = "too_many_attempts"
    title = _("Too many attempts")
    message = _("Too many sign-in attempts came from your network. Please wait a minute and try again.")


# --- stored provider tokens (``accounts.provider_tokens``) ----------------------------------------------


class ProviderTokenError(SignInError):
    """A stored provider token cannot be had: none is stored, or the provider withdrew the grant.

    Raised by ``accounts.provider_tokens`` outside any sign-in as well (a view calling an API, a
    background job); ``reconnect_url`` is where a view can send the person to grant access again.
    """

    status = 409
    code = "provider_token_unavailable"
    title = _("Access to your account at the provider is needed")
    message = _("This site has no valid access to your account at the provider. Please connect it again.")
    reconnect_url: str = ""


class NoProviderToken(ProviderTokenError):
    """Nothing is stored for this identity: ``store_tokens`` was off when it signed in, or it was removed."""

    code = "no_provider_token"


class ProviderTokenExpired(ProviderTokenError):
    """The access token has expired and there is no refresh token to get another one with."""

    code = "provider_token_expired"


class ProviderGrantRevoked(ProviderTokenError):
    """The provider answered ``invalid_grant`` to a refresh: the grant was revoked or has expired there."""

    code = "provider_grant_revoked"
    message = _(
        "The provider no longer lets this site act on your behalf (the access was revoked or has expired). "
        "Please connect it again."
    )


def provider_side_codes() -> frozenset[str]:
    """The codes of every failure that says the provider, not the person or this site, was the trouble."""
    found, classes = set(), [SignInError]
    while classes:
        cls = classes.pop()
        if cls.provider_side:
            found.add(cls.code)
        classes.extend(cls.__subclasses__())
    return frozenset(found)
