"""Which Django sessions each provider sign-in created, so they can be ended later.

Back-channel logout (the provider says a session ended there) and disconnecting a provider (its
sessions here must end too) both need to turn "this provider account" into "these Django session
keys", whatever session engine the site uses. Every sign-in records a ``ProviderSession`` row;
the session itself says that it has rows (``LINK_SESSION_KEY``), so that when Django gives the
session a new key -- a password change, ``cycle_key()`` -- ``ProviderSessionMiddleware`` moves its
rows to the new key instead of leaving them pointing at a key that no longer exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings

from . import login
from .models import ProviderSession

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.contrib.sessions.backends.base import SessionBase
    from django.db.models import QuerySet
    from django.http import HttpRequest

    from .models import Provider

#: In the session, once a sign-in recorded its rows: they are the ones under the session's key.
LINK_SESSION_KEY = "oidc_signin_provider_session"


def remember(request: HttpRequest, provider: Provider, user: AbstractBaseUser, claims: dict[str, Any]) -> None:
    """Record that this session came from (provider, sid, sub), for back-channel logout and disconnect.

    The row needs the session's key, so the session is written here (``login.save``: once, in the
    sign-in's transaction); the session says it has rows before that write, so nothing is left
    to write after it. A session that had rows (the same person signing in again) takes them along
    to its new key.
    """
    session = request.session
    had_rows = bool(session.get(LINK_SESSION_KEY))
    session[LINK_SESSION_KEY] = True
    session_key = login.save(request)
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


def forget(session_key: str | None) -> None:
    """The session ended here (local logout): nothing is left for the provider to end."""
    if session_key:
        ProviderSession.objects.filter(session_key=session_key).delete()


def forget_dead() -> int:
    """Drop the records whose session expired or ended without a logout; returns how many."""
    store = _session_store()
    dead = [
        pk
        for pk, key in ProviderSession.objects.values_list("pk", "session_key").iterator(chunk_size=500)
        if not store().exists(key)
    ]
    for start in range(0, len(dead), 500):
        ProviderSession.objects.filter(pk__in=dead[start : start + 500]).delete()
    return len(dead)


def follow_key_change(request: HttpRequest) -> None:
    """Move this session's rows to its new key if Django changed the key during this request.

    The key the rows are under is the one the request came with (its cookie); a key changes only
    with a write (``cycle_key()``, ``flush()``), so a session left unmodified is not looked at; nor
    is one a sign-in wrote (``remember`` put its rows under the new key, and took along only rows
    that were this person's).
    """
    session = getattr(request, "session", None)
    if session is None or not session.modified or login.saved_here(request) or not session.get(LINK_SESSION_KEY):
        return
    _move_rows(request, session.session_key)


def _move_rows(request: HttpRequest, new_key: str | None) -> None:
    """Move the rows under the session key this request came with (its cookie) to ``new_key``."""
    old_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if old_key and new_key is not None and old_key != new_key:
        ProviderSession.objects.filter(session_key=old_key).update(session_key=new_key)


@dataclass(frozen=True)
class Ended:
    """What ``end`` did: how many live sessions it ended, and whether the caller's own was among them."""

    count: int
    includes_current: bool


def end(links: QuerySet[ProviderSession], *, current_key: str | None = None) -> Ended:
    """End every live Django session behind ``links`` and drop the rows.

    A key whose session already expired or was ended is not counted: the count says what really
    happened. The caller's own session (``current_key``) is left to the caller, who must end it
    with ``django.contrib.auth.logout`` so the response does not save it again.
    """
    store = _session_store()
    keys = set(links.values_list("session_key", flat=True))
    ended = 0
    for key in keys - {current_key}:
        if store().exists(key):
            store(session_key=key).delete()
            ended += 1
    links.delete()
    includes_current = current_key is not None and current_key in keys
    return Ended(count=ended + int(includes_current), includes_current=includes_current)


def _session_store() -> type[SessionBase]:
    """The configured engine's store: asked, not assumed, so every session backend works."""
    return import_module(settings.SESSION_ENGINE).SessionStore
