"""Sign-in without a redirect: an ID token handed to us by Google's button or One Tap, or by an app.

Two endpoints, both off per provider unless an admin turns them on (``Provider.credential_endpoint``,
``Provider.app_client_ids``), both ending where the redirect flow's callback ends
(``accounts.flow.complete_sign_in``: admission, identity, session, audit row):

* ``POST /accounts/<slug>/credential/`` -- Google Identity Services posts the form fields
  ``credential`` (the ID token) and ``g_csrf_token``, and has set a ``g_csrf_token`` cookie of the
  same value (its double-submit check, which a cross-site forger cannot pass: it can set the field,
  not the cookie). The ID token's ``nonce`` must be one this site gave the browser's page
  (``page_nonce``: bound to the browser's CSRF secret, so it cannot be taken to another browser).
* ``POST /accounts/<slug>/token/`` (JSON) -- a native or single-page app hands over either an ID
  token issued to one of the provider's app client ids, with the nonce it generated, or its own
  authorization code with the PKCE verifier and a redirect URI on the provider's list.

The ID token is verified by the protocol client exactly as in the redirect flow
(``OpenIDConnectClient.verify_presented_id_token``); the only difference is that anyone can post
one, so an unknown ``kid`` spends the strict refetch budget. Each ID token is single use (its
``jti``, or its hash, remembered until ``exp``), and so is each nonce. Refusals are counted per
address, and an address past ``ACCOUNTS_NO_REDIRECT_FAILURES_PER_MINUTE`` is refused outright.
See docs/sign-in-without-redirect.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import math
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.core.cache import caches
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac
from django.views.decorators.debug import sensitive_variables

from . import audit, flow
from .adapter import get_adapter
from .choices import Kind
from .conf import conf
from .errors import EndpointDisabled, InvalidRequest, SignInError, TokenRejected, TooManyAttempts
from .oidc.clients import OpenIDConnectClient, VerifiedLogin

if TYPE_CHECKING:
    from django.http import HttpRequest

    from .flow import SignInAttempt
    from .models import Provider

#: The name of Google's double-submit cookie and form field.
GIS_CSRF_NAME = "g_csrf_token"
#: The longest ID token or code read at all: a real one is 1-2 KB.
MAX_TOKEN_LENGTH = 16 * 1024
#: The largest JSON body the app endpoint reads.
MAX_BODY_BYTES = 32 * 1024
_NONCE_SALT = "oidc_signin.no_redirect.page-nonce"
_CACHE_PREFIX = "oidc_signin:no-redirect:"


class Endpoint(enum.StrEnum):
    """The two ways in; each is turned on per provider."""

    CREDENTIAL = "credential"
    APP = "app"


# --- the two sign-ins ----------------------------------------------------------------------------


@sensitive_variables("raw")
def sign_in_with_credential(request: HttpRequest, attempt: SignInAttempt) -> None:
    """Google Identity Services posted a credential: check the pair, the token, the nonce; sign in."""
    with rate_limited(request):
        provider = require_enabled(attempt, Endpoint.CREDENTIAL)
        check_double_submit(request)  # the request's own checks first: no provider documents for a forgery
        raw = _form_token(request)
        attempt.next_url = flow.safe_next_url(request, request.GET.get("next"))
        client = oidc_client(provider)
        verified = client.verify_presented_id_token(raw, client_ids=[provider.client_id], nonce=None)
        nonce = check_page_nonce(request, verified.claims.get("nonce"))
        spend(verified.claims, raw, nonce=nonce)
        flow.complete_sign_in(request, attempt, verified)


class SessionKind(enum.StrEnum):
    """What an app gets once signed in: the session cookie, or a session token (``accounts.app_sessions``)."""

    COOKIE = "cookie"
    TOKEN = "token"


@dataclasses.dataclass
class AppSignIn:
    verified: VerifiedLogin
    session: SessionKind


@sensitive_variables("body", "raw", "code", "code_verifier")
def sign_in_from_app(request: HttpRequest, attempt: SignInAttempt) -> AppSignIn:
    """An app handed over an ID token (with its nonce) or its own code (with its PKCE verifier); sign in."""
    with rate_limited(request):
        provider = require_enabled(attempt, Endpoint.APP)
        body = json_body(request)
        try:
            session = SessionKind(body.get("session", SessionKind.COOKIE))
        except (ValueError, TypeError):
            raise InvalidRequest('app request "session" is neither "cookie" nor "token"') from None
        client = oidc_client(provider)
        if "id_token" in body:
            raw, nonce = _string(body, "id_token"), _string(body, "nonce", rule="missing nonce")
            verified = client.verify_presented_id_token(raw, client_ids=provider.app_client_id_list, nonce=nonce)
            spend(verified.claims, raw, nonce=nonce)
        elif "code" in body:
            code, code_verifier = _string(body, "code"), _string(body, "code_verifier")
            redirect_uri = _string(body, "redirect_uri")
            if redirect_uri not in provider.app_redirect_uri_list:
                raise InvalidRequest(f"redirect_uri {redirect_uri[:100]!r} is not on {provider.slug}'s app list")
            verified = client.complete_app_code(code=code, code_verifier=code_verifier, redirect_uri=redirect_uri)
            spend(verified.claims, verified.id_token or "", nonce=None)
        else:
            raise InvalidRequest("app request has neither id_token nor code")
        flow.complete_sign_in(request, attempt, verified)
        return AppSignIn(verified=verified, session=session)


# --- the rules ---------------------------------------------------------------------------------


def _provider(attempt: SignInAttempt) -> Provider:
    if attempt.provider is None:
        raise ValueError("a sign-in attempt needs its provider")
    return attempt.provider


def require_enabled(attempt: SignInAttempt, endpoint: Endpoint) -> Provider:
    """The attempt's provider, if it has this endpoint turned on (off by default); else ``EndpointDisabled``."""
    provider = _provider(attempt)
    if not is_enabled(provider, endpoint):
        raise EndpointDisabled(f"{provider.slug} has the {endpoint} endpoint turned off")
    return provider


def oidc_client(provider: Provider) -> OpenIDConnectClient:
    """The provider's protocol client (its metadata loaded), which must be an OpenID Connect one."""
    client = get_adapter().get_client(provider)
    if not isinstance(client, OpenIDConnectClient):
        raise EndpointDisabled(f"{provider.slug} is no OpenID Connect provider: it issues no ID tokens")
    return client


def is_enabled(provider: Provider, endpoint: Endpoint) -> bool:
    if provider.kind != Kind.OIDC:
        return False
    if endpoint is Endpoint.CREDENTIAL:
        return provider.credential_endpoint
    return bool(provider.app_client_id_list)


def check_double_submit(request: HttpRequest) -> None:
    """Google's check: the ``g_csrf_token`` cookie it set on this site equals the posted field.

    A forger on another site can post any field but cannot set this site's cookie. A cross-site
    POST without the pair is named as such in the log: that is what an attack looks like.
    """
    cookie = request.COOKIES.get(GIS_CSRF_NAME, "")
    field = request.POST.get(GIS_CSRF_NAME, "")
    if not cookie or not field:
        if is_cross_site(request):
            raise InvalidRequest("cross-site credential POST without the g_csrf_token cookie and field")
        raise InvalidRequest("credential posted without the g_csrf_token cookie and field")
    if not constant_time_compare(cookie, field):
        raise InvalidRequest("g_csrf_token field does not match the g_csrf_token cookie")


def is_cross_site(request: HttpRequest) -> bool:
    """What the browser says about where the POST came from (Fetch Metadata, else Origin).

    It only names the refusal in the log: a POST without the pair is refused wherever it came from.
    """
    fetch_site = request.META.get("HTTP_SEC_FETCH_SITE")
    if fetch_site:
        return fetch_site == "cross-site"
    origin = request.META.get("HTTP_ORIGIN")
    if not origin:
        return False
    return origin == "null" or origin != f"{request.scheme}://{request.get_host()}"


def page_nonce(request: HttpRequest) -> str:
    """A fresh nonce for a page offering Google's button: random, and bound to this browser.

    The binding is an HMAC over the browser's CSRF secret (whose cookie this response sets if the
    browser has none yet), so the server remembers nothing per page and a nonce read on one
    browser's page is worthless in another's. Each is spent by the sign-in that uses it.
    """
    get_token(request)  # makes sure the CSRF secret exists and its cookie goes out with this page
    value = secrets.token_urlsafe(18)
    return f"{value}.{_nonce_mac(value, request.META.get('CSRF_COOKIE', ''))}"


def check_page_nonce(request: HttpRequest, nonce: object) -> str:
    """The ID token's ``nonce`` claim must be one ``page_nonce`` made for this very browser."""
    if not isinstance(nonce, str) or not nonce:
        raise TokenRejected("ID token has no nonce claim (missing nonce): the page sets one")
    value, _dot, mac = nonce.partition(".")
    secret = request.META.get("CSRF_COOKIE", "")
    if not secret or not value or not constant_time_compare(mac, _nonce_mac(value, secret)):
        raise TokenRejected("ID token nonce was not issued to this browser")
    return nonce


def _nonce_mac(value: str, secret: str) -> str:
    return salted_hmac(_NONCE_SALT, f"{value}.{secret}", algorithm="sha256").hexdigest()[:32]


def spend(claims: dict[str, Any], raw: str, *, nonce: str | None) -> None:
    """Single use: the ID token (its ``jti``, else its hash) and its nonce, each remembered until ``exp``."""
    issuer, expires_at = str(claims["iss"]), float(claims["exp"])
    jti = claims.get("jti")
    token_id = f"jti:{jti}" if isinstance(jti, str) and jti else f"sha256:{hashlib.sha256(raw.encode()).hexdigest()}"
    if not remember_once(issuer, token_id, expires_at):
        raise TokenRejected("ID token was already used (single use)")
    if nonce is not None and not remember_once(issuer, f"nonce:{nonce}", expires_at):
        raise TokenRejected("ID token nonce was spent by an earlier sign-in (reused nonce)")


def remember_once(issuer: str, jti: str, expires_at: float) -> bool:
    """True the first time (issuer, jti) is seen before ``expires_at`` (plus the clock leeway), else False.

    Django's cache (``cache.add`` is atomic on Redis, Memcached, the database and in-process caches);
    the durable table of ``accounts.replay`` replaces it.
    """
    # replay: moves to accounts.replay
    remaining = expires_at - time.time() + conf.OIDC_CLOCK_LEEWAY
    digest = hashlib.sha256(f"{issuer} {jti}".encode("utf-8", "surrogatepass")).hexdigest()
    cache = caches[conf.OIDC_CACHE_ALIAS]
    return bool(cache.add(f"{_CACHE_PREFIX}spent:{digest}", 1, timeout=max(math.ceil(remaining), 1)))


# --- what the requests carry --------------------------------------------------------------------


def _form_token(request: HttpRequest) -> str:
    values = request.POST.getlist("credential")
    if len(values) != 1 or not values[0]:
        raise InvalidRequest("credential POST has no single credential field")
    if len(values[0]) > MAX_TOKEN_LENGTH:
        raise InvalidRequest("credential is longer than any ID token")
    return values[0]


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The app's JSON object. ``application/json`` is required: a cross-site page cannot send it
    without a CORS preflight this site never answers, so no other site's page can post here."""
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise InvalidRequest(f"app request is {content_type[:60]!r}, not application/json")
    if len(request.body) > MAX_BODY_BYTES:
        raise InvalidRequest("app request body is too large")
    try:
        body = json.loads(request.body)
    except (ValueError, RecursionError):
        raise InvalidRequest("app request body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("app request body is not a JSON object")
    return body


def _string(body: dict[str, Any], name: str, *, rule: str = "") -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"app request has no {name} string" + (f" ({rule})" if rule else ""))
    if len(value) > MAX_TOKEN_LENGTH:
        raise InvalidRequest(f"app request {name} is too long")
    return value


# --- refusals counted per address ----------------------------------------------------------------


@contextlib.contextmanager
def rate_limited(request: HttpRequest) -> Iterator[None]:
    """Refuse an address that was refused too often this minute; count this attempt if it is refused.

    The unit is the audit trail's (``accounts.audit``): an IPv4 address or an IPv6 /64.
    """
    cache = caches[conf.OIDC_CACHE_ALIAS]
    key = f"{_CACHE_PREFIX}failures:{audit.client_network(request)}:{int(time.time() // 60)}"
    if (cache.get(key) or 0) >= conf.NO_REDIRECT_FAILURES_PER_MINUTE:
        raise TooManyAttempts("too many refused attempts from this address in the last minute")
    try:
        yield
    except SignInError:
        audit.count(cache, key, timeout=120)
        raise


def login_uri(request: HttpRequest, provider: Provider) -> str:
    """The absolute URL Google's button posts its credential to."""
    return request.build_absolute_uri(reverse("oidc_signin:credential", args=[provider.slug]))
