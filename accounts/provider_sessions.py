"""Which Django sessions each provider sign-in created, so they can be ended later.

Back-channel logout (the provider says a session ended there) and disconnecting a provider (its
sessions here must end too) both need to turn "this provider account" into "these Django session
keys", whatever session engine the site uses. Every sign-in records a ``ProviderSession`` row;
the session itself remembers which row is its own (``LINK_SESSION_KEY``), so that when Django
gives the session a new key -- a password change, ``cycle_key()`` -- ``ProviderSessionMiddleware``
moves the row to the new key instead of leaving it pointing at a key that no longer exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings

from .models import ProviderSession

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.contrib.sessions.backends.base import SessionBase
    from django.db.models import QuerySet
    from django.http import HttpRequest

    from .models import Provider

#: In the session: ``[row id, session key it was recorded under]``.
LINK_SESSION_KEY = "oidc_signin_provider_session"


def remember(request: HttpRequest, provider: Provider, user: AbstractBaseUser, claims: dict[str, Any]) -> None:
    """Record that this session came from (provider, sid, sub), for back-channel logout and disconnect."""
    session_key = request.session.session_key
    if session_key is None:
        request.session.save()
        session_key = request.session.session_key
        if session_key is None:  # every session engine's save() assigns a key
            raise RuntimeError(f"{settings.SESSION_ENGINE} gave the session no key on save()")
    sid = claims.get("sid")
    # django-stubs types the ``user`` foreign key as the project's AUTH_USER_MODEL, which this reusable
    # app cannot name; ``user`` is always an instance of that model at runtime.
    link = ProviderSession.objects.create(  # type: ignore[misc]
        provider=provider,
        user=user,
        issuer=claims["iss"],
        subject=claims["sub"],
        sid=sid if isinstance(sid, str) else "",
        session_key=session_key,
    )
    request.session[LINK_SESSION_KEY] = [link.pk, link.session_key]


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
    """Move this session's row to its new key if Django changed the key during this request."""
    session = getattr(request, "session", None)
    if session is None or not session.accessed:  # not even read: its key cannot have changed
        return
    link = session.get(LINK_SESSION_KEY)
    new_key = session.session_key
    if not (isinstance(link, list) and len(link) == 2) or new_key is None or link[1] == new_key:
        return
    ProviderSession.objects.filter(pk=link[0], session_key=link[1]).update(session_key=new_key)
    session[LINK_SESSION_KEY] = [link[0], new_key]


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
