"""Signing a verified person in: Django's ``login()``, with the session written once.

``django.contrib.auth.login`` rotates the session key with ``cycle_key()``, which with database
sessions INSERTs the new row at once; ``SessionMiddleware`` then UPDATEs that row with the
signed-in data, in a transaction of its own: two writes of one session, the second outside the
sign-in's transaction. Here the key is rotated with ``flush()`` instead (the old row is deleted
and no new one is written yet), ``login()`` finds the session already its user's and leaves the
key alone, and ``save`` writes the session once, complete, inside the sign-in's transaction.
The view then sends the new session's cookie itself (``send_session_cookie``), exactly as
``SessionMiddleware`` would, because the middleware sends it only with a save of its own.

Whatever changes the session afterwards (a message kept in the session, a CSRF token kept in the
session) marks it modified again, and the middleware saves it as usual: correct, one write more.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth import login as auth_login
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError, SessionBase
from django.db import DatabaseError
from django.utils.crypto import get_random_string
from django.utils.http import http_date

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest, HttpResponse

#: On the request once ``log_in`` ran, and once ``save`` wrote its session (the cookie is then the view's).
_LOGGED_IN = "_oidc_signin_logged_in"
_SAVED = "_oidc_signin_session_saved"


def log_in(request: HttpRequest, user: AbstractBaseUser, *, backend: str) -> None:
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
    setattr(request, _LOGGED_IN, True)
    # (The stubs expect the project's user model; any user model will do.)
    auth_login(request, user, backend=backend)  # type: ignore[arg-type]


def save(request: HttpRequest) -> str:
    """Write the session now, in the caller's transaction, and return its key.

    After this, ``SessionMiddleware`` has nothing left to save, so it would send no cookie either;
    ``send_session_cookie`` sends it.
    """
    session = request.session
    _save(session)
    session.modified = False
    setattr(request, _SAVED, True)
    key = session.session_key
    if key is None:  # every session engine's save() assigns a key
        raise RuntimeError(f"{settings.SESSION_ENGINE} gave the session no key on save()")
    return key


def saved_here(request: HttpRequest) -> bool:
    """Whether ``save`` wrote this request's session, under the key it has now."""
    return bool(getattr(request, _SAVED, False))


def send_session_cookie(request: HttpRequest, response: HttpResponse) -> None:
    """The cookie ``SessionMiddleware.process_response`` sets after a save, for a session ``save`` wrote.

    Nothing is sent when the session changed again since (the middleware saves it and sends the
    cookie itself) or when ``save`` did not run in this request.
    """
    session = request.session
    if not saved_here(request) or session.modified or session.session_key is None:
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


def undo(request: HttpRequest) -> None:
    """A sign-in that failed after ``log_in`` leaves no signed-in session behind.

    The transaction's rollback restored the rows, not this request's session object, which still
    holds the user: without this, a refusal answered with a 4xx page would be saved as signed in.
    """
    if not getattr(request, _LOGGED_IN, False):
        return
    session = request.session
    try:
        session.flush()
    except DatabaseError:  # the database that just failed the sign-in: forget the session here only
        session.clear()
    if hasattr(request, "user"):
        request.user = AnonymousUser()


def _save(session: SessionBase) -> None:
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
