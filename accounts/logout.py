"""Signing out everywhere: RP-initiated logout and OpenID Connect Back-Channel Logout 1.0.

* ``end_session_url`` -- when the provider has an ``end_session_endpoint``, local logout continues
  there with ``id_token_hint``, ``client_id`` and ``post_logout_redirect_uri``, so the person is
  signed out at the provider too and comes back to this site.
* ``backchannel_logout`` -- every sign-in records which Django session it created under the
  provider's ``sid`` and the subject (``accounts.session``); a verified logout token from
  the provider ends exactly those sessions, through the configured session engine.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.shortcuts import resolve_url
from django.views.decorators.debug import sensitive_variables

from . import replay, session
from .adapter import get_adapter
from .errors import InvalidRequest, SignInError
from .models import ProviderSession

if TYPE_CHECKING:
    from django.http import HttpRequest

    from .models import Provider

logger = logging.getLogger(__name__)


def post_logout_redirect_uri(request: HttpRequest) -> str:
    """Where the provider sends the person back to; register it with the provider."""
    return request.build_absolute_uri(resolve_url(settings.LOGOUT_REDIRECT_URL or "oidc_signin:login"))


@sensitive_variables("id_token")
def end_session_url(request: HttpRequest, provider: Provider, id_token: str | None) -> str | None:
    """The provider's logout URL for this session (OpenID Connect RP-Initiated Logout 1.0), or None.

    None when the provider has no end_session_endpoint or is unreachable right now: local logout
    must never fail because the provider is down.
    """
    try:
        client = get_adapter().get_client(provider)
    except SignInError as exc:
        logger.warning("RP-initiated logout skipped for %s: %s", provider.slug, exc.reason)
        return None
    return client.end_session_url(id_token=id_token, post_logout_redirect_uri=post_logout_redirect_uri(request))


@sensitive_variables("raw_token")
def backchannel_logout(provider: Provider, raw_token: str) -> int:
    """Verify a logout token and end every session it names; returns how many were ended.

    The token's jti is spent (``accounts.replay``) in the transaction that ends the sessions: if
    the ending fails (a busy database, say), the memory rolls back with it, so the provider's retry
    of this very token (section 2.8) is not refused as a replay and the sessions it names do end.
    """
    if not isinstance(raw_token, str) or not raw_token:
        raise InvalidRequest("back-channel logout request has no logout_token")
    claims = get_adapter().get_client(provider).verify_logout_token(raw_token)
    links = ProviderSession.objects.filter(provider__issuer=provider.issuer, issuer=claims["iss"])
    if claims.get("sid"):
        links = links.filter(sid=claims["sid"])
    if claims.get("sub"):
        links = links.filter(subject=claims["sub"])
    with transaction.atomic():
        _refuse_replay(claims)
        return session.end(links).count


def _refuse_replay(claims: dict[str, Any]) -> None:
    """A logout token is single-use (2.6, step 8): its jti is spent until the token expires, however far away.

    A shorter memory would let a captured token be replayed once it is forgotten; see ``accounts.replay``.
    """
    if not replay.spend(replay.TokenUse.LOGOUT, issuer=claims["iss"], jti=claims["jti"], exp=claims["exp"]):
        raise InvalidRequest("logout token was already used (jti replay)")
