"""The one owner of what a sign-in leaves in the Django session, from its first write to its last logout.

* ``sign_in`` -- Django's ``login()`` under a new session key, the session written once, complete,
  inside the sign-in's transaction, and a ``ProviderSession`` row saying which provider account
  made it (for back-channel logout and disconnect). ``undo`` takes it back when the sign-in's
  transaction rolls back.
* ``sign_out`` -- local logout: Django's ``logout()`` and the session's provider rows.
* ``end`` -- back-channel logout and disconnect: every live session behind some rows, through the
  configured session engine. ``forget_dead`` prunes rows whose session is gone.
* ``SignInSessionMiddleware`` -- sends what the request decided for the browser (the session cookie
  a sign-in wrote, the flow cookies of ``accounts.pending``) and moves the provider rows when
  Django gave the session a new key. No view owes anything before it returns.

Why the session is written here and not by ``SessionMiddleware``: ``django.contrib.auth.login``
rotates the key with ``cycle_key()``, which with database sessions INSERTs the new row at once;
``SessionMiddleware`` then UPDATEs that row with the signed-in data, in a transaction of its own:
two writes of one session, the second outside the sign-in's transaction. Here the key is rotated
with ``flush()`` instead (the old row is deleted and no new one is written yet), ``login()`` finds
the session already its user's and leaves the key alone, and the session is saved once. The
middleware then sends its cookie exactly as ``SessionMiddleware`` would, because that one sends it
only with a save of its own. Whatever changes the session afterwards (a message, a CSRF token kept
in the session) marks it modified again, and ``SessionMiddleware`` saves it as usual.

What a request decided (signed in here, session saved here, cookies to send) is kept in one record
per request, private to this module, rather than in attributes other modules set on the request.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.utils.crypto import get_random_string
from django.utils.http import http_date
from django.utils.module_loading import import_string

from .models import ProviderSession

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.contrib.sessions.backends.base import SessionBase
    from django.db.models import QuerySet
    from django.http import HttpRequest, HttpResponse

    from .models import Provider

#: The verified ID token of this session's sign-in, for RP-initiated logout's ``id_token_hint``.
ID_TOKEN_SESSION_KEY = "oidc_signin_id_token"
#: The slug of the provider this session signed in with.
PROVIDER_SESSION_KEY = "oidc_signin_provider"
#: In the session, once a sign-in recorded its rows: they are the ones under the session's key.
LINK_SESSION_KEY = "oidc_signin_provider_session"

#: The middleware's import path, as ``MIDDLEWARE`` names it (``accounts.checks`` requires it).
MIDDLEWARE_PATH = "accounts.session.SignInSessionMiddleware"


@dataclass
class _Cookie:
    """A cookie this request's answer sets (``value``) or deletes (``value`` None)."""

    value: str | None
    max_age: int | None = None
    secure: bool = False


@dataclass
class _Decided:
    """What this request decided about its session and cookies; read by the middleware only."""

    logged_in: bool = False
    saved: bool = False
    send_session_cookie: bool = True
    cookies: dict[str, _Cookie] = dataclasses.field(default_factory=dict)


_DECIDED: weakref.WeakKeyDictionary[HttpRequest, _Decided] = weakref.WeakKeyDictionary()


def _decided(request: HttpRequest) -> _Decided:
    decided = _DECIDED.get(request)
    if decided is None:
        decided = _DECIDED[request] = _Decided()
    return decided


# --- signing in -------------------------------------------------------------------------------------


def sign_in(
    request: HttpRequest,
    user: AbstractBaseUser,
    *,
    provider: Provider,
    claims: dict[str, Any],
    id_token: str | None,
) -> str:
    """Sign ``user`` in with ``provider`` under a new session key, written once; returns the key.

    Call it inside the sign-in's transaction: the session row and its ``ProviderSession`` row
    commit with the identity and the audit row, or not at all (then call ``undo``).
    """
    _log_in(request, user, backend=session_backend())
    request.session[PROVIDER_SESSION_KEY] = provider.slug
    if id_token:
        request.session[ID_TOKEN_SESSION_KEY] = id_token
    return _remember(request, provider, user, claims)


def _log_in(request: HttpRequest, user: AbstractBaseUser, *, backend: str) -> None:
    """``login()`` under a new session key, without writing the session yet.

    What the session held is kept when ``login()`` would keep it (an anonymous visitor's data, or
    the same user signing in again) and dropped when it would flush it (another user's session).
    """
    session = request.session
    keep = SESSION_KEY not in session or (request.user.is_authenticated and request.user.pk == user.pk)
    kept = dict(session.items()) if keep else {}
    session.flush()  # the session fixation defence: the old row goes; the next save picks a new key
    session.update(kept)
    # Already this user's session, so login() neither flushes nor cycles it: the key is new already.
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    _decided(request).logged_in = True
    # (The stubs expect the project's user model; any user model will do.)
    auth_login(request, user, backend=backend)  # type: ignore[arg-type]


def _remember(request: HttpRequest, provider: Provider, user: AbstractBaseUser, claims: dict[str, Any]) -> str:
    """Record that this session came from (provider, sid, sub), for back-channel logout and disconnect.

    The row needs the session's key, so the session is written here (once); the session says it
    has rows before that write, so nothing is left to write after it. A session that had rows (the
    same person signing in again) takes them along to its new key.
    """
    session = request.session
    had_rows = bool(session.get(LINK_SESSION_KEY))
    session[LINK_SESSION_KEY] = True
    session_key = _save(request)
    if had_rows:
        _move_rows(request, session_key)
    sid = claims.get("sid")
    # django-stubs types the ``user`` foreign key as the project's AUTH_USER_MODEL, which this reusable
    # app cannot name; ``user`` is always an instance of that model at runtime.
    ProviderSession.objects.create(  # type: ignore[misc]
        provider=provider,
        user=user,
        issuer=claims["iss"],
        subject=claims["sub"],
        sid=sid if isinstance(sid, str) else "",
        session_key=session_key,
    )
    return session_key


def _save(request: HttpRequest) -> str:
    """Write the session now, in the caller's transaction, and return its key."""
    session = request.session
    _save_new_key_at_once(session)
    session.modified = False
    _decided(request).saved = True
    key = session.session_key
    if key is None:  # every session engine's save() assigns a key
        raise RuntimeError(f"{settings.SESSION_ENGINE} gave the session no key on save()")
    return key


def _save_new_key_at_once(session: SessionBase) -> None:
    """``session.save()``, minus the query a new session's key costs.

    Saving a session without a key makes Django pick one and first ask the database whether a row
    has it (a SELECT per sign-in); the INSERT that follows (``must_create``) refuses a taken key
    all the same. So a new session gets a fresh random key here and is inserted at once; should the
    key exist (32 random characters: it will not), Django's own ``create()`` picks another.
    """
    if session.session_key is not None:
        session.save()
        return
    # Django's own setter (it validates the key), as create() sets it.
    session._session_key = get_random_string(32, VALID_KEY_CHARS)
    try:
        session.save(must_create=True)
    except CreateError:
        session._session_key = None
        session.create()


def withhold_cookie(request: HttpRequest) -> None:
    """This sign-in's session travels as a token (``accounts.app_sessions``): no cookie is sent for it."""
    _decided(request).send_session_cookie = False


def undo(request: HttpRequest) -> None:
    """A sign-in that failed after ``sign_in`` leaves no signed-in session behind.

    The transaction's rollback restored the rows, not this request's session object, which still
    holds the user: without this, a refusal answered with a 4xx page would be saved as signed in.
    """
    decided = _DECIDED.get(request)
    if decided is None or not decided.logged_in:
        return
    session = request.session
    try:
        session.flush()
    except DatabaseError:  # the database that just failed the sign-in: forget the session here only
        session.clear()
    if hasattr(request, "user"):
        request.user = AnonymousUser()


def session_backend() -> str:
    """The configured authentication backend that will find the user again on the next request.

    ``login()`` records it in the session, and Django asks it for the user on every request after;
    a backend that is not configured would sign the person in for this one response only. Any
    ``ModelBackend`` (or subclass) finds users by primary key; the first one configured is used.
    ``accounts.checks`` refuses to start without one (``oidc_signin.E002``).
    """
    for path in settings.AUTHENTICATION_BACKENDS:
        backend = import_string(path)
        if isinstance(backend, type) and issubclass(backend, ModelBackend):
            return path
    raise ImproperlyConfigured(
        "AUTHENTICATION_BACKENDS has no ModelBackend to keep provider sign-ins (oidc_signin.E002)"
    )


# --- signing out ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedOut:
    """What the ended session said about its sign-in: the provider's slug and ID token, if any."""

    provider_slug: str
    id_token: str | None


def signed_in_with(request: HttpRequest) -> str:
    """The slug of the provider this request's session signed in with, or ``""``."""
    return request.session.get(PROVIDER_SESSION_KEY) or ""


def sign_out(request: HttpRequest) -> SignedOut:
    """Sign out here: Django's ``logout()``, and nothing left for the provider to end."""
    said = SignedOut(provider_slug=signed_in_with(request), id_token=request.session.get(ID_TOKEN_SESSION_KEY))
    session_key = request.session.session_key
    auth_logout(request)
    forget(session_key)
    return said


def forget(session_key: str | None) -> None:
    """The session ended here: nothing is left for the provider to end."""
    if session_key:
        ProviderSession.objects.filter(session_key=session_key).delete()


def forget_dead() -> int:
    """Drop the records whose session expired or ended without a logout; returns how many."""
    store = session_store()
    dead = [
        pk
        for pk, key in ProviderSession.objects.values_list("pk", "session_key").iterator(chunk_size=500)
        if not store().exists(key)
    ]
    for start in range(0, len(dead), 500):
        ProviderSession.objects.filter(pk__in=dead[start : start + 500]).delete()
    return len(dead)


@dataclass(frozen=True)
class Ended:
    """What ``end`` did: how many live sessions it ended, and whether the caller's own was among them."""

    count: int
    includes_current: bool


def end(links: QuerySet[ProviderSession], *, current_key: str | None = None) -> Ended:
    """End every live Django session behind ``links`` and drop the rows.

    A key whose session already expired or was ended is not counted: the count says what really
    happened. The caller's own session (``current_key``) is left to the caller, who must end it
    with ``sign_out`` so the response does not save it again.
    """
    store = session_store()
    keys = set(links.values_list("session_key", flat=True))
    ended = 0
    for key in keys - {current_key}:
        if store().exists(key):
            store(session_key=key).delete()
            ended += 1
    links.delete()
    includes_current = current_key is not None and current_key in keys
    return Ended(count=ended + int(includes_current), includes_current=includes_current)


def session_store() -> type[SessionBase]:
    """The configured engine's store: asked, not assumed, so every session backend works."""
    return import_module(settings.SESSION_ENGINE).SessionStore


# --- the browser's cookies, and the session's key -----------------------------------------------------


def set_cookie_later(request: HttpRequest, name: str, value: str, *, max_age: int, secure: bool) -> None:
    """Set cookie ``name`` (HttpOnly, ``SameSite=Lax``, path ``/``) on this request's answer, whatever it is."""
    _decided(request).cookies[name] = _Cookie(value=value, max_age=max_age, secure=secure)


def delete_cookie_later(request: HttpRequest, name: str) -> None:
    """Delete cookie ``name`` (path ``/``) on this request's answer, whatever it is."""
    _decided(request).cookies[name] = _Cookie(value=None)


def _send(request: HttpRequest, response: HttpResponse) -> None:
    """Send what this request decided: its cookies, and the cookie of a session ``sign_in`` wrote."""
    decided = _DECIDED.pop(request, None)
    if decided is None:
        return
    for name, cookie in decided.cookies.items():
        if cookie.value is None:
            response.delete_cookie(name)  # path "/", and Secure for a __Host- one, as Django deletes
        else:
            response.set_cookie(
                name,
                cookie.value,
                max_age=cookie.max_age,
                path="/",
                secure=cookie.secure,
                httponly=True,
                samesite="Lax",
            )
    if decided.saved and decided.send_session_cookie:
        _send_session_cookie(request, response)


def _send_session_cookie(request: HttpRequest, response: HttpResponse) -> None:
    """The cookie ``SessionMiddleware.process_response`` sets after a save, for a session ``sign_in`` wrote.

    Nothing is sent when the session changed again since: ``SessionMiddleware`` saves it and sends
    the cookie itself.
    """
    session = request.session
    if session.modified or session.session_key is None:
        return
    if session.get_expire_at_browser_close():
        max_age, expires = None, None
    else:
        max_age = session.get_expiry_age()
        expires = http_date(time.time() + max_age)
    response.set_cookie(
        settings.SESSION_COOKIE_NAME,
        session.session_key,
        max_age=max_age,
        expires=expires,
        domain=settings.SESSION_COOKIE_DOMAIN,
        path=settings.SESSION_COOKIE_PATH,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=settings.SESSION_COOKIE_HTTPONLY,
        samesite=settings.SESSION_COOKIE_SAMESITE,
    )


def _follow_key_change(request: HttpRequest, *, saved_here: bool) -> None:
    """Move this session's rows to its new key if Django changed the key during this request.

    The key the rows are under is the one the request came with (its cookie); a key changes only
    with a write (``cycle_key()``, ``flush()``), so a session left unmodified is not looked at; nor
    is one a sign-in wrote (``sign_in`` put its rows under the new key, and took along only rows
    that were this person's).
    """
    session = getattr(request, "session", None)
    if session is None or not session.modified or saved_here or not session.get(LINK_SESSION_KEY):
        return
    _move_rows(request, session.session_key)


def _move_rows(request: HttpRequest, new_key: str | None) -> None:
    """Move the rows under the session key this request came with (its cookie) to ``new_key``."""
    old_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if old_key and new_key is not None and old_key != new_key:
        ProviderSession.objects.filter(session_key=old_key).update(session_key=new_key)


class SignInSessionMiddleware:
    """Sends what a sign-in decided for the browser, and keeps provider sign-ins on their session's key.

    On every answer: the flow cookies ``accounts.pending`` set or spent, the session cookie of a
    session a sign-in wrote (``SessionMiddleware`` sends one only with a save of its own), and,
    when Django gave the session a new key (``update_session_auth_hash``, any ``cycle_key()``), the
    provider's rows moved to it -- without that, the provider's later logout would end nothing.
    Place it after ``SessionMiddleware``; ``manage.py check`` refuses to start without it
    (``oidc_signin.E010``). It costs nothing on requests that never touch the session.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        decided = _DECIDED.get(request)
        _send(request, response)
        _follow_key_change(request, saved_here=decided is not None and decided.saved)
        return response
