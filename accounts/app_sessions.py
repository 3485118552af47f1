"""Session tokens for apps that keep no cookies: the session a sign-in made, carried as a bearer token.

``POST /accounts/<slug>/token/`` with ``"session": "token"`` answers, instead of a session cookie,
a token an app sends as ``Authorization: Bearer <token>`` to the paths of ``ACCOUNTS_API_PREFIXES``
whose profile is ``app-session`` (``accounts.api``). The token is this site's signature over the
Django session's key and the time it was issued, so it is

* short-lived: refused after ``ACCOUNTS_APP_SESSION_TTL`` seconds, whatever the session's own age;
* revocable: it is only as good as the session it names. Signing out (``DELETE`` on the token
  endpoint), a back-channel logout from the provider, disconnecting the provider, a password
  change, an admin deleting sessions -- whatever ends the session ends the token with it;
* checked like a browser's session: the user's session hash must still match (Django's
  ``get_user``), and the account must be active.

It never reaches a log, and holds no claims: the session holds what the sign-in left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user
from django.core import signing

from . import session as sessions
from .conf import conf
from .errors import TokenRejected
from .models import Identity, ProviderSession

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.contrib.sessions.backends.base import SessionBase
    from django.http import HttpRequest

#: The bearer token profile of ``ACCOUNTS_API_PREFIXES`` / ``bearer_token_required`` that takes these tokens.
PROFILE = "app-session"
_SALT = "oidc_signin.app-session"


def issue(request: HttpRequest) -> dict[str, Any]:
    """The token for the session this request just signed in (``accounts.session.sign_in`` wrote it).

    The session travels as this token instead of a cookie, so no session cookie is sent with it.
    """
    key = request.session.session_key
    if not key:
        raise RuntimeError("an app session token needs a saved session")
    sessions.withhold_cookie(request)
    token = _signer().sign_object({"k": key})
    return {"session_token": token, "token_type": "Bearer", "expires_in": conf.APP_SESSION_TTL}


def session_for(raw: str) -> SessionBase:
    """The live session ``raw`` names, or ``TokenRejected`` naming why not (forged, expired, ended)."""
    try:
        data = _signer().unsign_object(raw, max_age=conf.APP_SESSION_TTL)
    except signing.SignatureExpired:
        raise TokenRejected("app session token has expired") from None
    except signing.BadSignature:
        raise TokenRejected("app session token signature is not valid") from None
    key = data.get("k") if isinstance(data, dict) else None
    store = sessions.session_store()
    if not isinstance(key, str) or not key or not store().exists(key):
        raise TokenRejected("app session token names a session that has ended")
    return store(session_key=key)


def authenticate(request: HttpRequest, raw: str) -> tuple[AbstractBaseUser, Identity | None]:
    """The user of the app session ``raw``; the request's session becomes that session.

    With the session on the request, Django's ``get_user`` applies its own checks (backend,
    session hash after a password change) and a sign-out through the API ends this very session.
    """
    request.session = session_for(raw)
    user = get_user(request)
    if not user.is_authenticated or not getattr(user, "is_active", True):
        raise TokenRejected("app session token's session is signed out or its user is inactive")
    row = ProviderSession.objects.filter(session_key=request.session.session_key).order_by("-pk").first()
    identity = (
        Identity.objects.filter(issuer=row.issuer, subject=row.subject).select_related("provider").first()
        if row is not None
        else None
    )
    return user, identity


def _signer() -> signing.TimestampSigner:
    """Django's signer, with ``.`` between the parts so the token is an RFC 6750 ``b64token``."""
    return signing.TimestampSigner(salt=_SALT, sep=".")


def revoke(raw: str) -> None:
    """End the session ``raw`` names (and so the token): the app's sign-out."""
    session = session_for(raw)
    key = session.session_key
    session.flush()
    sessions.forget(key)
