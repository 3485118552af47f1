"""Started sign-ins waiting for their callbacks: one signed cookie each, nothing stored here.

Starting a sign-in writes nothing to the database: what its callback needs (state, nonce, PKCE
verifier, where to go next) rides in a cookie of its own, signed with Django's ``signing`` (the
``SECRET_KEY``), HttpOnly, ``SameSite=Lax`` (the provider sends the browser back with a top-level
GET) and expiring with the flow. A cookie per flow lets several tabs sign in at once without
overwriting each other; its name carries a digest of the state, so a callback reads exactly its
own, and the answer to that callback deletes it, whatever the outcome: single use.

On https the names take the ``__Host-`` prefix, so a sibling subdomain cannot plant a flow of its
own choosing in the browser (cookie tossing). What the cookie shows the browser is the browser's
own flow: a PKCE verifier protects the code from whoever intercepts the redirect, and they do not
have this cookie.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import TYPE_CHECKING

from django.core import signing
from django.views.decorators.debug import sensitive_variables

from . import session
from .conf import conf
from .errors import InvalidRequest
from .oidc.clients import PendingLogin

if TYPE_CHECKING:
    from collections.abc import Iterator

    from django.http import HttpRequest

logger = logging.getLogger(__name__)

#: The name of every flow cookie starts with this (after ``__Host-`` on https).
COOKIE_PREFIX = "oidc_signin_flow_"
_SECURE_PREFIX = "__Host-"
#: The ``signing`` salt of flow cookies: a value signed for anything else is not one.
SALT = "oidc_signin.pending"

NO_SUCH_STATE = "callback state matches no sign-in started in this browser"

#: The most bytes this app's flow cookies may add to a request's ``Cookie`` header, all together.
#: Every request to the site carries them, and servers refuse a header over about 8 KB (gunicorn
#: 8190 bytes a field, nginx 8 KB a buffer): past that, every page answers 400 to that browser.
#: 4 KB leaves the other half to the site's own cookies (session, CSRF, preferences).
MAX_COOKIE_HEADER_BYTES = 4096
#: The longest ``next`` (as JSON, the form it is kept in) a flow cookie keeps; a longer one is
#: replaced by ``LOGIN_REDIRECT_URL`` (``keepable_next_url``). A flow with the longest takes about
#: 1.6 KB (an ordinary one 0.5 KB), so at least two sign-ins always fit under ``MAX_COOKIE_HEADER_BYTES``.
MAX_NEXT_URL = 1024


def keepable_next_url(next_url: str, fallback: str) -> str:
    """``next_url`` if a flow cookie may keep it, else ``fallback`` (one log line says why).

    Django accepts a ``next`` of 2,048 characters, and anyone's page can start sign-ins here with
    top-level navigations: eight incompressible ones would make a 20 KB ``Cookie`` header.
    """
    length = len(json.dumps(next_url))  # a non-ASCII character is kept as a six-byte escape
    if length <= MAX_NEXT_URL:
        return next_url
    logger.info("next URL too long to keep with a started sign-in (%d > %d); using %s", length, MAX_NEXT_URL, fallback)
    return fallback


@sensitive_variables("value")
def store(request: HttpRequest, pending: PendingLogin) -> None:
    """Keep ``pending`` until its callback, within the bounds on flows and on their bytes.

    The newest flows are kept: at most ``OIDC_MAX_PENDING_FLOWS`` of them (this one included), and
    only as many as fit, with this one, in ``MAX_COOKIE_HEADER_BYTES`` of ``Cookie`` header; the
    oldest go first, and once one does not fit every older one goes too.
    """
    value = signing.dumps(dataclasses.asdict(pending), salt=SALT, compress=True)
    name = cookie_name(pending.state, secure=request.is_secure())
    budget = MAX_COOKIE_HEADER_BYTES - _header_bytes(name, value)
    room = conf.OIDC_MAX_PENDING_FLOWS - 1
    for old_name, old_value, _flow in sorted(_started(request), key=lambda item: item[2].created_at, reverse=True):
        size = _header_bytes(old_name, old_value) + len("; ")
        if room > 0 and size <= budget:
            room, budget = room - 1, budget - size
        else:
            room = 0  # evicted, and so is every older one
            session.delete_cookie_later(request, old_name)
    session.set_cookie_later(request, name, value, max_age=conf.OIDC_FLOW_TTL, secure=request.is_secure())


def _header_bytes(name: str, value: str) -> int:
    """What ``name=value`` adds to a ``Cookie`` header (a signed value is ASCII and needs no quoting)."""
    return len(name) + 1 + len(value)


@sensitive_variables("value")
def pop(request: HttpRequest, state: str | None) -> PendingLogin:
    """The started sign-in this callback's ``state`` belongs to, spent by this very request.

    Raises ``InvalidRequest`` when this browser started none with that state, when its cookie is
    not one this site signed (or was signed by another version of the app), or when it expired.
    """
    if not state:
        raise InvalidRequest(NO_SUCH_STATE)
    name = cookie_name(state, secure=request.is_secure())
    value = request.COOKIES.get(name)
    if not value:  # none, or one deleted already (a client may keep it as an empty value)
        # Nothing to delete, so nothing is sent: a stranger's made-up callback leaves no trace.
        raise InvalidRequest(NO_SUCH_STATE)
    session.delete_cookie_later(request, name)  # spent before anything else happens, whatever happens next
    try:
        pending = _load(value, max_age=conf.OIDC_FLOW_TTL)
    except signing.SignatureExpired:
        raise InvalidRequest("sign-in expired before its callback arrived") from None
    if pending is None:
        raise InvalidRequest("the stored sign-in for this callback is unreadable")
    if pending.state != state:  # a cookie renamed by hand: it belongs to another state
        raise InvalidRequest("the stored sign-in for this callback belongs to another state")
    return pending


def forget_all(request: HttpRequest) -> None:
    """Spend every sign-in this browser has started (signing out ends them too)."""
    for name, _value in _flow_cookies(request):
        session.delete_cookie_later(request, name)


def cookie_name(state: str, *, secure: bool) -> str:
    """The flow cookie of ``state``: a digest, so the name is a valid cookie name whatever the state."""
    digest = hashlib.sha256(state.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return _prefix(secure=secure) + digest


def _prefix(*, secure: bool) -> str:
    """What flow cookie names start with: on https only ``__Host-`` ones count."""
    return (_SECURE_PREFIX if secure else "") + COOKIE_PREFIX


def _flow_cookies(request: HttpRequest) -> Iterator[tuple[str, str]]:
    """This request's flow cookies, by name, less those a client kept after their deletion (empty)."""
    prefix = _prefix(secure=request.is_secure())
    return ((name, value) for name, value in request.COOKIES.items() if name.startswith(prefix) and value)


@sensitive_variables("value")
def _started(request: HttpRequest) -> list[tuple[str, str, PendingLogin]]:
    """This browser's flow cookies still worth keeping, with their values; the unreadable and expired are deleted."""
    found = []
    for name, value in _flow_cookies(request):
        try:
            pending = _load(value, max_age=conf.OIDC_FLOW_TTL)
        except signing.SignatureExpired:
            pending = None
        if pending is None:
            session.delete_cookie_later(request, name)
        else:
            found.append((name, value, pending))
    return found


@sensitive_variables("value", "data")
def _load(value: str, *, max_age: int) -> PendingLogin | None:
    """The flow a cookie holds, or None when it is not one this version of the app signed."""
    try:
        data = signing.loads(value, salt=SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise
    except (signing.BadSignature, ValueError):  # tampered, forged, or not even base64/zlib/JSON
        return None
    if not isinstance(data, dict):
        return None
    try:
        pending = PendingLogin(**data)
    except TypeError:  # fields of another version of the app
        return None
    if not isinstance(pending.created_at, int | float) or not isinstance(pending.state, str):
        return None
    return pending
