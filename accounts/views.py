"""Thin views: find the provider, call the flow, translate ``SignInError`` into a page in one place."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import flow, signals
from .errors import SignInError, UnknownProvider
from .models import Provider

logger = logging.getLogger(__name__)


def render_sign_in_error(request: HttpRequest, error: SignInError, provider: Provider | None) -> HttpResponse:
    """The single place a failed sign-in becomes a response: one log line, a signal, a friendly page."""
    logger.warning(
        "sign-in failed: provider=%s code=%s reason=%s",
        provider.slug if provider else "-",
        error.code,
        error.reason,
    )
    signals.sign_in_failed.send(
        sender=Provider, request=request, provider=provider, code=error.code, reason=error.reason
    )
    context = {"error": error, "provider": provider}
    return render(request, "accounts/error.html", context, status=error.status)


def _sign_in_view(view: Callable[[HttpRequest, Provider], HttpResponse]) -> Callable[..., HttpResponse]:
    """Look the provider up by slug and turn any ``SignInError`` into the error page."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, slug: str) -> HttpResponse:
        provider = Provider.objects.filter(slug=slug, enabled=True).first()
        try:
            if provider is None:
                raise UnknownProvider(f"no enabled provider {slug[:50]!r}")
            return view(request, provider)
        except SignInError as error:
            return render_sign_in_error(request, error, provider)

    return never_cache(wrapper)


@require_GET
def login_page(request: HttpRequest) -> HttpResponse:
    providers = Provider.objects.filter(enabled=True)
    next_url = request.GET.get("next", "")
    return render(request, "accounts/login.html", {"providers": providers, "next": next_url})


@require_GET
@_sign_in_view
def start(request: HttpRequest, provider: Provider) -> HttpResponse:
    return HttpResponseRedirect(flow.begin_login(request, provider, next_url=request.GET.get("next")))


@require_GET
@_sign_in_view
def callback(request: HttpRequest, provider: Provider) -> HttpResponse:
    _user, next_url = flow.finish_login(request, provider)
    messages.success(request, f"Signed in with {provider.name}.")
    return HttpResponseRedirect(next_url)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    auth_logout(request)
    messages.info(request, "You have been signed out.")
    return redirect("accounts:login")


@login_required
@require_GET
def profile(request: HttpRequest) -> HttpResponse:
    identities = request.user.identities.select_related("provider").order_by("provider__display_order", "created_at")
    return render(request, "accounts/profile.html", {"identities": identities})


@never_cache
@require_GET
def session_info(request: HttpRequest) -> JsonResponse:
    """The signed-in state for single-page apps; never cached, and readable only by this origin."""
    user = request.user
    if not user.is_authenticated:
        return JsonResponse({"authenticated": False, "user": None, "identities": []})
    identities = user.identities.select_related("provider").order_by("created_at")
    return JsonResponse(
        {
            "authenticated": True,
            "user": {"username": user.get_username(), "email": getattr(user, "email", "")},
            "identities": [
                {"provider": i.provider.slug, "provider_name": i.provider.name, "issuer": i.issuer, "sub": i.subject}
                for i in identities
            ],
        }
    )
