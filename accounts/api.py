"""Bearer-token authentication for a site's APIs: JWT access tokens (RFC 9068) from its providers.

The keys this app caches for sign-in are the keys a provider signs its access tokens with, so the
same machinery protects an API: a single-page or mobile app calling it with the user's access
token, another service calling it with a client-credentials token (machine to machine).

* ``bearer_token_required(audience=..., scopes=...)`` protects a view; ``BearerTokenMiddleware``
  protects every path under the prefixes of ``ACCOUNTS_API_PREFIXES``; ``accounts.drf`` has the
  Django REST framework classes. All of them call ``authenticate`` and answer its ``BearerError``
  through ``error_response`` (or, for DRF, ``challenge`` and ``error_body``): one place decides
  statuses, headers and log lines, as RFC 6750 section 3 says.
* Who is calling is a ``BearerPrincipal`` on ``request.bearer``: a ``UserPrincipal`` when the
  token's subject is an identity that signed in here (``request.user`` is that user, the same one
  a browser sign-in gives), a ``MachinePrincipal`` for a client acting for itself (no Django user;
  ``request.user`` is anonymous), told apart as RFC 9068 section 2.2 suggests: ``sub`` equal to
  ``client_id``, or the machine marker of the provider's token profile (``accounts.oidc.profiles``:
  Auth0's ``gty``, Entra's ``idtyp``, a Stytch ``m2m-client-`` subject...). Nothing else makes a
  machine, not even ``unknown_subject="machine"``.

Each provider's tokens are read by its token profile (``accounts.token_profiles``): where the
client id and the scopes are, how the audience is shown, which claims must hold.

The token's rules are the protocol layer's (``accounts.oidc.tokens.verify_access_token``); this
module adds what needs the database and the cache: which provider issued it, replay refusal,
scopes, the user. Nothing here ever logs or echoes the token.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import app_sessions, dpop, replay, token_cache, token_profiles
from .adapter import get_adapter
from .admission import admit, returning_claims
from .conf import conf
from .errors import DATABASE_BUSY, ProviderRecentlyFailed, SignInError, SignInRefused, TokenRejected, printable
from .identities import sign_in_identity
from .models import Identity, Provider
from .oidc import discovery, profiles, tokens
from .oidc import dpop as dpop_protocol

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)

#: RFC 6750 2.1: ``Bearer`` then one b64token; anything else after the scheme is a malformed request.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: RFC 6750 3: error_description and scope values are printable ASCII without ``"`` and ``\``.
_NOT_HEADER_TEXT = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
#: The longest issuer quoted in a log line (it is whatever the sender wrote).
_QUOTED = 100
#: The proof algorithms the ``DPoP`` challenge offers (RFC 9449 7.1, ``algs``).
DPOP_ALGORITHMS = dpop_protocol.PROOF_ALGORITHMS


class Callers(enum.StrEnum):
    """Who an API admits: anyone with a valid token, only users, or only machine clients."""

    ANY = "any"
    USERS = "users"
    MACHINES = "machines"


class UnknownSubject(enum.StrEnum):
    """What a valid token whose subject has no identity here becomes (``ACCOUNTS_API_UNKNOWN_SUBJECT``).

    ``REFUSE`` suits an API for people who signed in here first; ``CREATE_USER`` makes the account
    a first sign-in would (a mobile app whose users never see the site); ``MACHINE`` says the API
    expects clients, not strangers: a token that shows it is a client's own (``sub == client_id``,
    or its profile's machine marker, e.g. Auth0's ``gty: client-credentials``) is a machine under
    any policy, and any other token of an unknown subject is refused -- never taken for a machine.
    """

    REFUSE = "refuse"
    CREATE_USER = "create-user"
    MACHINE = "machine"


class TokenProfile(enum.StrEnum):
    """What kind of bearer token an API takes: providers' JWT access tokens, or this site's app session tokens.

    ``APP_SESSION`` is the token ``POST /accounts/<slug>/token/`` gives an app that keeps no cookies
    (``accounts.app_sessions``): a signed, short-lived pointer to the session its sign-in made.
    """

    ACCESS_TOKEN = "access-token"
    APP_SESSION = app_sessions.PROFILE


class BearerErrorCode(enum.StrEnum):
    """The error codes of RFC 6750 section 3.1."""

    INVALID_REQUEST = "invalid_request"
    INVALID_TOKEN = "invalid_token"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    #: RFC 9449 7.1 and 9: a DPoP proof that breaks a rule; a proof without this API's current nonce.
    INVALID_DPOP_PROOF = "invalid_dpop_proof"
    USE_DPOP_NONCE = "use_dpop_nonce"


# --- errors ------------------------------------------------------------------------------------


class BearerError(Exception):
    """A request an API refuses: the status, the RFC 6750 code and description, and a reason for the log.

    ``reason`` is for the operator (escaped, never the token); ``description`` is what the caller
    reads in ``error_description``, so it names the rule and nothing the token carried.
    """

    status = 401
    error: BearerErrorCode | None = BearerErrorCode.INVALID_TOKEN
    #: The authentication scheme the challenge names: ``Bearer`` (RFC 6750) or ``DPoP`` (RFC 9449 7.1).
    scheme = "Bearer"
    #: A ``DPoP-Nonce`` to answer with (RFC 9449 9), for a ``use_dpop_nonce`` refusal.
    dpop_nonce: str | None = None

    def __init__(self, reason: str, *, description: str, scope: str | None = None) -> None:
        reason = printable(reason)
        super().__init__(reason)
        self.reason = reason
        self.description = _NOT_HEADER_TEXT.sub("?", description)
        self.scope = scope


class MissingToken(BearerError):
    """No bearer token at all: RFC 6750 3.1 says to answer with the challenge alone, no error code."""

    error = None


class MalformedRequest(BearerError):
    status = 400
    error = BearerErrorCode.INVALID_REQUEST


class InvalidToken(BearerError):
    """Malformed, expired, unverifiable, from an issuer not trusted, or naming nobody we may admit."""


class DPoPRejected(BearerError):
    """A DPoP request refused (RFC 9449 7.1): 401 with its code (``invalid_dpop_proof``, ``use_dpop_nonce``,
    ``invalid_token``) answered under the ``DPoP`` scheme."""

    scheme = "DPoP"

    def __init__(self, refused: dpop.DPoPRefused) -> None:
        super().__init__(
            refused.reason, description=_DPOP_DESCRIPTIONS.get(refused.error, "The DPoP proof is invalid.")
        )
        self.error = BearerErrorCode(refused.error)
        self.dpop_nonce = refused.nonce


_DPOP_DESCRIPTIONS = {
    "invalid_dpop_proof": "The DPoP proof is invalid.",
    "use_dpop_nonce": "The DPoP proof must carry the nonce in the DPoP-Nonce header.",
    "invalid_token": "The access token is not bound to the key of this DPoP proof.",
}


class InsufficientScope(BearerError):
    status = 403
    error = BearerErrorCode.INSUFFICIENT_SCOPE


class AccessDenied(BearerError):
    """A valid token whose holder this site's admission policy refuses, as a browser sign-in would now.

    403, as for a person the sign-in page refuses: the token is fine, so there is no RFC 6750 code
    and no challenge (another token for the same account would not help); the body's ``error`` is
    ``access_denied`` (RFC 6749 4.1.2.1) and the log line's reason names the rule that refused.
    """

    status = 403
    error = None


class ServiceUnavailable(BearerError):
    """Not the token's fault: the issuer's keys or this site's database cannot be reached right now.

    ``retry_after`` is the ``Retry-After`` answered, in whole seconds: when a fetch from the issuer
    failed moments ago, how long until it is tried again (``ACCOUNTS_OIDC_FETCH_FAILURE_TTL``).
    """

    status = 503
    error = None

    def __init__(self, reason: str, *, description: str, retry_after: int = 5) -> None:
        super().__init__(reason, description=description)
        self.retry_after = max(int(retry_after), 1)


# --- who is calling ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BearerPrincipal:
    """What a verified access token says about its caller; see ``UserPrincipal`` and ``MachinePrincipal``."""

    #: Whether the caller is a client acting for itself (no user behind it).
    is_machine: ClassVar[bool]

    provider: Provider
    client_id: str
    subject: str
    scopes: frozenset[str]
    claims: dict[str, Any] = field(repr=False)

    def has_scopes(self, *needed: str) -> bool:
        return set(needed) <= self.scopes


@dataclass(frozen=True, eq=False)
class UserPrincipal(BearerPrincipal):
    """A user's token: ``user`` is the account this subject signs in to with a browser."""

    is_machine = False
    user: AbstractBaseUser
    identity: Identity


@dataclass(frozen=True, eq=False)
class MachinePrincipal(BearerPrincipal):
    """A client's own token (client credentials): no Django user, only its ``client_id`` and ``scopes``."""

    is_machine = True
    user: None = None


def get_bearer(request: HttpRequest) -> BearerPrincipal | None:
    """The caller a protected view was authenticated as (``request.bearer``), or None."""
    return getattr(request, "bearer", None)


# --- what an API accepts -----------------------------------------------------------------------


@dataclass(frozen=True)
class BearerPolicy:
    """One API's rules: the audience it is, the scopes it needs, whom it admits, replay refusal."""

    audience: str | Sequence[str] | None = None
    scopes: Sequence[str] = ()
    callers: Callers = Callers.ANY
    unknown_subject: UnknownSubject | None = None
    refuse_replay: bool = False
    profile: TokenProfile = TokenProfile.ACCESS_TOKEN

    def __post_init__(self) -> None:
        object.__setattr__(self, "profile", TokenProfile(self.profile))
        # A string given as scopes means its words, not its letters; the enums accept their values.
        if isinstance(self.scopes, str):
            object.__setattr__(self, "scopes", tuple(self.scopes.split()))
        object.__setattr__(self, "callers", Callers(self.callers))
        if self.unknown_subject is not None:
            object.__setattr__(self, "unknown_subject", UnknownSubject(self.unknown_subject))

    def audiences(self) -> list[str]:
        """The ``aud`` values accepted: the API's own, else ``ACCOUNTS_API_AUDIENCE``."""
        audience = self.audience if self.audience is not None else conf.API_AUDIENCE
        return [audience] if isinstance(audience, str) and audience else [a for a in audience if a]

    def subject_policy(self) -> UnknownSubject:
        return self.unknown_subject or UnknownSubject(conf.API_UNKNOWN_SUBJECT)


def policy_for_path(path: str) -> BearerPolicy | None:
    """The policy of the longest ``ACCOUNTS_API_PREFIXES`` prefix ``path`` is under, or None."""
    prefixes = [prefix for prefix in conf.API_PREFIXES if path.startswith(prefix)]
    if not prefixes:
        return None
    return BearerPolicy(**conf.API_PREFIXES[max(prefixes, key=len)])


# --- authentication ------------------------------------------------------------------------------


def bearer_token(request: HttpRequest) -> str:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 2.1), the only place one is read.

    The query string and the form body (2.2, 2.3) are not: they end up in logs and browser history.
    """
    return presented_token(request)[1]


def presented_token(request: HttpRequest) -> tuple[str, str]:
    """(scheme, token) of an ``Authorization: Bearer`` or ``Authorization: DPoP`` header (RFC 9449 7.1)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("bearer", "dpop"):
        raise MissingToken(
            "no bearer token" if not header else f"Authorization scheme {scheme[:20]!r} is not Bearer",
            description="This API needs a bearer access token.",
        )
    value = value.strip()
    if not _B64TOKEN.fullmatch(value):
        raise MalformedRequest(
            "Authorization header is not 'Bearer <token>'",
            description="The Authorization header must be Bearer followed by one token.",
        )
    return scheme.lower(), value


def authenticate(request: HttpRequest, policy: BearerPolicy) -> BearerPrincipal:
    """Verify the request's bearer token against ``policy`` and say who is calling; raises ``BearerError``.

    Nothing is written to ``request``: the decorator and the middleware attach the result
    (``attach``), DRF keeps it as ``request.auth``.
    """
    scheme, raw = presented_token(request)
    if policy.profile is TokenProfile.APP_SESSION and scheme == "dpop":
        raise DPoPRejected(
            dpop.DPoPRefused("app session tokens are bearer tokens, not DPoP-bound", error="invalid_token")
        )
    if policy.profile is TokenProfile.APP_SESSION:
        try:
            return _app_session_principal(request, raw, policy)
        except DATABASE_BUSY as exc:
            raise ServiceUnavailable(
                f"database unavailable: {type(exc).__name__}", description="The service is busy; try again."
            ) from exc
    audiences = policy.audiences()
    if not audiences:
        raise ServiceUnavailable(
            "no audience configured for this API (set ACCOUNTS_API_AUDIENCE or pass audience=)",
            description="This API is not configured to accept access tokens.",
        )
    try:
        provider, claims = _verified(raw, audiences, policy)
        _check_sender(request, scheme, raw, claims)
        token = _read(provider, claims, audiences)
        scopes = token.scopes
        missing = [scope for scope in policy.scopes if scope not in scopes]
        if missing:
            raise InsufficientScope(
                f"access token of client {token.client_id[:_QUOTED]!r} lacks scope {' '.join(missing)[:200]}",
                description="The access token does not grant the scope this API needs.",
                scope=" ".join(policy.scopes),
            )
        if policy.refuse_replay:
            _refuse_replay(claims)
        return _principal(request, provider, claims, token, policy)
    except DATABASE_BUSY as exc:
        raise ServiceUnavailable(
            f"database unavailable: {type(exc).__name__}", description="The service is busy; try again."
        ) from exc


def _verified(raw: str, audiences: Collection[str], policy: BearerPolicy) -> tuple[Provider, dict[str, Any]]:
    """The token's provider and verified claims: from ``accounts.token_cache`` when it holds them, else verified.

    Single-use tokens (``refuse_replay``) are never served from nor put in the cache: the cache
    would skip the check that spends their ``jti``.
    """
    if policy.refuse_replay:
        return _verify(raw, audiences, policy, remember=False)
    hit = token_cache.lookup(raw, audiences)
    if hit is not None:
        return hit.provider, dict(hit.claims)  # a copy: a view changing its claims changes no other request's
    return _verify(raw, audiences, policy, remember=True)


def _verify(
    raw: str, audiences: Collection[str], policy: BearerPolicy, *, remember: bool
) -> tuple[Provider, dict[str, Any]]:
    providers_version = token_cache.providers_version() if remember else 0
    try:
        issuer = tokens.unverified_issuer(raw)
        provider = token_profiles.provider_for_issuer(issuer, raw)
        if provider is None:
            raise InvalidToken(
                f"access token iss {issuer[:_QUOTED]!r} is no enabled provider",
                description="The access token was not issued by an issuer this API trusts.",
            )
        _require_cached_discovery(provider)
        jwks_uri = get_adapter().get_client(provider).metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise InvalidToken(
                f"provider {provider.slug} publishes no keys, so it signs no access tokens",
                description="The access token was not issued by an issuer this API trusts.",
            )
        keys = discovery.get_keys(jwks_uri) if remember else None  # its version, read before verifying
        claims = tokens.verify_access_token(
            provider,
            raw,
            jwks_uri=jwks_uri,
            audiences=[provider.token_audience] if provider.token_audience else audiences,
            require_jti=policy.refuse_replay,
            profile=token_profiles.profile_of(provider),
        )
        if remember and keys is not None:
            token_cache.remember(
                raw, audiences, provider=provider, claims=dict(claims), jwks_uri=jwks_uri,
                keys_version=keys.version, providers_version_seen=providers_version,
            )  # fmt: skip
    except TokenRejected as exc:
        raise InvalidToken(exc.reason, description=str(exc.message)) from exc
    except SignInError as exc:  # the issuer's documents: unreachable, garbage, misconfigured
        raise ServiceUnavailable(
            f"keys unavailable: {exc.reason}",
            description="The access token cannot be checked right now; try again.",
            retry_after=exc.retry_after if isinstance(exc, ProviderRecentlyFailed) else 5,
        ) from exc
    return provider, claims


def _check_sender(request: HttpRequest, scheme: str, raw: str, claims: dict[str, Any]) -> None:
    """RFC 9449 7: a DPoP-bound token only with a valid proof of its key; never as a plain bearer token."""
    if scheme == "dpop":
        try:
            dpop.check(request, access_token=raw, claims=claims)
        except dpop.DPoPRefused as exc:
            raise DPoPRejected(exc) from None
    elif dpop.bound_key(claims) is not None:
        raise DPoPRejected(
            dpop.DPoPRefused("DPoP-bound access token sent as a bearer token (cnf.jkt)", error="invalid_token")
        )


def _read(provider: Provider, claims: dict[str, Any], audiences: Collection[str]) -> profiles.AccessToken:
    """The caller and scopes of a verified token, by its provider's token profile and policy."""
    try:
        return profiles.read(
            token_profiles.profile_of(provider),
            claims,
            audiences=[provider.token_audience] if provider.token_audience else audiences,
            policy=token_profiles.policy_of(provider),
        )
    except TokenRejected as exc:
        raise InvalidToken(exc.reason, description=str(exc.message)) from exc


def _require_cached_discovery(provider: Provider) -> None:
    """Bearer requests never fetch an issuer's discovery document: a sign-in or ``oidc_provider check`` does.

    Anyone can send a bearer token naming any enabled issuer; if its metadata had to be fetched
    first, a provider that hangs would hold a worker per anonymous request. Its keys, once the
    metadata names them, are fetched as usual (single-flight, failures remembered).
    """
    if not get_adapter().client_class(provider).discovers:
        return
    if discovery.cached_data(discovery.discovery_url(provider.issuer)) is None:
        raise ServiceUnavailable(
            f"discovery document of {provider.slug} is not cached and bearer requests do not fetch it "
            "(a sign-in or `manage.py oidc_provider check` does)",
            description="The access token cannot be checked right now; try again.",
            retry_after=math.ceil(conf.OIDC_FETCH_FAILURE_TTL),
        )


def _app_session_principal(request: HttpRequest, raw: str, policy: BearerPolicy) -> UserPrincipal:
    """The user of an app session token (``accounts.app_sessions``): a person, with no scopes."""
    try:
        user, identity = app_sessions.authenticate(request, raw)
    except TokenRejected as exc:
        raise InvalidToken(
            exc.reason, description="The session token is not valid: expired, signed out or forged."
        ) from exc
    if policy.callers is Callers.MACHINES:
        raise InsufficientScope(
            "an app session token called an API for machine clients",
            description="This API accepts only access tokens of clients acting for themselves.",
        )
    if policy.scopes:
        raise InsufficientScope(
            "an app session token grants no scopes",
            description="The session token does not grant the scope this API needs.",
            scope=" ".join(policy.scopes),
        )
    if identity is None:
        raise InvalidToken(
            "app session token's session came from no provider sign-in",
            description="The session token is not valid: expired, signed out or forged.",
        )
    return UserPrincipal(
        provider=identity.provider, client_id="", subject=identity.subject, scopes=frozenset(), claims={},
        user=user, identity=identity,
    )  # fmt: skip


def _refuse_replay(claims: dict[str, Any]) -> None:
    """A single-use token: its ``jti`` is spent (``accounts.replay``) until the token expires."""
    if not replay.spend(replay.TokenUse.ACCESS, issuer=claims["iss"], jti=claims["jti"], exp=claims["exp"]):
        raise InvalidToken(
            "access token was already used (jti replay)", description="The access token was already used."
        )


def _principal(
    request: HttpRequest, provider: Provider, claims: dict[str, Any], token: profiles.AccessToken, policy: BearerPolicy
) -> BearerPrincipal:
    """A machine when the token shows it (``sub == client_id``, or its profile's marker); else the identity's
    user; else as the policy says for strangers.

    ``unknown_subject="machine"`` never makes a machine of a token that does not show it is one:
    such a token is a user's whose account is unknown here, and is refused.
    """
    issuer, subject, client_id = claims["iss"], claims["sub"], token.client_id
    common = {
        "provider": provider, "client_id": client_id, "subject": subject, "scopes": token.scopes, "claims": claims
    }  # fmt: skip
    identity = None
    if not token.is_machine:
        identity = Identity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
        unknown = policy.subject_policy() if identity is None else None
        if unknown is UnknownSubject.REFUSE:
            raise InvalidToken(
                f"access token subject of {provider.slug} has no identity here",
                description="The access token's subject has no account here.",
            )
        if unknown is UnknownSubject.MACHINE:
            raise InvalidToken(
                f"access token subject of {provider.slug} has no identity here, and the token does not show "
                "a machine client (its sub is not its client id, and no machine marker of its token profile)",
                description="The access token's subject has no account here.",
            )
        if unknown is UnknownSubject.CREATE_USER:
            _require_callers(policy, machine=False, client_id=client_id)  # before anything is created
            identity = _create_identity(request, provider, claims)
    _require_callers(policy, machine=identity is None, client_id=client_id)
    if identity is None:
        return MachinePrincipal(**common)
    _admit(request, provider, identity, claims)
    return UserPrincipal(**common, user=identity.user, identity=identity)


def _admit(request: HttpRequest, provider: Provider, identity: Identity, claims: dict[str, Any]) -> None:
    """The browser's admission policy (``accounts.admission.admit``), asked on every call of a user's token.

    The restrictions read the identity's stored claims updated with the token's
    (``returning_claims``); the adapter's ``is_sign_in_allowed`` gets this request; the account
    must be active.
    """
    try:
        admit(request, provider, returning_claims(identity.claims, claims), user=identity.user)
    except SignInError as exc:  # SignInRefused, or whatever else the project's adapter raises
        raise AccessDenied(
            f"admission refused: {exc.reason}", description="This account may not use this API."
        ) from exc


def _require_callers(policy: BearerPolicy, *, machine: bool, client_id: str) -> None:
    if machine and policy.callers is Callers.USERS:
        raise InsufficientScope(
            f"machine client {client_id[:_QUOTED]!r} called an API for users",
            description="This API accepts only access tokens of users.",
        )
    if not machine and policy.callers is Callers.MACHINES:
        raise InsufficientScope(
            f"a user's token (client {client_id[:_QUOTED]!r}) called an API for machine clients",
            description="This API accepts only access tokens of clients acting for themselves.",
        )


def _create_identity(request: HttpRequest, provider: Provider, claims: dict[str, Any]) -> Identity:
    """The account a first browser sign-in would make, by the same rules (admission, adapter, linking)."""
    try:
        admit(request, provider, claims)
        return sign_in_identity(
            request=request, provider=provider, issuer=claims["iss"], subject=claims["sub"], claims=claims
        ).identity
    except SignInRefused as exc:  # the admission policy: refused as for a returning caller
        raise AccessDenied(
            f"admission refused: {exc.reason}", description="This account may not use this API."
        ) from exc
    except SignInError as exc:
        raise InvalidToken(
            exc.reason, description="No account can be made here for the access token's subject."
        ) from exc


# --- answers (RFC 6750 section 3) --------------------------------------------------------------


def challenge(error: BearerError) -> str:
    """The ``WWW-Authenticate`` value for ``error``: ``Bearer`` plus its error, description and scope."""
    params = []
    if error.error is not None:
        params.append(f'error="{error.error}"')
        params.append(f'error_description="{error.description}"')
    if error.scope:
        params.append(f'scope="{_NOT_HEADER_TEXT.sub("", error.scope)}"')
    if error.scheme == "DPoP":
        params.append(f'algs="{" ".join(DPOP_ALGORITHMS)}"')
    return error.scheme + (" " + ", ".join(params) if params else "")


def error_body(error: BearerError) -> dict[str, str]:
    """The JSON body of a refusal: the same code and description as the header."""
    code = error.error.value if error.error is not None else None
    if isinstance(error, ServiceUnavailable):
        code = "temporarily_unavailable"
    if isinstance(error, AccessDenied):
        code = "access_denied"
    body = {"error": code} if code else {}
    return {**body, "error_description": error.description}


def log_refusal(request: HttpRequest, error: BearerError) -> None:
    """The one log line of a refusal: method, path, status, code and reason -- never the token."""
    level = logging.INFO if isinstance(error, MissingToken) else logging.WARNING
    logger.log(
        level,
        "bearer token refused: %s %s status=%s error=%s reason=%s",
        request.method,
        printable(request.path, limit=200),
        error.status,
        error_body(error).get("error") or "-",
        error.reason,
    )


def error_response(request: HttpRequest, error: BearerError) -> HttpResponse:
    """Log ``error`` and answer it: RFC 6750's status and challenge, a JSON body, never cached."""
    log_refusal(request, error)
    response = JsonResponse(error_body(error), status=error.status)
    if isinstance(error, ServiceUnavailable):
        response["Retry-After"] = str(error.retry_after)
    elif not isinstance(error, AccessDenied):
        response["WWW-Authenticate"] = challenge(error)
    if error.dpop_nonce:
        response["DPoP-Nonce"] = error.dpop_nonce
    response["Cache-Control"] = "no-store"
    return response


def attach(request: HttpRequest, principal: BearerPrincipal) -> None:
    """Make ``principal`` the request's caller: ``request.bearer``, and ``request.user`` (anonymous for machines).

    The session plays no part in such a request, so CSRF, which guards what a session cookie
    allows, does not apply: the bearer token is not sent by a browser on its own.
    """
    user: Any = principal.user if isinstance(principal, UserPrincipal) else AnonymousUser()
    setattr(request, "bearer", principal)  # noqa: B010 -- HttpRequest declares no such attribute
    request.user = user

    async def auser() -> Any:
        return user

    setattr(request, "auser", auser)  # noqa: B010
    setattr(request, "_dont_enforce_csrf_checks", True)  # noqa: B010 -- what csrf_exempt does, per request


def _authenticated(request: HttpRequest, policy: BearerPolicy) -> HttpResponse | None:
    """Attach the caller, or the refusal's response."""
    try:
        attach(request, authenticate(request, policy))
    except BearerError as error:
        return error_response(request, error)
    return None


# --- the decorator and the middleware ------------------------------------------------------------


def bearer_token_required(
    view: Callable[..., HttpResponse] | None = None,
    *,
    audience: str | Sequence[str] | None = None,
    scopes: Sequence[str] = (),
    callers: Callers | str = Callers.ANY,
    unknown_subject: UnknownSubject | str | None = None,
    refuse_replay: bool = False,
    profile: TokenProfile | str = TokenProfile.ACCESS_TOKEN,
) -> Any:
    """Protect a view with a bearer access token; the view runs only for a caller the policy admits.

    ``audience`` is the API's identifier that tokens must carry in ``aud`` (default
    ``ACCOUNTS_API_AUDIENCE``); every one of ``scopes`` must be granted; ``callers`` admits users,
    machine clients or both; ``unknown_subject`` overrides ``ACCOUNTS_API_UNKNOWN_SUBJECT``;
    ``refuse_replay`` makes each token single-use (its ``jti`` is then required); ``profile="app-session"``
    takes this site's app session tokens instead of access tokens (``accounts.app_sessions``). The view finds
    its caller on ``request.bearer`` and ``request.user``; it is exempt from CSRF, since no session
    authenticates it. Works bare (``@bearer_token_required``) or called.
    """
    policy = BearerPolicy(
        audience=audience,
        scopes=scopes,
        callers=Callers(callers),
        unknown_subject=UnknownSubject(unknown_subject) if unknown_subject is not None else None,
        refuse_replay=refuse_replay,
        profile=TokenProfile(profile),
    )

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        if iscoroutinefunction(view):
            return csrf_exempt(_async_wrapper(view, policy))

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return _authenticated(request, policy) or view(request, *args, **kwargs)

        return csrf_exempt(wrapper)

    return decorator(view) if view is not None else decorator


# --- async views (ASGI) --------------------------------------------------------------------------
#
# The checks read the database and, on a key rotation, fetch the issuer's keys over the network:
# both block. Under ASGI they run in Django's sync thread (``sync_to_async``, thread-sensitive as
# Django runs sync middleware), never on the event loop; the key fetch stays single-flight, as its
# lock lives in the shared cache, not in the caller's thread.

_authenticated_off_loop = sync_to_async(lambda request, policy: _authenticated(request, policy))


def _async_wrapper(view: Callable[..., Any], policy: BearerPolicy) -> Callable[..., Any]:
    """``view``, an ``async def`` view, behind ``policy``: the token is checked off the event loop."""

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = await _authenticated_off_loop(request, policy)
        if refused is not None:
            return refused
        return await view(request, *args, **kwargs)

    return wrapper


class BearerTokenMiddleware:
    """Protect every path under the prefixes of ``ACCOUNTS_API_PREFIXES``, each with its own options.

    Place it after ``AuthenticationMiddleware``, whose ``request.user`` it replaces. The longest
    matching prefix decides; paths under none pass untouched (a browser's session works as before).
    Sync and async capable: under ASGI with async views it checks tokens off the event loop.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        policy = policy_for_path(request.path_info)
        if policy is not None:
            refused = _authenticated(request, policy)
            if refused is not None:
                return refused
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        policy = policy_for_path(request.path_info)
        if policy is not None:
            refused = await _authenticated_off_loop(request, policy)
            if refused is not None:
                return refused
        return await self.get_response(request)
