"""Middleware the app needs for back-channel logout to stay exact."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from . import provider_sessions


class ProviderSessionMiddleware:
    """Keeps each provider sign-in's record on its session's current key.

    Django gives a session a new key on a password change (``update_session_auth_hash``) or any
    ``cycle_key()``; without this, the provider's later logout would end nothing. Place it after
    ``SessionMiddleware``. It costs nothing on requests that never touch the session.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        provider_sessions.follow_key_change(request)
        return response
