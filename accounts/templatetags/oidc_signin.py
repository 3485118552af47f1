"""``{% load oidc_signin %}``: the app's sign-in offer for a project's own templates.

A project that wants its own login page (its layout, its words around the buttons) should not
have to copy the app's markup or rebuild its URLs by hand: a hand-built ``?next=`` that forgets
to encode an ``&`` silently loses the rest of the address. These tags are what the app's own
pages use, so a project's page and the app's stay the same in what they offer and where it leads.
See docs/templates.md.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.http import urlencode

from .. import no_redirect
from ..conf import conf
from ..models import Provider

register = template.Library()


@register.simple_tag
def oidc_providers() -> list[Provider]:
    """The providers the login page offers: the enabled ones, in their display order.

    ``Provider.objects.offered()``, the login page's own query, so a project's page never lists a provider
    the app would refuse (a disabled one answers "unknown provider") or misses one it offers.
    """
    return list(Provider.objects.offered())


@register.simple_tag
def oidc_signin_url(provider: Provider | str, next: str | None = None) -> str:
    """Where a "Continue with ..." link goes (GET); ``next`` is where the person lands afterwards.

    ``next`` is only carried, URL-encoded; the sign-in view itself refuses one that leaves the site.
    """
    return _with_next(reverse("oidc_signin:start", args=[_slug(provider)]), next)


@register.simple_tag
def oidc_connect_url(provider: Provider | str, next: str | None = None) -> str:
    """The action of a "Connect ..." form: it must be POSTed with a CSRF token (it changes the account)."""
    return _with_next(reverse("oidc_signin:connect", args=[_slug(provider)]), next)


@register.simple_tag
def oidc_reconnect_url(provider: Provider | str, scope: str = "", next: str | None = None) -> str:
    """A page that asks for access at the provider again, or for more of it (incremental authorization).

    ``scope`` adds scopes to the provider's own (space separated); the page POSTs the connect flow
    with ``prompt=consent``, and the scopes granted are merged into the stored tokens'.
    """
    url = reverse("oidc_signin:reconnect", args=[_slug(provider)])
    query = {k: v for k, v in (("scope", scope), ("next", next)) if v}
    return f"{url}?{urlencode(query)}" if query else url


def _slug(provider: Provider | str) -> str:
    return provider.slug if isinstance(provider, Provider) else str(provider)


def _with_next(url: str, next_url: str | None) -> str:
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


@register.inclusion_tag("oidc_signin/includes/google_button.html", takes_context=True)
def oidc_google_button(
    context: template.Context, provider: Provider, next: str | None = None, one_tap: bool = False
) -> dict[str, Any]:
    """Google's "Sign in with Google" button and, with ``one_tap``, its One Tap prompt, for ``provider``.

    Renders nothing unless the provider has the button endpoint turned on (``credential_endpoint``).
    The markup is Google Identity Services' HTML API: ``data-login_uri`` is this provider's
    ``/accounts/<slug>/credential/`` (with ``next``), ``data-client_id`` the provider's client id,
    ``data-nonce`` a fresh nonce bound to this browser (``accounts.no_redirect.page_nonce``) and
    ``data-use_fedcm_for_prompt`` on (One Tap through the browser's FedCM). The script is
    ``ACCOUNTS_GIS_CLIENT_SCRIPT``; a ``csp_nonce`` on the request is put on it. One per page:
    Google's script reads a single ``#g_id_onload``. See docs/sign-in-without-redirect.md.
    """
    request = context["request"]
    if not no_redirect.is_enabled(provider, no_redirect.Endpoint.CREDENTIAL):
        return {"enabled": False}
    login_uri = no_redirect.login_uri(request, provider)
    return {
        "enabled": True,
        "script_src": conf.GIS_CLIENT_SCRIPT,
        "csp_nonce": str(getattr(request, "csp_nonce", "") or ""),
        "client_id": provider.client_id,
        "login_uri": _with_next(login_uri, next),
        "nonce": no_redirect.page_nonce(request),
        "one_tap": bool(one_tap),
    }
