"""HTTP endpoints of the dev IdP. The protocol work is Authlib's (see ``server.py``); these views
add the pages a person sees and refuse to run at all outside development.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from urllib.parse import urlsplit

from authlib.oauth2 import OAuth2Error
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import formtoken, keys
from .forms import OtherUserForm
from .models import GRANT_TYPES, SIGNING_ALGORITHMS, DevUser
from .server import CodeGrant, request_issuer, require_token, server

#: The account last picked in this browser, offered first and used for ``prompt=none``.
REMEMBERED_USER_KEY = "devidp_last_user"
#: Discovery and JWKS may be cached briefly, as real providers allow; short enough for a demo.
METADATA_CACHE_CONTROL = "public, max-age=300"
OTHER_PREFIX = "other"
CLAIMS_SUPPORTED = (
    "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
    "name", "given_name", "family_name", "preferred_username", "email", "email_verified",
)  # fmt: skip


def dev_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """404 unless DEBUG is on (or the test settings allow it): test users must never sign in to production."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not (settings.DEBUG or getattr(settings, "DEVIDP_ALLOW_WITHOUT_DEBUG", False)):
            raise Http404("The development identity provider is disabled.")
        return view(request, *args, **kwargs)

    return wrapper


def _metadata_response(data: dict) -> JsonResponse:
    response = JsonResponse(data)
    response["Cache-Control"] = METADATA_CACHE_CONTROL
    response["Access-Control-Allow-Origin"] = "*"  # public documents; lets browser-side clients read them
    return response


@dev_only
@require_GET
def discovery(request: HttpRequest) -> JsonResponse:
    """OpenID Provider metadata (Discovery 1.0 section 3), for whichever host and port was asked."""

    def url(name: str) -> str:
        return request.build_absolute_uri(reverse(f"devidp:{name}"))

    return _metadata_response(
        {
            "issuer": request_issuer(request),
            "authorization_endpoint": url("authorize"),
            "token_endpoint": url("token"),
            "userinfo_endpoint": url("userinfo"),
            "jwks_uri": url("jwks"),
            "end_session_endpoint": url("logout"),
            "scopes_supported": ["openid", "profile", "email"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": list(GRANT_TYPES),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "prompt_values_supported": ["none", "login", "consent", "select_account"],
            "claims_supported": list(CLAIMS_SUPPORTED),
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "authorization_response_iss_parameter_supported": False,
        }
    )


@dev_only
@require_GET
def jwks(request: HttpRequest) -> JsonResponse:
    """The public keys of the active signing keys; retired keys are withdrawn immediately."""
    return _metadata_response(keys.public_jwks())


# --- authorization endpoint ------------------------------------------------------------------


@dev_only
@never_cache
@csrf_exempt  # protected by its own form token instead (formtoken.py): the site's CSRF cookie rotates at sign-in
@require_http_methods(["GET", "POST"])
def authorize(request: HttpRequest) -> HttpResponse:
    """GET: validate the request and show the test users. POST: issue the code for the one picked.

    Errors about the client or its redirect URI are shown here and never redirected (RFC 6749
    4.1.2.1): redirecting to an unverified URI would make this an open redirector.
    """
    if request.method == "POST":
        return _authorize_post(request)
    remembered = _remembered_user(request)
    # prompt=none: answer without a page -- with the remembered account, or login_required.
    silent_user = remembered if "none" in request.GET.get("prompt", "").split() else None
    try:
        grant = server.get_consent_grant(request, end_user=silent_user)
    except OAuth2Error as error:
        return _authorization_error(request, error)
    if silent_user is not None:
        return server.create_authorization_response(request, grant_user=silent_user, grant=grant)
    return _sign_in_page(request, grant, OtherUserForm(prefix=OTHER_PREFIX), remembered)


def _authorize_post(request: HttpRequest) -> HttpResponse:
    try:
        grant = server.get_consent_grant(request, end_user=None)  # the query is re-validated on every POST
    except OAuth2Error as error:
        return _authorization_error(request, error)
    if not formtoken.is_valid(request):
        context = {
            "error": "invalid_request",
            "description": "This form was not sent from this browser's sign-in page (or that page was for another "
            "request). Go back to the site and start the sign-in again.",
        }
        return render(request, "devidp/error.html", context, status=403)
    if "cancel" in request.POST:
        return server.create_authorization_response(request, grant_user=None, grant=grant)  # access_denied

    form = OtherUserForm(prefix=OTHER_PREFIX)
    user = None
    if "user" in request.POST:
        value = request.POST["user"]
        user = DevUser.objects.filter(pk=int(value)).first() if value.isdigit() else None
    else:
        form = OtherUserForm(request.POST, prefix=OTHER_PREFIX)
        if form.is_valid():
            user = form.save()
    if user is None:
        return _sign_in_page(request, grant, form, _remembered_user(request), status=400)

    request.session[REMEMBERED_USER_KEY] = user.pk
    return server.create_authorization_response(request, grant_user=user, grant=grant)


def _remembered_user(request: HttpRequest) -> DevUser | None:
    pk = request.session.get(REMEMBERED_USER_KEY)
    return DevUser.objects.filter(pk=pk).first() if isinstance(pk, int) else None


def _sign_in_page(
    request: HttpRequest, grant: CodeGrant, form: OtherUserForm, remembered: DevUser | None, status: int = 200
) -> HttpResponse:
    context = {
        "client": grant.client,
        "redirect_host": urlsplit(grant.redirect_uri or "").netloc,
        "scopes": (grant.request.scope or "").split(),
        "users": DevUser.objects.all(),
        "remembered_id": remembered.pk if remembered else None,
        "form": form,
        "action": request.get_full_path(),
        "pick_error": request.method == "POST" and "user" in request.POST,
        "form_token": formtoken.token_for(request),
        "form_token_field": formtoken.FIELD,
    }
    return formtoken.remember_browser(request, render(request, "devidp/authorize.html", context, status=status))


def _authorization_error(request: HttpRequest, error: OAuth2Error) -> HttpResponse:
    if error.redirect_uri:  # set by Authlib only once the client and its redirect URI checked out
        return server.handle_error_response(request, error)
    context = {"error": error.error, "description": error.get_error_description()}
    return render(request, "devidp/error.html", context, status=400)


# --- back channel: token and userinfo ---------------------------------------------------------


@dev_only
@csrf_exempt  # called by the relying party's server, authenticated with the client secret
@require_POST
def token(request: HttpRequest) -> HttpResponse:
    return server.create_token_response(request)


@dev_only
@csrf_exempt
@require_http_methods(["GET", "POST"])  # OIDC Core 5.3.1: both
@require_token("openid")
def userinfo(request: HttpRequest) -> JsonResponse:
    token = request.oauth_token
    if token.user is None:  # a client-credentials token: there is no end user to describe
        response = JsonResponse(
            {"error": "invalid_token", "error_description": "This token was issued to a client, not for a user."},
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    response = JsonResponse(token.user.claims(token.scope))
    response["Cache-Control"] = "no-store"
    return response


# --- logout -----------------------------------------------------------------------------------


@dev_only
@csrf_exempt  # RP-initiated logout may be a cross-site form POST; it can only forget a remembered choice
@never_cache
@require_http_methods(["GET", "POST"])
def logout(request: HttpRequest) -> HttpResponse:
    """RP-initiated logout 1.0: forget the remembered account, then go back to the client only if
    it registered that post-logout URI (and proved itself with an id_token_hint); else say so here.
    """
    try:
        end_session = server.validate_endpoint_request("end_session", request)
    except OAuth2Error as error:
        context = {"error": error.error, "description": error.get_error_description()}
        return render(request, "devidp/error.html", context, status=400)
    request.session.pop(REMEMBERED_USER_KEY, None)
    response = server.create_endpoint_response("end_session", end_session)
    if response is not None:
        return response
    return render(request, "devidp/signed_out.html", {"client": end_session.client})
