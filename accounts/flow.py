"""The sign-in flow, browser side: keep each started sign-in in the session, finish it, log in.

``begin_login`` and ``finish_login`` are the two halves views call. The secrets of a started
sign-in (state, nonce, PKCE verifier) live only in the server-side session, keyed by state, so
several tabs can sign in at once; ``finish_login`` removes the entry *before* talking to the
provider, so a replayed or doubled callback finds nothing to reuse.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import login as auth_login
from django.db import transaction
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from . import audit, provider_sessions
from .conf import conf
from .errors import InvalidRequest, SignInError
from .identities import connect_identity, sign_in_identity, storable_claims
from .oidc import client
from .restrictions import check_restrictions

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

    from .models import Provider

logger = logging.getLogger(__name__)

SESSION_KEY = "accounts_pending_logins"
#: Where the verified ID token of this session's sign-in is kept, for RP-initiated logout.
ID_TOKEN_SESSION_KEY = "accounts_id_token"
PROVIDER_SESSION_KEY = "accounts_provider"


def safe_next_url(request: HttpRequest, candidate: str | None) -> str:
    """``candidate`` if it points to this site (no open redirect), else LOGIN_REDIRECT_URL."""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def begin_login(request: HttpRequest, provider: Provider, *, next_url: str | None, connect: bool = False) -> str:
    """Start a sign-in (or, with ``connect``, the linking of another provider) and return the URL to go to.

    A connect flow remembers which user asked for it: the callback attaches the identity only if the
    same user is still signed in, so a forged callback cannot attach someone else's identity.
    """
    redirect_uri = request.build_absolute_uri(reverse("accounts:callback", args=[provider.slug]))
    url, pending = client.authorization_url(
        provider, redirect_uri=redirect_uri, next_url=safe_next_url(request, next_url), now=time.time()
    )
    if connect:
        pending.extra["connect_user"] = request.user.pk
    _store_pending(request, pending)
    return url


def finish_login(request: HttpRequest, provider: Provider) -> tuple[AbstractBaseUser, str, bool]:
    """Complete the sign-in (or connect) this callback belongs to.

    Returns the user, where to send them, and whether this was a connect.
    """
    params = _single_valued(request)
    pending = _pop_pending(request, params.get("state"), provider)
    action = "connect" if "connect_user" in pending.extra else "login"
    verified = None
    try:
        verified = client.complete_login(provider, params, pending)  # every network call happens here
        verified.claims = storable_claims(verified.claims)
        check_restrictions(provider, verified.claims)
        # Then one short write transaction: identity, user, session, its provider link and the audit
        # row commit together or not at all, and SQLite's single writer is held for milliseconds.
        with transaction.atomic():
            if action == "connect":
                user = _finish_connect(request, provider, verified, pending)
            else:
                user = _finish_sign_in(request, provider, verified)
    except SignInError as error:
        # For the audit trail: what was attempted and, once the token was verified, by whom.
        error.action = action
        if verified is not None:
            error.issuer, error.subject = verified.issuer, verified.subject
        raise
    return user, safe_next_url(request, pending.next_url), action == "connect"


def _finish_sign_in(request: HttpRequest, provider: Provider, verified: client.VerifiedLogin) -> AbstractBaseUser:
    result = sign_in_identity(
        request=request, provider=provider, issuer=verified.issuer, subject=verified.subject, claims=verified.claims
    )
    auth_login(request, result.user, backend="django.contrib.auth.backends.ModelBackend")  # rotates the session key
    request.session[PROVIDER_SESSION_KEY] = provider.slug
    if verified.id_token:
        request.session[ID_TOKEN_SESSION_KEY] = verified.id_token
    provider_sessions.remember(request, provider, result.user, verified.claims)
    audit.record(
        request, outcome="success", provider=provider, user=result.user, issuer=verified.issuer,
        subject=verified.subject,
    )  # fmt: skip
    return result.user


def _finish_connect(
    request: HttpRequest, provider: Provider, verified: client.VerifiedLogin, pending: client.PendingLogin
) -> AbstractBaseUser:
    user = request.user
    if not user.is_authenticated or user.pk != pending.extra["connect_user"]:
        raise InvalidRequest("connect callback arrived in a session of another (or no) user")
    connect_identity(
        request=request,
        provider=provider,
        user=user,
        issuer=verified.issuer,
        subject=verified.subject,
        claims=verified.claims,
    )
    audit.record(
        request,
        outcome="success",
        action="connect",
        provider=provider,
        user=user,
        issuer=verified.issuer,
        subject=verified.subject,
    )
    return user


def _single_valued(request: HttpRequest) -> dict[str, str]:
    """The callback's query as a plain dict; a repeated parameter is a tampered response (RFC 6749 3.1)."""
    params = {}
    for name, values in request.GET.lists():
        if len(values) != 1:
            raise InvalidRequest(f"callback repeats the {name[:32]!r} parameter")
        params[name] = values[0]
    return params


def _store_pending(request: HttpRequest, pending: client.PendingLogin) -> None:
    now = pending.created_at
    flows = {s: f for s, f in _pending(request).items() if now - f["created_at"] < conf.OIDC_FLOW_TTL}
    flows[pending.state] = dataclasses.asdict(pending)
    # Keep the newest few: enough for several tabs, not a session that grows without bound.
    newest = sorted(flows.items(), key=lambda item: item[1]["created_at"])[-conf.OIDC_MAX_PENDING_FLOWS :]
    request.session[SESSION_KEY] = dict(newest)


def _pop_pending(request: HttpRequest, state: str | None, provider: Provider) -> client.PendingLogin:
    flows = _pending(request)
    entry = flows.pop(state, None) if state else None
    if entry is None:
        # Nothing to remove, so nothing is written: a stranger's made-up callback creates no session.
        raise InvalidRequest("callback state matches no sign-in started in this session")
    request.session[SESSION_KEY] = flows  # removed before anything else happens: single use
    pending = client.PendingLogin(**entry)
    if pending.provider != provider.slug:
        raise InvalidRequest(f"callback for {provider.slug} carries the state of a {pending.provider} sign-in")
    if time.time() - pending.created_at > conf.OIDC_FLOW_TTL:
        raise InvalidRequest("sign-in expired before its callback arrived")
    return pending


def _pending(request: HttpRequest) -> dict[str, dict]:
    flows = request.session.get(SESSION_KEY)
    return dict(flows) if isinstance(flows, dict) else {}
