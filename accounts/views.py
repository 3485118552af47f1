"""Thin views: find the provider, call the flow, translate ``SignInError`` into a page in one place."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, QueryDict
from django.shortcuts import redirect, render, resolve_url
from django.urls import NoReverseMatch, reverse
from django.utils.log import log_response
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import (
    app_sessions,
    audit,
    flow,
    no_redirect,
    pending,
    provider_cache,
    provider_tokens,
    session,
    signals,
    site_keys,
)
from .adapter import get_adapter
from .choices import Action, Outcome
from .conf import conf
from .errors import (
    DATABASE_BUSY,
    DatabaseBusy,
    InvalidRequest,
    ProviderUnavailable,
    SignInError,
    UnexpectedError,
    UnknownProvider,
    database_busy,
    printable,
)
from .flow import SignInAttempt
from .identities import disconnect_identity, update_from_provider
from .logout import backchannel_logout as end_backchannel_sessions
from .logout import end_session_url
from .models import Identity, Provider, ProviderSession, ProviderToken

logger = logging.getLogger(__name__)


def render_sign_in_error(request: HttpRequest, error: SignInError, attempt: SignInAttempt) -> HttpResponse:
    """The single place a failed sign-in becomes a response: one log line, a signal, a friendly page."""
    provider = attempt.provider
    signals.sign_in_failed.send(
        sender=Provider, request=request, provider=provider, code=error.code, reason=error.reason
    )
    if not isinstance(error, DatabaseBusy):  # the audit trail lives in that very database
        flow.record(request, attempt, error)
    context = {"error": error, "provider": provider}
    response = render(request, "oidc_signin/error.html", context, status=error.status)
    return _sign_in_failed(request, error, provider, response)


def _sign_in_failed(
    request: HttpRequest, error: SignInError, provider: Provider | None, response: HttpResponse
) -> HttpResponse:
    """Log a failed sign-in's answer once, then let the adapter replace it (``sign_in_failed_response``)."""
    if isinstance(error, DatabaseBusy):
        response["Retry-After"] = "5"
    _logged(
        response,
        request,
        "sign-in failed: provider=%s code=%s reason=%s",
        provider.slug if provider else "-",
        error.code,
        error.reason,
    )
    return get_adapter().sign_in_failed_response(request, error, provider=provider, response=response)


def json_sign_in_error(request: HttpRequest, error: SignInError, attempt: SignInAttempt) -> HttpResponse:
    """``render_sign_in_error`` for an app: the same signal, audit row, log line and status, as JSON.

    ``error`` is the page's code (``accounts.errors``), ``error_description`` the sentence the page shows.
    """
    provider = attempt.provider
    signals.sign_in_failed.send(
        sender=Provider, request=request, provider=provider, code=error.code, reason=error.reason
    )
    if not isinstance(error, DatabaseBusy):
        flow.record(request, attempt, error)
    response = JsonResponse(
        {"error": error.code, "error_description": str(error.message)},
        status=error.status,
        headers={"Cache-Control": "no-store"},
    )
    return _sign_in_failed(request, error, provider, response)


def _logged(response: HttpResponse, request: HttpRequest, message: str, *args: object) -> HttpResponse:
    """Log a refusal once, with its reason, through Django's own ``log_response``.

    ``log_response`` marks the response as logged, so Django does not add its generic,
    reason-less "Bad Request: /path" line; the line goes to this module's logger. The message is
    formatted here, each value made ``printable`` (reasons already are): ``log_response`` would
    otherwise escape the escapes again, and a reason's ``\\x0a`` would read ``\\\\x0a``.
    """
    line = message % tuple(printable(arg) if isinstance(arg, str) else arg for arg in args)
    log_response(line, response=response, request=request, logger=logger, level="warning")
    return response


def _sign_in_view(
    action: Action,
) -> Callable[[Callable[[HttpRequest, SignInAttempt], HttpResponse]], Callable[..., HttpResponse]]:
    """Look the provider up by slug, start an attempt, and turn any ``SignInError`` into the error page.

    Whatever the answer, ``accounts.session``'s middleware sends it with the flow cookies the attempt
    set or spent (``accounts.pending``): a callback that ended on an error page, a 5xx one
    included, cannot be replayed.
    """

    def decorator(view: Callable[[HttpRequest, SignInAttempt], HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, slug: str) -> HttpResponse:
            attempt = SignInAttempt(provider=None, action=action)
            try:
                attempt.provider = provider_cache.enabled_provider(slug)  # read once per process and change
                if attempt.provider is None:
                    raise UnknownProvider(f"no enabled provider {slug[:50]!r}")
                response = view(request, attempt)
            except SignInError as error:
                response = render_sign_in_error(request, error, attempt)
            except DATABASE_BUSY as exc:
                response = render_sign_in_error(request, database_busy(exc), attempt)
            except Exception as exc:  # a bug: still audited and spent, and reported by Django as any other
                response = _escaped_exception(request, exc, attempt)
            return response

        return never_cache(wrapper)

    return decorator


def _escaped_exception(request: HttpRequest, exc: Exception, attempt: SignInAttempt) -> HttpResponse:
    """The answer to an exception no rule expected (a bug), made as Django makes it, audited and redacted.

    Called while ``exc`` is being handled: Django's own ``response_for_exception`` logs it with its
    traceback (``django.request``, hence the admins' error mail), sends ``got_request_exception``
    and renders the 500 page, so nothing is hidden from the operator -- but first the callback's
    code and state and the flow cookies are redacted from the request the report quotes, and the
    attempt gets its audit row, so that a crash is no quieter in the audit trail than a refusal.
    The caller then spends the flow cookie on this answer as on any other.
    """
    _redact_for_error_report(request)
    try:
        flow.record(request, attempt, UnexpectedError(f"unexpected {type(exc).__name__}"))
    except Exception:  # the audit must not hide the original error: Django reports that one below
        logger.exception("could not write the audit row of a failed sign-in")
    return response_for_exception(request, exc)


#: What a redacted value reads in an error report (Django's own ``cleansed_substitute``).
_REDACTED = "********************"


def _redact_for_error_report(request: HttpRequest) -> None:
    """Blank the query's values and the flow cookies in ``request``, which an error report quotes in full.

    Django's ``SafeExceptionReporterFilter`` hides sensitive POST parameters and settings-like
    names, but shows a GET query and cookies as they are: here a callback's authorization code and
    state, and the flow cookie holding the PKCE verifier and nonce. The request is ending with a
    500, so nothing reads these values after the report.
    """
    query = QueryDict(mutable=True)
    for name in request.GET:
        query.setlist(name, [_REDACTED for _value in request.GET.getlist(name)])
    request.GET = query  # type: ignore[assignment]  # mutable: only the report reads it now
    request.META["QUERY_STRING"] = query.urlencode(safe="*")
    for name in request.COOKIES:
        if pending.COOKIE_PREFIX in name:
            request.COOKIES[name] = _REDACTED


@require_GET
def login_page(request: HttpRequest) -> HttpResponse:
    providers = list(Provider.objects.offered())
    context = {"providers": providers, "next": request.GET.get("next", ""), "add_provider_url": None}
    # Google's button for the first provider that has it on (its script reads one per page).
    context["gis_provider"] = next(
        (p for p in providers if no_redirect.is_enabled(p, no_redirect.Endpoint.CREDENTIAL)), None
    )
    if not providers:
        context["add_provider_url"] = _admin_url(f"admin:{Provider._meta.app_label}_provider_add")
    return render(request, "oidc_signin/login.html", context)


def _admin_url(name: str) -> str | None:
    """The admin page ``name``, or None in a project without ``django.contrib.admin`` (or without its URLs)."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


@require_GET
@_sign_in_view(Action.SIGN_IN)
def start(request: HttpRequest, attempt: SignInAttempt) -> HttpResponse:
    return HttpResponseRedirect(flow.begin_login(request, attempt, next_url=request.GET.get("next")))


@require_GET
@_sign_in_view(Action.SIGN_IN)  # a connect's callback says so in its pending login
def callback(request: HttpRequest, attempt: SignInAttempt) -> HttpResponse:
    flow.finish_login(request, attempt)
    url = _landing_url(request, attempt)
    name = attempt.provider.name if attempt.provider is not None else ""
    if attempt.action == Action.CONNECT:
        messages.success(request, _("%(name)s is now connected to your account.") % {"name": name})
    else:
        messages.success(request, _("Signed in with %(name)s.") % {"name": name})
    return HttpResponseRedirect(url)


@csrf_exempt  # Google posts from its own script: the g_csrf_token double-submit pair is the check (no_redirect)
@require_POST
@_sign_in_view(Action.SIGN_IN)
def credential(request: HttpRequest, attempt: SignInAttempt) -> HttpResponse:
    """Google Identity Services' ``login_uri``: its button and One Tap post the ID token here."""
    no_redirect.sign_in_with_credential(request, attempt)
    url = _landing_url(request, attempt)
    name = attempt.provider.name if attempt.provider is not None else ""
    messages.success(request, _("Signed in with %(name)s.") % {"name": name})
    return HttpResponseRedirect(url)


@csrf_exempt  # JSON only (no_redirect.json_body): no other site's page can send it without a preflight
@require_http_methods(["POST", "DELETE"])
@never_cache
def app_token(request: HttpRequest, slug: str) -> HttpResponse:
    """A native or single-page app signs in with its ID token or code; answers JSON, errors too.

    ``DELETE`` with ``Authorization: Bearer <session token>`` is the app's sign-out: the session ends.
    """
    if request.method == "DELETE":
        return _revoke_app_session(request)
    attempt = SignInAttempt(provider=None, action=Action.SIGN_IN)
    try:
        attempt.provider = Provider.objects.filter(slug=slug, enabled=True).first()
        if attempt.provider is None:
            raise UnknownProvider(f"no enabled provider {slug[:50]!r}")
        signed_in = no_redirect.sign_in_from_app(request, attempt)
    except SignInError as error:
        return json_sign_in_error(request, error, attempt)
    except DATABASE_BUSY as exc:
        return json_sign_in_error(request, database_busy(exc), attempt)
    verified, user = signed_in.verified, attempt.user
    body = {
        "user": {
            "id": str(user.pk) if user is not None else None,
            "username": user.get_username() if user is not None else "",
            "email": getattr(user, "email", ""),
        },
        "identity": {"provider": attempt.provider.slug, "issuer": verified.issuer, "sub": verified.subject},
    }
    if signed_in.session is no_redirect.SessionKind.TOKEN:
        return JsonResponse({**body, **app_sessions.issue(request)}, headers={"Cache-Control": "no-store"})
    return JsonResponse(body, headers={"Cache-Control": "no-store"})


def _revoke_app_session(request: HttpRequest) -> HttpResponse:
    scheme, _space, raw = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not raw.strip():
            raise InvalidRequest("app sign-out without a bearer session token")
        app_sessions.revoke(raw.strip())
    except SignInError as error:
        response = JsonResponse({"error": error.code, "error_description": str(error.message)}, status=401)
        return _logged(response, request, "app sign-out refused: reason=%s", error.reason)
    except DATABASE_BUSY as exc:
        busy = database_busy(exc)
        body = {"error": busy.code, "error_description": str(busy.message)}
        response = JsonResponse(body, status=busy.status, headers={"Retry-After": "5"})
        return _logged(response, request, "app sign-out failed: reason=%s", busy.reason)
    return HttpResponse(status=204, headers={"Cache-Control": "no-store"})


def _landing_url(request: HttpRequest, attempt: SignInAttempt) -> str:
    """Where the adapter sends the person once ``attempt`` succeeded, checked again like ``next``.

    The adapter is the project's code, and a URL it builds from what the visitor sent would
    otherwise be an open redirect: one that is not on this site is logged and replaced by
    LOGIN_REDIRECT_URL. A refusal it raises after a sign-in ends the session just started, so
    that nobody reads "cannot sign in" while being signed in.
    """
    adapter, user, provider = get_adapter(), attempt.user, attempt.provider
    if user is None or provider is None:  # a finished attempt has both
        return attempt.next_url
    try:
        if attempt.action == Action.CONNECT:
            wanted = adapter.get_connect_redirect_url(request, user, provider=provider, next_url=attempt.next_url)
        else:
            wanted = adapter.get_login_redirect_url(request, user, provider=provider, next_url=attempt.next_url)
    except SignInError:
        if attempt.action != Action.CONNECT:
            session.sign_out(request)
        raise
    try:
        candidate = resolve_url(wanted) if isinstance(wanted, str) and wanted else ""
    except NoReverseMatch:  # a name that is no URL pattern
        candidate = ""
    url = flow.safe_next_url(request, candidate)
    if url != candidate:
        logger.warning(
            "adapter's redirect after %s is not on this site: %s; going to %s instead",
            attempt.action,
            printable(repr(wanted), limit=200),
            url,
        )
    return url


def _busy_database_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A view that writes to the database answers 503 when it is busy, on the sign-in views' error page.

    Signing out, disconnecting and updating a profile are no sign-ins: a busy database there sends
    no ``sign_in_failed`` signal (and writes no audit row: the audit trail lives in that database).
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except DATABASE_BUSY as exc:
            error = database_busy(exc)
            response = render(request, "oidc_signin/error.html", {"error": error, "provider": None}, status=503)
            response["Retry-After"] = "5"
            return _logged(response, request, "request failed: code=%s reason=%s", error.code, error.reason)

    return wrapper


def _user(request: HttpRequest) -> AbstractBaseUser:
    """The signed-in user of a view that requires one (its decorator has sent anyone else away)."""
    user = request.user
    if not isinstance(user, AbstractBaseUser) or not user.is_authenticated:
        raise PermissionDenied
    return user


def _signed_in_or_back_to_profile(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """``login_required`` for the profile page's POST-only buttons.

    After signing in, the person goes back to the profile page: the button's own URL answers only
    POST, so ``next`` pointing there would end on a "405 Method Not Allowed" page.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(reverse("oidc_signin:profile"))
        return view(request, *args, **kwargs)

    return wrapper


@require_POST
@_signed_in_or_back_to_profile
@_sign_in_view(Action.CONNECT)
def connect(request: HttpRequest, attempt: SignInAttempt) -> HttpResponse:
    """Link another provider to the signed-in account. POST (CSRF-protected): it changes the account.

    ``next`` (checked like a sign-in's: never off this site) says where to come back to; by default
    the profile page, which lists the connected providers.
    """
    next_url = request.POST.get("next") or request.GET.get("next") or reverse("oidc_signin:profile")
    return HttpResponseRedirect(flow.begin_login(request, attempt, next_url=next_url))


# --- stored provider tokens: reconnect, and the profile's "Update from <provider>" ------------------


@require_http_methods(["GET", "POST"])
@_signed_in_or_back_to_profile
@_sign_in_view(Action.CONNECT)
def reconnect(request: HttpRequest, attempt: SignInAttempt) -> HttpResponse:
    """Grant this site access at the provider again, or more of it (``provider_tokens.reconnect_url``).

    GET: a page that says why and asks for a click, so a link or a redirect alone never sends
    anyone to the provider. POST (CSRF-protected): the connect flow with ``prompt=consent`` and
    the extra ``scope`` asked for (incremental authorization); the granted scopes are merged.
    """
    source = request.POST if request.method == "POST" else request.GET
    scopes = provider_tokens.requested_scopes(source.get("scope", ""))
    provider = attempt.provider
    assert provider is not None  # the decorator found it
    if request.method != "POST":
        context = {"provider": provider, "scope": " ".join(scopes), "next": source.get("next", "")}
        return render(request, "oidc_signin/reconnect.html", context)
    attempt.provider = provider_tokens.asking_for_more(provider, scopes)
    next_url = source.get("next") or reverse("oidc_signin:profile")
    return HttpResponseRedirect(flow.begin_login(request, attempt, next_url=next_url))


@require_POST
@_signed_in_or_back_to_profile
@_busy_database_page
def refresh_profile(request: HttpRequest, slug: str) -> HttpResponse:
    """The profile's "Update from <provider>": read the person's details there with the stored token.

    Through the token vault, so an expired token is refreshed first (single-flight) and a 401
    refreshes once; a grant the provider withdrew sends the person to reconnect.
    """
    user = _user(request)
    identity = (
        Identity.objects.filter(user_id=user.pk, provider__slug=slug, provider__enabled=True)
        .select_related("provider", "user")
        .order_by("pk")
        .first()
    )
    if identity is None:
        messages.error(request, _("That provider is not connected to your account."))
        return redirect("oidc_signin:profile")
    name = identity.provider.name
    try:
        claims = provider_tokens.fetch_profile(identity)
        update_from_provider(request=request, identity=identity, claims=claims)
    except SignInError as error:
        logger.warning(  # the reason is escaped already (SignInError), and never holds a token
            "profile update failed: provider=%s code=%s reason=%s", identity.provider.slug, error.code, error.reason
        )
        reconnect_to = getattr(error, "reconnect_url", "")
        if reconnect_to:
            messages.warning(request, error.message)
            return redirect(reconnect_to)
        messages.error(request, _("Could not update from %(name)s: %(why)s") % {"name": name, "why": error.message})
        return redirect("oidc_signin:profile")
    messages.success(request, _("Your details were updated from %(name)s.") % {"name": name})
    return redirect("oidc_signin:profile")


@require_http_methods(["GET", "POST"])
@_signed_in_or_back_to_profile
@_busy_database_page
def disconnect(request: HttpRequest, identity_id: int) -> HttpResponse:
    """GET: ask first, on a page of its own (no JavaScript needed). POST (CSRF-protected): disconnect.

    A disconnect ends every session that account signed in and keeps it from being linked again by
    email: one stray click must not do that, so the profile's Disconnect is a link to this page.
    """
    if request.method != "POST":
        return _confirm_disconnect(request, identity_id)
    try:
        done = disconnect_identity(
            request=request,
            user=_user(request),
            identity_id=identity_id,
            current_session_key=request.session.session_key,
        )
    except SignInError as error:
        messages.error(request, error.message)
        logger.info("disconnect refused: %s", error.reason)
        return redirect("oidc_signin:profile")
    name = done.identity.provider.name
    if done.ended.includes_current:
        # This very session was signed in with the account just disconnected: it ends too.
        session.sign_out(request)
        messages.success(
            request,
            _("%(name)s was disconnected, and you were signed out because you signed in with it.") % {"name": name},
        )
        return redirect(settings.LOGIN_URL)
    messages.success(request, _("%(name)s was disconnected from your account.") % {"name": name})
    return redirect("oidc_signin:profile")


def _confirm_disconnect(request: HttpRequest, identity_id: int) -> HttpResponse:
    user = _user(request)
    identity = Identity.objects.filter(pk=identity_id, user_id=user.pk).select_related("provider").first()
    if identity is None:
        messages.error(request, _("That sign-in method is not connected to your account."))
        return redirect("oidc_signin:profile")
    others = Identity.objects.filter(user_id=user.pk).exclude(pk=identity.pk).exists()
    context = {
        "identity": identity,
        "can_disconnect": others or user.has_usable_password(),
        # This very session signed in with it: the person is told they will be signed out too.
        "ends_this_session": ProviderSession.objects.filter(
            session_key=request.session.session_key or "", issuer=identity.issuer, subject=identity.subject
        ).exists(),
    }
    return render(request, "oidc_signin/disconnect_confirm.html", context)


@require_POST
@_busy_database_page
def logout(request: HttpRequest) -> HttpResponse:
    """Sign out here, then at the provider too when it supports RP-initiated logout."""
    signed_out = session.sign_out(request)
    provider = Provider.objects.filter(slug=signed_out.provider_slug).first()
    pending.forget_all(request)  # nor does a sign-in or connect started before signing out finish after it
    messages.info(request, _("You have been signed out."))
    url = end_session_url(request, provider, signed_out.id_token) if provider is not None and provider.enabled else None
    return HttpResponseRedirect(url) if url else redirect(settings.LOGOUT_REDIRECT_URL or "oidc_signin:login")


@csrf_exempt
@require_POST
@never_cache
@sensitive_post_parameters("logout_token")
def backchannel_logout(request: HttpRequest, slug: str) -> HttpResponse:
    """OpenID Connect Back-Channel Logout 1.0: the provider tells us a session ended there.

    Called server to server, so CSRF does not apply; the signed logout token is the authentication.
    Answers 200 when the sessions are ended, 400 with an OAuth error otherwise (section 2.8).
    """
    provider = None
    try:
        provider = Provider.objects.filter(slug=slug, enabled=True).first()
        if provider is None:
            raise UnknownProvider(f"no enabled provider {slug[:50]!r}")
        ended = end_backchannel_sessions(provider, request.POST.get("logout_token", ""))
    except DATABASE_BUSY as exc:
        error = database_busy(exc)
        response = JsonResponse(
            {"error": "temporarily_unavailable", "error_description": error.title},
            status=error.status,
            headers={"Retry-After": "5", "Cache-Control": "no-store"},
        )
        return _logged(response, request, "back-channel logout failed: provider=%s reason=%s", slug[:50], error.reason)
    except SignInError as error:
        audit.record(
            request,
            outcome=Outcome.FAILURE,
            action=Action.BACKCHANNEL_LOGOUT,
            provider=provider,
            code=error.code,
            reason=error.reason,
        )
        status = 404 if isinstance(error, UnknownProvider) else 400
        if isinstance(error, ProviderUnavailable):
            status = error.status
        response = JsonResponse({"error": "invalid_request", "error_description": error.title}, status=status)
        return _logged(response, request, "back-channel logout refused: provider=%s reason=%s", slug[:50], error.reason)
    logger.info("back-channel logout: provider=%s ended %d session(s)", provider.slug, ended)
    audit.record(
        request,
        outcome=Outcome.SUCCESS,
        action=Action.BACKCHANNEL_LOGOUT,
        provider=provider,
        reason=f"ended {ended} session(s)",
    )
    return HttpResponse(status=200, headers={"Cache-Control": "no-store"})


@login_required
@require_GET
def profile(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    identities = list(
        Identity.objects.filter(user_id=user.pk)
        .select_related("provider")
        .order_by("provider__display_order", "created_at")
    )
    connected = {i.provider_id for i in identities}
    tokens = {t.identity_id: t for t in ProviderToken.objects.filter(identity__in=identities)}
    for identity in identities:
        setattr(identity, "token_status", tokens.get(identity.pk))  # noqa: B010 -- status only, never a token
    context = {
        "identities": identities,
        # The last sign-in method cannot be removed unless the account has a password to fall back on.
        "can_disconnect": len(identities) > 1 or user.has_usable_password(),
        "connectable": [p for p in Provider.objects.offered() if p.pk not in connected],
    }
    return render(request, "oidc_signin/profile.html", context)


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


@require_GET
def jwks(request: HttpRequest) -> HttpResponse:
    """The site's public keys (``accounts.site_keys``), which providers fetch to check its client assertions.

    Public by nature and the same for everyone, so providers and proxies may cache it for
    ``ACCOUNTS_SITE_JWKS_MAX_AGE`` seconds; a new key is published longer than that before it signs.
    A busy database answers 503 with Retry-After, so a provider retries rather than caching nothing.
    """
    try:
        document = site_keys.public_jwks()
    except DATABASE_BUSY as exc:
        logger.warning("jwks.json unavailable: %s", printable(str(database_busy(exc))))
        return HttpResponse(status=503, headers={"Retry-After": "5", "Cache-Control": "no-store"})
    response = JsonResponse(document, content_type="application/jwk-set+json")
    response["Cache-Control"] = f"public, max-age={conf.SITE_JWKS_MAX_AGE}"
    response["Access-Control-Allow-Origin"] = "*"
    return response
