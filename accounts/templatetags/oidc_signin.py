"""``{% load oidc_signin %}``: the app's sign-in offer for a project's own templates.

A project that wants its own login page (its layout, its words around the buttons) should not
have to copy the app's markup or rebuild its URLs by hand: a hand-built ``?next=`` that forgets
to encode an ``&`` silently loses the rest of the address. These tags are what the app's own
pages use, so a project's page and the app's stay the same in what they offer and where it leads.
See docs/templates.md.
"""

from __future__ import annotations

from django import template
from django.urls import reverse
from django.utils.http import urlencode

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
