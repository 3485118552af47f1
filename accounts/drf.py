"""Django REST framework classes for bearer access tokens: the same rules as ``accounts.api``.

Django REST framework is an optional dependency (``pip install django-oidc-signin[drf]``): nothing
else in the app imports this module, so a site without DRF never loads it.

* ``BearerTokenAuthentication`` verifies ``Authorization: Bearer <JWT>`` with ``accounts.api``'s
  rules; ``request.auth`` is the ``BearerPrincipal``, ``request.user`` its user (anonymous for a
  machine client). A request without a bearer token is left to the next authentication class.
* ``RequiredScopes`` is the permission asking for the view's ``required_scopes``.

Refusals keep RFC 6750's answers: ``accounts.api.challenge`` and ``error_body`` build the
``WWW-Authenticate`` header and the body, here as everywhere, and the one log line is written by
``accounts.api.log_refusal``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser

# DRF ships no type information (the optional dependency is in requirements-dev.txt, so mypy sees it).
from rest_framework import exceptions  # type: ignore[import-untyped]
from rest_framework.authentication import BaseAuthentication  # type: ignore[import-untyped]
from rest_framework.permissions import BasePermission  # type: ignore[import-untyped]
from rest_framework.request import Request  # type: ignore[import-untyped]

from . import api


class BearerTokenRefused(exceptions.APIException):
    """A ``BearerError`` as DRF answers it: its status, its body, and its challenge as ``auth_header``.

    Not a subclass of ``AuthenticationFailed``: DRF would replace the header by the first
    authentication class's and, without one, turn the 401 into a 403.
    """

    def __init__(self, error: api.BearerError) -> None:
        super().__init__(detail=api.error_body(error))
        self.status_code = error.status
        if isinstance(error, api.ServiceUnavailable):
            self.wait = error.retry_after
        elif not isinstance(error, api.AccessDenied):  # a refused holder: no challenge, as in accounts.api
            self.auth_header = api.challenge(error)


def _refused(request: Request, error: api.BearerError) -> BearerTokenRefused:
    api.log_refusal(request._request, error)
    return BearerTokenRefused(error)


class BearerTokenAuthentication(BaseAuthentication):
    """RFC 9068 access tokens from the configured providers (see ``accounts.api``).

    The view's attributes set its policy: ``bearer_audience`` (else ``ACCOUNTS_API_AUDIENCE``),
    ``bearer_callers``, ``bearer_unknown_subject``, ``bearer_refuse_replay`` and ``bearer_profile``
    (``"app-session"``: apps' session tokens, ``accounts.app_sessions``). Scopes are a
    permission's business (``RequiredScopes``), as DRF separates who from what.
    """

    def authenticate(self, request: Request) -> tuple[Any, api.BearerPrincipal] | None:
        try:
            api.bearer_token(request._request)
        except api.MissingToken:
            return None  # not ours: another class, or the permissions, decide
        except api.BearerError as error:
            raise _refused(request, error) from None
        view = request.parser_context.get("view") if request.parser_context else None
        policy = api.BearerPolicy(
            audience=getattr(view, "bearer_audience", None),
            callers=getattr(view, "bearer_callers", api.Callers.ANY),
            unknown_subject=getattr(view, "bearer_unknown_subject", None),
            refuse_replay=getattr(view, "bearer_refuse_replay", False),
            profile=getattr(view, "bearer_profile", api.TokenProfile.ACCESS_TOKEN),
        )
        try:
            principal = api.authenticate(request._request, policy)
        except api.BearerError as error:
            raise _refused(request, error) from None
        user = principal.user if isinstance(principal, api.UserPrincipal) else AnonymousUser()
        return user, principal

    def authenticate_header(self, request: Request) -> str:
        """What a request without credentials is told (RFC 6750 3.1: the scheme, no error code)."""
        return "Bearer"


class RequiredScopes(BasePermission):
    """Every scope of the view's ``required_scopes`` must be granted by the request's bearer token.

    A request not authenticated by a bearer token is refused (DRF answers 401 with the challenge);
    a token without a scope gets RFC 6750's 403 ``insufficient_scope`` naming what is needed.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, api.BearerPrincipal):
            return False
        needed = list(getattr(view, "required_scopes", ()))
        missing = [scope for scope in needed if scope not in principal.scopes]
        if missing:
            raise _refused(
                request,
                api.InsufficientScope(
                    f"access token of client {principal.client_id[:100]!r} lacks scope {' '.join(missing)[:200]}",
                    description="The access token does not grant the scope this API needs.",
                    scope=" ".join(needed),
                ),
            )
        return True
