"""The dev IdP's own protection of its sign-in form, independent of the site's CSRF cookie.

The dev IdP is served by the very site that signs in with it, so with Django's CSRF protection it
would share the site's CSRF cookie -- which ``django.contrib.auth.login`` rotates on every sign-in.
Two tabs signing in at once then broke: when the second finished first, the first tab's form
still carried a token for the old cookie and was refused. A real provider lives on its own origin
and has its own cookies; this gives the dev IdP the same.

Each browser gets a random ``devidp_browser`` cookie (``SameSite=Lax``: never sent with a
cross-site POST), and each form a token: an HMAC of that cookie and the authorization request it
answers. A POST is accepted only with the token of this browser for this very request, so a page
elsewhere cannot post the form (it can neither read the cookie nor have it sent), nor replay one
tab's token for another client or redirect URI.
"""

from __future__ import annotations

import secrets

from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare, salted_hmac

COOKIE = "devidp_browser"
FIELD = "devidp_form_token"
_SALT = "devidp.formtoken"
_NEW_ID_ATTRIBUTE = "_devidp_new_browser_id"


def _browser_id(request: HttpRequest) -> str:
    existing = request.COOKIES.get(COOKIE, "")
    if 20 <= len(existing) <= 64 and existing.replace("-", "").replace("_", "").isalnum():
        return existing
    new = getattr(request, _NEW_ID_ATTRIBUTE, None)
    if new is None:
        new = secrets.token_urlsafe(24)
        setattr(request, _NEW_ID_ATTRIBUTE, new)
    return new


def _token(browser_id: str, request: HttpRequest) -> str:
    """Bound to this browser and to this authorization request (its query string, as the form posts it)."""
    return salted_hmac(_SALT, f"{browser_id}\n{request.META.get('QUERY_STRING', '')}", algorithm="sha256").hexdigest()


def token_for(request: HttpRequest) -> str:
    """The token for the form on the page being rendered for ``request``."""
    return _token(_browser_id(request), request)


def is_valid(request: HttpRequest) -> bool:
    """Whether a POST carries this browser's token for this request (no cookie: never)."""
    browser_id = request.COOKIES.get(COOKIE, "")
    sent = request.POST.get(FIELD, "")
    return bool(browser_id and sent) and constant_time_compare(sent, _token(browser_id, request))


def remember_browser(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Set the browser's cookie when this request made it one."""
    new = getattr(request, _NEW_ID_ATTRIBUTE, None)
    if new is not None:
        response.set_cookie(
            COOKIE, new, max_age=365 * 86400, httponly=True, samesite="Lax", secure=request.is_secure(), path="/"
        )
    return response
