"""Stored provider tokens: kept encrypted, refreshed single-flight, revoked when they are let go.

A site that signs people in with Google or GitHub often wants to call that provider's API for
them later -- from a view or from a background job. With the provider's ``store_tokens`` on, the
sign-in (``accounts.flow``) hands the token endpoint's answer to ``store``, and from then on::

    from accounts import provider_tokens

    token = provider_tokens.access_token(user, provider)          # or identity=identity
    session = provider_tokens.api_session(identity)               # requests, bearer added, one retry on 401

``access_token`` returns a token valid for at least ``ACCOUNTS_PROVIDER_TOKENS_REFRESH_MARGIN``
seconds, refreshing it first (RFC 6749 section 6) when it must. The refresh is **single-flight**
across threads, processes and servers, because providers that rotate refresh tokens (Auth0, Okta,
Keycloak, GitHub Apps, Microsoft for single-page apps) revoke the whole grant when an old refresh
token is presented twice: the identity's row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL,
the write lock of an immediate transaction on SQLite) from reading the refresh token until the
rotated one is stored, and whoever waited for the lock finds the new access token and returns it.

Tokens are encrypted with the MultiFernet keys of ``ACCOUNTS_CLIENT_SECRET_KEYS``
(``accounts.client_secrets``), never logged or rendered (the admin shows their status), and
masked in Django's error reports. ``invalid_grant`` on refresh marks them revoked, sends
``signals.provider_tokens_revoked`` and raises ``ProviderGrantRevoked``, whose ``reconnect_url``
sends the person to grant access again. Deleting them -- a disconnect, a deleted user,
``manage.py oidc_tokens revoke`` -- revokes the grant at the provider too (best effort, audited).
"""

from __future__ import annotations

import dataclasses
import datetime
import http.cookiejar
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import requests
from django.contrib.auth import get_user_model
from django.db import connections, router, transaction
from django.db.models import F
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from . import audit, client_secrets, signals
from .adapter import get_adapter
from .choices import Action, Outcome
from .conf import conf
from .errors import (
    ClientSecretUnavailable,
    NoProviderToken,
    ProviderGrantRevoked,
    ProviderTokenError,
    ProviderTokenExpired,
    SignInError,
    TokenRejected,
    printable,
)
from .models import Identity, Provider, ProviderToken
from .oidc import dpop
from .oidc.http import ProviderHTTPError, require_secure_url

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest ``expires_in`` believed, in seconds (a year): a bigger number is a provider's bug, and
#: would overflow a date.
MAX_EXPIRES_IN = 366 * 24 * 3600
#: Methods a request may be sent again with after a 401 (RFC 9110 9.2.2): sending it twice does no harm.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


# --- storing -------------------------------------------------------------------------------------


@sensitive_variables("token_response", "access", "refresh")
@sensitive_variables("token_response", "dpop_key")
def store(
    identity: Identity, token_response: dict[str, Any], *, requested_scopes: list[str], dpop_key: str = ""
) -> ProviderToken:
    """Keep the tokens of a code exchange (or a reconnect) for ``identity``, encrypted.

    The granted scopes are the answer's ``scope``, or the requested ones when it has none (RFC
    6749 5.1), merged with what was granted before (incremental authorization adds scopes to one
    grant). A provider that sends no new refresh token on a later consent (Google) keeps the one
    stored. Run inside the sign-in's transaction.
    """
    if not client_secrets.keys_configured():
        raise ClientSecretUnavailable(
            f"{identity.provider.slug} stores tokens (store_tokens) and ACCOUNTS_CLIENT_SECRET_KEYS is not set"
        )
    access = token_response.get("access_token")
    if not isinstance(access, str) or not access:
        raise TokenRejected("token response has no access_token to store")
    refresh = token_response.get("refresh_token")
    row = ProviderToken.objects.select_for_update().filter(identity=identity).first()
    if row is None:
        row = ProviderToken(identity=identity)
    scope = token_response.get("scope")
    granted = scope.split() if isinstance(scope, str) else list(requested_scopes)
    if row.pk is not None and row.revoked_at is None:
        granted = [*row.scope_list, *(s for s in granted if s not in row.scope_list)]
    _apply(row, token_response, access=access, refresh=refresh if isinstance(refresh, str) else None)
    row.scopes = " ".join(dict.fromkeys(granted))[:2000]
    row.revoked_at, row.last_error = None, ""
    row.dpop_key = client_secrets.encrypt(dpop_key)  # a new grant: its own key, or none (bearer tokens)
    row.save()
    return row


def _bound_client(identity: Identity, row: ProviderToken | None = None) -> Any:
    """The provider's client for ``identity``'s stored grant, holding the grant's DPoP key if it has one."""
    client = get_adapter().get_client(identity.provider)
    row = row if row is not None else ProviderToken.objects.filter(identity=identity).only("dpop_key").first()
    if row is not None and row.dpop_key:
        client.dpop_key = dpop.import_key(_reveal(row.dpop_key, identity))
    return client


@sensitive_variables("token_response", "access", "refresh")
def _apply(row: ProviderToken, token_response: dict[str, Any], *, access: str, refresh: str | None) -> None:
    """Put a token answer's values on ``row`` (not saved); no new refresh token keeps the old one."""
    row.access_token = client_secrets.encrypt(access)
    if refresh:
        row.refresh_token = client_secrets.encrypt(refresh)
    token_type = token_response.get("token_type")
    row.token_type = printable(token_type, limit=40) if isinstance(token_type, str) else "Bearer"
    expires_in = token_response.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():  # some providers send a string
        expires_in = int(expires_in)
    if isinstance(expires_in, int) and not isinstance(expires_in, bool) and 0 <= expires_in <= MAX_EXPIRES_IN:
        row.expires_at = timezone.now() + datetime.timedelta(seconds=expires_in)
    else:  # GitHub OAuth Apps' tokens never expire, and say so by sending no expires_in
        row.expires_at = None


# --- handing out a valid access token --------------------------------------------------------------


def access_token(
    user: AbstractBaseUser | None = None, provider: Provider | str | None = None, *, identity: Identity | None = None
) -> str:
    """A valid access token for ``user`` at ``provider`` (a Provider or its slug), or for ``identity``.

    Refreshes first when the stored token has expired or expires within the margin; the refresh is
    single-flight (see the module's docstring). Raises ``NoProviderToken``, ``ProviderTokenExpired``
    (no refresh token), ``ProviderGrantRevoked`` (``invalid_grant``; the tokens are then marked
    revoked), ``TokenRejected`` (the refresh answered for someone else), ``ProviderUnavailable``.
    Works without a request: from views, management commands and task queues alike.
    """
    identity = _identity(user, provider, identity)
    row = ProviderToken.objects.filter(identity=identity).first()
    if row is None:
        raise NoProviderToken(f"no stored tokens for {identity.provider.slug} identity of user {identity.user_id}")
    if row.revoked_at is None and _fresh(row):
        return _reveal(row.access_token, identity)
    return refresh(identity)


@sensitive_variables("rejected", "current", "old_refresh", "answer", "new_access", "new_refresh")
def refresh(identity: Identity, *, rejected: str | None = None) -> str:
    """Refresh ``identity``'s tokens, once for everyone who asks at the same moment; the new access token.

    ``rejected`` is an access token the provider's API just refused (a 401): it is replaced even
    if it has not expired yet, unless somebody else replaced it meanwhile. Every network call that
    is not the refresh (discovery, keys) happens before the lock is taken.
    """
    provider = identity.provider
    client = get_adapter().get_client(provider)
    failure: SignInError | None = None
    revoked = False
    with _locked_row(identity) as row:
        if row.revoked_at is not None:
            revoked_error = ProviderGrantRevoked(f"stored tokens of {_who(identity)} were revoked")
            raise _with_reconnect(revoked_error, identity, row.scope_list)
        current = _reveal(row.access_token, identity)
        if _fresh(row) and current != rejected:
            return current  # refreshed by whoever held the lock before us
        old_refresh = _reveal(row.refresh_token, identity)
        if not old_refresh:
            raise _with_reconnect(
                ProviderTokenExpired(f"access token of {_who(identity)} expired and there is no refresh token"),
                identity,
            )
        if row.dpop_key:  # RFC 9449 5: a DPoP-bound refresh token is refreshed with a proof of the same key
            client.dpop_key = dpop.import_key(_reveal(row.dpop_key, identity))
        try:
            answer = client.refresh(refresh_token=old_refresh, issuer=identity.issuer, subject=identity.subject)
        except (ProviderGrantRevoked, TokenRejected) as exc:
            # The grant is gone, or its answer was about somebody else: never use these tokens again.
            failure, revoked = exc, True
            row.revoked_at = timezone.now()
        except SignInError as exc:  # unreachable, timed out: the stored tokens are still good to retry with
            failure = exc
        if failure is not None:
            row.last_error = failure.reason[:500]
            row.save(update_fields=["revoked_at", "last_error"])
        else:
            new_access = answer["access_token"]
            new_refresh = answer.get("refresh_token")
            _apply(row, answer, access=new_access, refresh=new_refresh if isinstance(new_refresh, str) else None)
            scope = answer.get("scope")
            if isinstance(scope, str) and scope.split():
                row.scopes = " ".join(dict.fromkeys(scope.split()))[:2000]
            row.last_refresh_at, row.last_error = timezone.now(), ""
            # Stored before the lock is released: nobody can read the spent refresh token after this.
            row.save()
    if failure is None:
        return new_access
    granted = row.scope_list
    logger.warning(
        "provider token refresh failed: provider=%s user=%s reason=%s", provider.slug, identity.user_id, failure.reason
    )
    if revoked:
        _record(Outcome.FAILURE, Action.TOKEN_REFRESH, identity, failure)
        reason = failure.reason
        transaction.on_commit(
            lambda: signals.provider_tokens_revoked.send(
                sender=ProviderToken, user=identity.user, identity=identity, reason=reason
            )
        )
        raise _with_reconnect(failure, identity, granted)
    raise failure


@contextmanager
def _locked_row(identity: Identity) -> Iterator[ProviderToken]:
    """The identity's token row, locked against every other refresh until the block's transaction ends.

    PostgreSQL (and MySQL, Oracle): ``SELECT ... FOR UPDATE``, waiting at most
    ``PROVIDER_TOKENS_LOCK_TIMEOUT`` (a ``lock_timeout`` error is a busy database, 503 in a view).
    SQLite locks the whole database for writing instead: ``transaction.atomic`` begins with ``BEGIN
    IMMEDIATE`` when the project sets ``"transaction_mode": "IMMEDIATE"`` (the demo does); otherwise,
    or inside a transaction already open, a write that changes nothing takes the lock first, so two
    refreshes never both read the same refresh token.
    """
    alias = router.db_for_write(ProviderToken)
    connection = connections[alias]
    nested = connection.in_atomic_block
    with transaction.atomic(using=alias):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = %s", [f"{int(conf.PROVIDER_TOKENS_LOCK_TIMEOUT * 1000)}ms"])
        elif connection.vendor == "sqlite":
            mode = str(connection.settings_dict.get("OPTIONS", {}).get("transaction_mode") or "").upper()
            if nested or mode not in ("IMMEDIATE", "EXCLUSIVE"):
                ProviderToken.objects.using(alias).filter(identity=identity).update(last_error=F("last_error"))
        row = ProviderToken.objects.using(alias).select_for_update().filter(identity=identity).first()
        if row is None:
            raise NoProviderToken(f"no stored tokens for {_who(identity)}")
        yield row


def _fresh(row: ProviderToken) -> bool:
    if not row.access_token:
        return False
    if row.expires_at is None:
        return True
    return row.expires_at - timezone.now() > datetime.timedelta(seconds=conf.PROVIDER_TOKENS_REFRESH_MARGIN)


def _reveal(stored: str, identity: Identity) -> str:
    return client_secrets.decrypt(stored, owner=f"stored token of {_who(identity)}")


def _who(identity: Identity) -> str:
    return f"{identity.provider.slug} identity of user {identity.user_id}"


def _identity(user: AbstractBaseUser | None, provider: Provider | str | None, identity: Identity | None) -> Identity:
    if identity is not None:
        return identity
    if user is None or provider is None:
        raise TypeError("access_token() needs a user and a provider, or identity=")
    found_in = Identity.objects.select_related("provider").filter(user_id=user.pk).order_by("pk")
    if isinstance(provider, str):
        found_in = found_in.filter(provider__slug=provider)
    else:
        found_in = found_in.filter(provider=provider)
    found = found_in.first()
    if found is None:
        raise NoProviderToken(f"user {user.pk} has no identity at {getattr(provider, 'slug', provider)}")
    return found


# --- calling the provider's API --------------------------------------------------------------------


@sensitive_variables("token")
def call_with_token(identity: Identity, call: Callable[[str], T]) -> T:
    """``call(access_token)``; on a 401 from the provider, refresh once and call once more (never a loop).

    For idempotent calls only (a GET of userinfo or the user API): the call is made again.
    """
    token = access_token(identity=identity)
    try:
        return call(token)
    except ProviderHTTPError as exc:
        if exc.http_status != 401:
            raise
    return call(refresh(identity, rejected=token))


class ProviderTokenAuth(requests.auth.AuthBase):
    """``requests`` authentication with an identity's stored token: bearer header, one refresh on a 401.

    ``requests.get(url, auth=ProviderTokenAuth(identity))``. An idempotent request refused with 401
    gets its token refreshed (single-flight, like ``access_token``) and is sent once more; a second
    401 is returned as it is. Only https URLs get the token (http on loopback while DEBUG, as for
    providers), so it never crosses a network in clear.
    """

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        #: The grant's DPoP key (RFC 9449), read once; None: bearer tokens.
        self._dpop_key: Any = None
        self._dpop_loaded = False
        self._dpop_nonce: str | None = None

    @sensitive_variables("token")
    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        require_secure_url(request.url or "", what="provider API URL")
        token = access_token(identity=self.identity)
        self._authorize(request, token)
        if (request.method or "").upper() in IDEMPOTENT_METHODS:
            request.register_hook("response", self._retry_once)
        return request

    @sensitive_variables("token", "key")
    def _authorize(self, request: requests.PreparedRequest, token: str) -> None:
        """``Bearer``, or for a DPoP-bound grant the ``DPoP`` scheme with a fresh proof of this request."""
        if not self._dpop_loaded:
            row = ProviderToken.objects.filter(identity=self.identity).only("dpop_key").first()
            if row is not None and row.dpop_key:
                self._dpop_key = dpop.import_key(_reveal(row.dpop_key, self.identity))
            self._dpop_loaded = True
        if self._dpop_key is None:
            request.headers["Authorization"] = f"Bearer {token}"
            return
        request.headers["Authorization"] = f"DPoP {token}"
        request.headers["DPoP"] = dpop.make_proof(
            self._dpop_key, htm=request.method or "GET", htu=request.url or "", access_token=token,
            nonce=self._dpop_nonce,
        )  # fmt: skip

    @sensitive_variables("sent", "token")
    def _retry_once(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if response.status_code != 401 or getattr(request, "_oidc_signin_retried", False):
            return response
        sent = str(request.headers.get("Authorization", "")).partition(" ")[2]
        nonce = response.headers.get("DPoP-Nonce")
        if (
            self._dpop_key is not None
            and nonce
            and 'error="use_dpop_nonce"' in response.headers.get("WWW-Authenticate", "")
        ):
            self._dpop_nonce, token = nonce[:500], sent  # RFC 9449 9: the same token, a proof with the nonce
        else:
            token = refresh(self.identity, rejected=sent)
        response.content  # noqa: B018 -- read the body so the connection can be reused
        response.close()
        retry = request.copy()
        self._authorize(retry, token)
        retry._oidc_signin_retried = True  # type: ignore[attr-defined]
        assert response.connection is not None  # set by requests' adapter on every response
        again = response.connection.send(retry, **kwargs)
        again.history.append(response)
        again.request = retry
        return again


class _BoundedSession(requests.Session):
    """A session whose calls have the app's timeouts (``ACCOUNTS_OIDC_HTTP_TIMEOUT``) unless given."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", conf.OIDC_HTTP_TIMEOUT)
        return super().request(method, url, *args, **kwargs)


def api_session(identity: Identity) -> requests.Session:
    """A ``requests`` session calling the provider's API as ``identity``: bounded time, no cookies kept."""
    session = _BoundedSession()
    session.auth = ProviderTokenAuth(identity)
    session.trust_env = False  # no ~/.netrc credentials in place of the bearer token
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


# --- when the grant is gone ----------------------------------------------------------------------


def reconnect_url(identity: Identity | Provider, scopes: list[str] | tuple[str, ...] = ()) -> str:
    """Where to send the person to grant access again: a page that starts the connect flow with consent.

    ``scopes`` are asked for on top of the provider's own (incremental authorization). A view can
    redirect there; the page asks for a click (POST, CSRF-protected) before leaving for the provider.
    """
    provider = identity.provider if isinstance(identity, Identity) else identity
    url = reverse("oidc_signin:reconnect", args=[provider.slug])
    extra = [s for s in dict.fromkeys(scopes) if s not in provider.scope_list]
    return f"{url}?{urlencode({'scope': ' '.join(extra)})}" if extra else url


#: A scope token (RFC 6749 3.3): printable ASCII without space, quote or backslash.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,200}")
#: Most extra scopes one reconnect may ask for.
MAX_EXTRA_SCOPES = 20


def requested_scopes(value: str) -> list[str]:
    """The extra scopes a reconnect asks for, from a query or form value; malformed ones are dropped."""
    return [s for s in dict.fromkeys(value.split()) if _SCOPE_TOKEN.fullmatch(s)][:MAX_EXTRA_SCOPES]


def asking_for_more(provider: Provider, scopes: list[str]) -> Provider:
    """An unsaved copy of ``provider`` whose authorization request adds ``scopes`` and asks for consent.

    Incremental authorization: the person grants the extra scopes on top of what they granted, and
    ``prompt=consent`` makes the provider ask (and, for Google, issue a refresh token again).
    """
    copy = Provider.objects.get(pk=provider.pk) if provider.pk else provider
    copy.scopes = " ".join(dict.fromkeys([*provider.scope_list, *scopes]))
    copy.extra_auth_params = {**(provider.extra_auth_params or {}), "prompt": "consent"}
    return copy


def _with_reconnect(error: SignInError, identity: Identity, granted: list[str] | None = None) -> SignInError:
    """``error`` with the page that grants access again, asking for every scope granted before."""
    if isinstance(error, ProviderTokenError):
        error.reconnect_url = reconnect_url(identity, granted or [])
    return error


# --- revocation ------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Revocation:
    """What revoking needs once the row is gone: the provider, who it was, and the tokens (encrypted)."""

    provider: Provider
    user_id: Any
    issuer: str
    subject: str
    access_token: str
    refresh_token: str

    @sensitive_variables("access", "refresh")
    def at_provider(self, *, reason: str) -> bool:
        """Best effort: revoke at the provider, write the audit row; never raises a provider's failure."""
        owner = f"stored token of {self.provider.slug} identity of user {self.user_id}"
        outcome, code, done = Outcome.SUCCESS, "", False
        try:
            access = client_secrets.decrypt(self.access_token, owner=owner)
            refresh = client_secrets.decrypt(self.refresh_token, owner=owner)
            done = get_adapter().get_client(self.provider).revoke(access_token=access, refresh_token=refresh)
            detail = f"{reason}; revoked at the provider" if done else f"{reason}; the provider offers no revocation"
        except SignInError as exc:
            outcome, code = Outcome.FAILURE, exc.code
            detail = f"{reason}; revocation at the provider failed: {exc.reason}"
            logger.warning("provider token revocation failed: provider=%s reason=%s", self.provider.slug, exc.reason)
        user = get_user_model()._default_manager.filter(pk=self.user_id).first()
        audit.record(
            None,
            outcome=outcome,
            action=Action.TOKENS_REVOKED,
            provider=self.provider,
            user=user,
            issuer=self.issuer,
            subject=self.subject,
            code=code,
            reason=detail,
        )
        return done


def revoke(identity: Identity, *, reason: str = "revoked on request") -> bool:
    """Revoke ``identity``'s grant at the provider (best effort), then delete the stored tokens.

    Returns whether the provider confirmed the revocation; an audit row says how it went.
    """
    row = ProviderToken.objects.filter(identity=identity).first()
    if row is None:
        return False
    pending = _revocation(row, identity)
    done = pending.at_provider(reason=reason)
    # The delete receiver must not revoke it a second time.
    row._oidc_signin_revoked = True  # type: ignore[attr-defined]
    row.delete()
    return done


def _revocation(row: ProviderToken, identity: Identity) -> _Revocation:
    return _Revocation(
        provider=identity.provider,
        user_id=identity.user_id,
        issuer=identity.issuer,
        subject=identity.subject,
        access_token=row.access_token,
        refresh_token=row.refresh_token,
    )


@receiver(pre_delete, sender=ProviderToken, dispatch_uid="oidc_signin_revoke_deleted_provider_tokens")
def _revoke_when_deleted(sender: type[ProviderToken], instance: ProviderToken, using: str, **kwargs: Any) -> None:
    """Tokens deleted with their identity (a disconnect) or user (a deleted account) are revoked first.

    Before the row goes, so that whatever happens next fails closed: if the deletion is rolled
    back, the kept tokens meet ``invalid_grant`` and ask for a reconnect; if the process dies
    after the deletion, the grant is already revoked at the provider rather than left alive with
    nobody holding its tokens. Best effort and bounded by the app's HTTP timeouts.
    """
    if getattr(instance, "_oidc_signin_revoked", False) or instance.revoked_at is not None or not instance.access_token:
        return
    identity = Identity.objects.using(using).select_related("provider").filter(pk=instance.identity_id).first()
    if identity is None:
        return
    _revocation(instance, identity).at_provider(reason="deleted with its identity")


def _record(outcome: str, action: str, identity: Identity, error: SignInError) -> None:
    audit.record(
        None,
        outcome=outcome,
        action=action,
        provider=identity.provider,
        user=identity.user,
        issuer=identity.issuer,
        subject=identity.subject,
        code=error.code,
        reason=error.reason,
    )


# --- the profile's "Update from <provider>" --------------------------------------------------------


def fetch_profile(identity: Identity) -> dict[str, Any]:
    """The person's current claims from the provider's userinfo (or GitHub-style user API), via the vault.

    The answer must be about this identity (its ``sub``), or it is refused.
    """
    client = _bound_client(identity)
    claims = call_with_token(identity, lambda token: client.fetch_profile(access_token=token))
    if not isinstance(claims.get("sub"), str) or claims["sub"] != identity.subject:
        raise TokenRejected(f"{identity.provider.slug} profile answer is about another subject")
    return claims


def status(identity: Identity) -> ProviderToken | None:
    """The stored tokens' row, for showing their status (never their values)."""
    return ProviderToken.objects.filter(identity=identity).first()
