"""The sign-in flow, browser side: start a sign-in, finish it, log in.

``begin_login`` and ``finish_login`` are the two halves views call. What a started sign-in must
remember (state, nonce, PKCE verifier) waits in a signed cookie of its own (``accounts.pending``),
so starting one writes nothing here and several tabs can sign in at once; ``finish_login`` spends
it *before* talking to the provider, so a replayed or doubled callback finds nothing to reuse.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_variables

from . import admission, audit, provider_tokens, session
from . import pending as pending_logins
from .adapter import get_adapter
from .choices import Action, Outcome
from .claims import storable
from .errors import InvalidRequest, SignInError
from .identities import connect_identity, sign_in_identity
from .oidc.clients import PendingLogin, VerifiedLogin

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

    from .models import Identity, Provider

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class SignInAttempt:
    """One sign-in or connect as it goes: started by a view, filled in by the flow, audited from here.

    Each step adds what it learnt -- the pending login once the callback's state matched, the
    verified login once the provider's answer passed every check, the user once it is mapped -- so
    whatever step fails, the audit trail records what was attempted and by which identity.
    """

    provider: Provider | None
    action: Action = Action.SIGN_IN
    pending: PendingLogin | None = None
    verified: VerifiedLogin | None = None
    user: AbstractBaseUser | None = None
    #: Where the browser goes next once the attempt succeeded.
    next_url: str = ""

    @property
    def issuer(self) -> str:
        return self.verified.issuer if self.verified is not None else ""

    @property
    def subject(self) -> str:
        return self.verified.subject if self.verified is not None else ""


def safe_next_url(request: HttpRequest, candidate: str | None) -> str:
    """``candidate`` if it points to this site (no open redirect), else LOGIN_REDIRECT_URL."""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def begin_login(request: HttpRequest, attempt: SignInAttempt, *, next_url: str | None) -> str:
    """Start ``attempt`` (a sign-in, or the connect of another provider) and return the URL to go to.

    A connect remembers which user asked for it: the callback attaches the identity only if the
    same user is still signed in, so a forged callback cannot attach someone else's identity.
    """
    provider = _provider(attempt)
    client = get_adapter().get_client(provider)
    redirect_uri = request.build_absolute_uri(reverse("oidc_signin:callback", args=[provider.slug]))
    next_url = pending_logins.keepable_next_url(
        safe_next_url(request, next_url), fallback=resolve_url(settings.LOGIN_REDIRECT_URL)
    )
    url, pending = client.authorization_url(redirect_uri=redirect_uri, next_url=next_url, now=time.time())
    if attempt.action == Action.CONNECT:
        pending.connect_user = str(request.user.pk)
    attempt.pending = pending
    pending_logins.store(request, pending)
    return url


@sensitive_variables("params")
def finish_login(request: HttpRequest, attempt: SignInAttempt) -> None:
    """Complete the sign-in (or connect) this callback belongs to; ``attempt`` says how it went.

    The pending login is spent (this answer deletes its cookie) before anything else, every
    network call follows, and the writes come last, in one short transaction: identity, user,
    session (written once, see ``accounts.session``), its provider link and the audit row commit
    together or not at all, and SQLite's single writer is held for milliseconds.
    """
    provider = _provider(attempt)
    params = _single_valued(request)
    attempt.pending = pending = pending_logins.pop(request, params.get("state"))
    if pending.provider != provider.slug:
        raise InvalidRequest(f"callback for {provider.slug} carries the state of a {pending.provider} sign-in")
    attempt.action = Action.CONNECT if pending.connect_user is not None else Action.SIGN_IN
    attempt.next_url = safe_next_url(request, pending.next_url)
    verified = get_adapter().get_client(provider).complete(params, pending)  # every network call
    complete_sign_in(request, attempt, verified)


def complete_sign_in(request: HttpRequest, attempt: SignInAttempt, verified: VerifiedLogin) -> None:
    """From a verified login to a session: admission, then identity, user, session and audit row at once.

    The redirect flow's callback ends here, and so do the sign-ins without a redirect
    (``accounts.no_redirect``): whatever way the ID token arrived, the same policy and the same
    writes follow it.
    """
    provider = _provider(attempt)
    verified.claims = storable(verified.claims)
    attempt.verified = verified
    admission.admit(request, provider, verified.claims)
    try:
        with transaction.atomic():
            if attempt.action == Action.CONNECT:
                _finish_connect(request, attempt, provider, verified)
            else:
                _finish_sign_in(request, attempt, provider, verified)
            record(request, attempt)
    except BaseException:
        session.undo(request)  # rolled back: the session object must not stay signed in either
        raise


def record(request: HttpRequest, attempt: SignInAttempt, error: SignInError | None = None) -> None:
    """The attempt's row in the audit trail: a success, or the failure ``error`` ended it with."""
    user = attempt.user
    if user is None and request.user.is_authenticated:
        user = request.user  # a failed connect, or a failure while signed in: whose session it was
    audit.record(
        request,
        outcome=Outcome.FAILURE if error is not None else Outcome.SUCCESS,
        action=attempt.action,
        provider=attempt.provider,
        user=user,
        issuer=attempt.issuer,
        subject=attempt.subject,
        code=error.code if error is not None else "",
        reason=error.reason if error is not None else "",
        with_caller=error is None,  # a success is written in the sign-in's own transaction
    )


def _finish_sign_in(request: HttpRequest, attempt: SignInAttempt, provider: Provider, verified: VerifiedLogin) -> None:
    result = sign_in_identity(
        request=request, provider=provider, issuer=verified.issuer, subject=verified.subject, claims=verified.claims
    )
    session.sign_in(request, result.user, provider=provider, claims=verified.claims, id_token=verified.id_token)
    _keep_tokens(provider, result.identity, verified)
    attempt.user = result.user


def _finish_connect(request: HttpRequest, attempt: SignInAttempt, provider: Provider, verified: VerifiedLogin) -> None:
    user = request.user
    pending = attempt.pending
    if not user.is_authenticated or pending is None or str(user.pk) != pending.connect_user:
        raise InvalidRequest("connect callback arrived in a session of another (or no) user")
    identity = connect_identity(
        request=request,
        provider=provider,
        user=user,
        issuer=verified.issuer,
        subject=verified.subject,
        claims=verified.claims,
    )
    _keep_tokens(provider, identity, verified)
    attempt.user = user


def _keep_tokens(provider: Provider, identity: Identity, verified: VerifiedLogin) -> None:
    """The provider's tokens, kept encrypted for API calls when its ``store_tokens`` is on."""
    if provider.store_tokens and verified.token_response:
        provider_tokens.store(
            identity, verified.token_response, requested_scopes=provider.scope_list, dpop_key=verified.dpop_key
        )


def _provider(attempt: SignInAttempt) -> Provider:
    if attempt.provider is None:
        raise ValueError("a sign-in attempt needs its provider before it can start")
    return attempt.provider


def _single_valued(request: HttpRequest) -> dict[str, str]:
    """The callback's query as a plain dict; a repeated parameter is a tampered response (RFC 6749 3.1)."""
    params = {}
    for name, values in request.GET.lists():
        if len(values) != 1:
            raise InvalidRequest(f"callback repeats the {name[:32]!r} parameter")
        params[name] = values[0]
    return params
