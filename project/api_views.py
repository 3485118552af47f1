"""The demo API: two views any client of the demo site can rely on (docs/api.md, the README's walk-through).

``GET /api/whoami/`` admits any valid access token from any enabled provider and says who called;
``GET /api/reports/`` needs the scope ``reports:read``. Both use ``accounts.api`` and nothing
else: the audience is ``DEMO_API_AUDIENCE`` (default ``demo-api``), a user token whose subject
never signed in here is refused unless ``DEMO_API_UNKNOWN_SUBJECT=create-user``. No product
logic lives here; each token is read by its provider's token profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from accounts.api import UserPrincipal, bearer_token_required, get_bearer

#: What the reports view lists: fixed demo data, the same for every caller.
REPORTS = [
    {"id": 1, "title": "Sign-ins this week", "value": 42},
    {"id": 2, "title": "Active machine clients", "value": 3},
]


def _caller(request: HttpRequest) -> dict[str, Any]:
    """The documented shape of ``/api/whoami/``: kind, issuer, sub, client_id, scopes, username."""
    bearer = get_bearer(request)
    assert bearer is not None  # the decorator ran
    username = bearer.user.get_username() if isinstance(bearer, UserPrincipal) else None
    return {
        "kind": "client" if bearer.is_machine else "user",
        "issuer": bearer.claims["iss"],
        "sub": bearer.subject,
        "client_id": bearer.client_id or None,
        "scopes": sorted(bearer.scopes),
        "username": username,
    }


def _whoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_caller(request))


def _reports(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"caller": _caller(request), "reports": REPORTS})


def _protected(view: Any, scopes: Sequence[str] = ()) -> Any:
    """``view`` behind a bearer token, with the policy read from settings at each request (tests override them)."""

    @csrf_exempt
    @require_GET
    def protected(request: HttpRequest) -> HttpResponse:
        guarded = bearer_token_required(
            audience=settings.DEMO_API_AUDIENCE,
            scopes=scopes,
            unknown_subject=settings.DEMO_API_UNKNOWN_SUBJECT,
        )(view)
        return guarded(request)

    return protected


whoami = _protected(_whoami)
reports = _protected(_reports, scopes=["reports:read"])


async def _async_whoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_caller(request))


@csrf_exempt
@require_GET
async def async_whoami(request: HttpRequest) -> HttpResponse:
    """``/api/whoami/`` as an ``async def`` view (served under ASGI, ``ASGI=1 make serve``): the same answer."""
    guarded = bearer_token_required(
        audience=settings.DEMO_API_AUDIENCE, unknown_subject=settings.DEMO_API_UNKNOWN_SUBJECT
    )(_async_whoami)
    return await guarded(request)
