"""One client per provider kind: the authorization code flow, protocol side.

``ProviderClient`` is the interface every kind offers -- an authorization URL, a callback
completed into a ``VerifiedLogin``, the provider's metadata, an end-session URL -- built once per
request from the provider (``accounts.models.Provider``, or anything with the attributes of
``accounts.oidc.config.ProviderConfig``), its metadata and its ``Quirks``:

* ``OpenIDConnectClient``: discovered metadata, an ID token verified by every rule of Core
  3.1.3.7, userinfo when the ID token lacks what the user mapping needs;
* ``GitHubClient``: OAuth 2.0 without OpenID Connect, the identity read from a REST API
  (``accounts.oidc.github``).

``client_class`` is the one place a provider's kind is looked at. A reusing project adapts a
provider that bends the standard by subclassing a client and returning it from its adapter's
``client_class`` (see ``accounts.adapter``); the methods below are the points to override.

Framework-light on purpose: clients take a provider and plain values and return plain values,
so every protocol rule can be tested without a browser session. Keeping the per-login secrets
(state, nonce, PKCE verifier) between the two halves is ``accounts.flow``'s job.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote_plus, urlencode, urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from ..conf import conf
from ..errors import (
    InvalidRequest,
    ProviderDenied,
    ProviderGrantRevoked,
    ProviderMisconfigured,
    PushedAuthorizationFailed,
    SignInError,
    TokenRejected,
    UnknownProvider,
)
from . import discovery, dpop, github, tokens
from .config import ProviderKind, TokenAuthMethod, UserinfoPolicy
from .http import ProviderHTTPError, Response, request_json, require_secure_url
from .quirks import STANDARD, Quirks

if TYPE_CHECKING:
    from typing import Self

    from .config import ProviderConfig as Provider

#: Claims that describe the token rather than the person; userinfo may not override them.
_PROTOCOL_CLAIMS = frozenset(
    {
        "iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "azp", "at_hash", "c_hash", "auth_time", "jti",
        "sid", "hd", "tid",
    }
)  # fmt: skip

#: What the user mapping (``accounts.identities``, ``accounts.adapter``) reads, as groups of which
#: one member will do. A provider set to "when needed" calls userinfo only when the verified ID
#: token has no claim of some group, because only then can userinfo change who the person is
#: mapped to or what their account holds:
#:
#: * ``email`` and ``email_verified`` decide linking, the email-domain restriction and the user's
#:   email; ``email_verified`` is a group of its own because an email without it counts as
#:   unverified, which userinfo may well correct (Microsoft's v2.0 ID token never carries it).
#: * ``given_name``, ``family_name`` and ``preferred_username`` fill the first and last name and
#:   the new username; any one shows the token carries the profile scope's claims. ``name`` is not
#:   among them: the mapping never reads it, so a token with only ``name`` still asks userinfo.
#:
#: A present claim is never re-checked at userinfo, whatever its value: ``email_verified: false``
#: in the signed ID token is the provider's answer, not a gap.
USERINFO_NEEDED_UNLESS = (
    frozenset({"email"}),
    frozenset({"email_verified"}),
    frozenset({"given_name", "family_name", "preferred_username"}),
)

#: Friendlier words for the standard ``error`` codes of RFC 6749 4.1.2.1 and OpenID Connect 3.1.2.6.
_DENIAL_MESSAGES = {
    "access_denied": _("The sign-in was cancelled, or the provider refused it. You can try again."),
    "login_required": _("The provider needs you to sign in there first. Please try again."),
    "consent_required": _("The provider needs your consent to share your details with this site."),
    "interaction_required": _("The provider needs you to complete a step there. Please try again."),
    "temporarily_unavailable": _("The provider is temporarily unavailable. Please try again in a few minutes."),
    "server_error": _("Something went wrong at the provider's end, not yours. Please try again in a few minutes."),
}

_WHOLE_SECONDS = re.compile(r"[0-9]{1,10}")


@dataclass
class PendingLogin:
    """What one started sign-in must remember until its callback, in the browser that started it.

    It is kept as a plain dict (``asdict``) in a signed cookie, so every field is JSON-serialisable.
    """

    provider: str
    # The secrets stay out of a repr, and so out of a local variable's line in an error report.
    state: str = field(repr=False)
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    redirect_uri: str
    next_url: str
    created_at: float
    #: The ``max_age`` sent in the authorization request, which the ID token's auth_time must honour.
    max_age: int | None = None
    #: For a connect: the primary key (as text) of the user who asked to link another provider.
    connect_user: str | None = None


@dataclass
class VerifiedLogin:
    """The outcome of a successful callback: verified claims and the raw tokens the session may need."""

    claims: dict[str, Any]
    id_token: str | None = field(repr=False)  # a bearer credential (id_token_hint): never in a repr
    issuer: str
    subject: str
    #: The token endpoint's whole answer (access and refresh tokens): what ``accounts.provider_tokens``
    #: stores when the provider's ``store_tokens`` is on. Never in a repr, a log or a session.
    token_response: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The grant's DPoP private key as a JWK (``dpop.export_key``) when its tokens are DPoP-bound:
    #: stored encrypted with them, since they are useless without it. Never in a repr.
    dpop_key: str = field(default="", repr=False)


class ProviderClient:
    """The protocol side of signing in with one provider, for one request.

    Subclasses say how metadata is obtained (``load_metadata``) and how a token response becomes a
    verified identity (``verified_login``); the authorization request, the callback's checks and
    the code exchange are shared, because RFC 6749 and RFC 7636 are.
    """

    #: Scopes a new provider of this kind asks for unless configured otherwise.
    default_scopes: ClassVar[str] = ""
    #: Whether the provider issues ID tokens, so a nonce is sent and checked.
    uses_nonce: ClassVar[bool] = False
    #: Whether the metadata comes from a discovery document (else from the provider's fields).
    discovers: ClassVar[bool] = False
    #: Whether people sign in with providers of this kind (the login page offers them).
    signs_in: ClassVar[bool] = True

    def __init__(self, provider: Provider, *, metadata: dict[str, Any], quirks: Quirks = STANDARD) -> None:
        self.provider = provider
        self.metadata = metadata
        self.quirks = quirks
        #: The DPoP key of the grant this client works for (RFC 9449): made at the code exchange, or
        #: given back by the token vault for a stored grant. None: the tokens are bearer tokens.
        self.dpop_key: Any = None
        #: The last ``DPoP-Nonce`` each of the provider's servers asked for (section 8), by origin.
        self.dpop_nonces: dict[str, str] = {}
        #: Signs ``private_key_jwt`` assertions: ``sign(claims, algorithms=[...]) -> JWT``. The adapter
        #: hands in the site's keys (``accounts.site_keys.sign``); the protocol layer never holds them.
        self.assertion_signer: Callable[..., str] | None = None

    @classmethod
    def for_provider(cls, provider: Provider, *, quirks: Quirks = STANDARD) -> Self:
        """A client with its metadata loaded (from the cache, or the network if it must)."""
        return cls(provider, metadata=cls.load_metadata(provider, quirks), quirks=quirks)

    @classmethod
    def load_metadata(cls, provider: Provider, quirks: Quirks) -> dict[str, Any]:
        """Endpoints and capabilities, in the shape of an OpenID discovery document."""
        raise NotImplementedError

    @classmethod
    def configuration_problems(cls, provider: Provider) -> dict[str, Any]:
        """Field name -> what is wrong with a provider of this kind as configured (for ``clean``)."""
        return {}

    # --- the authorization request -------------------------------------------------------------

    def authorization_url(self, *, redirect_uri: str, next_url: str, now: float) -> tuple[str, PendingLogin]:
        """The provider URL to send the browser to, and the secrets to keep for the callback.

        State and PKCE S256 are always sent, whatever the provider advertises: state binds the
        callback to this browser, PKCE binds the code. Providers with ID tokens also get a nonce,
        which binds the ID token to this request. A ``max_age`` among the extra parameters is
        checked here, before it is sent, and remembered for the callback's ID token check.
        """
        pending = PendingLogin(
            provider=self.provider.slug,
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),
            redirect_uri=redirect_uri,
            next_url=next_url,
            created_at=now,
            max_age=self.requested_max_age(),
        )
        params = self.authorization_params(pending)
        if self.uses_par():
            params = self.push_authorization_request(params)
        return add_params_to_uri(self.metadata["authorization_endpoint"], list(params.items())), pending

    def uses_par(self) -> bool:
        """Whether authorization requests are pushed (RFC 9126): the provider requires it, or the site asks."""
        return (
            bool(getattr(self.provider, "par", False))
            or self.metadata.get("require_pushed_authorization_requests") is True
        )

    @sensitive_variables("params", "resp")
    def push_authorization_request(self, params: dict[str, str]) -> dict[str, str]:
        """Send the request's parameters to the PAR endpoint; the browser then carries only a reference.

        The request is authenticated like a token request, so nobody else can push one in this
        site's name; the answer's ``request_uri`` and the client id are all the authorization URL
        holds (RFC 9126 section 4). A refusal or garbage is a ``PushedAuthorizationFailed``.
        """
        endpoint = self.metadata.get("pushed_authorization_request_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise ProviderMisconfigured(
                f"{self.provider.slug} wants pushed authorization requests but names no "
                "pushed_authorization_request_endpoint"
            )
        try:
            resp = self.authenticated_post(endpoint, params, what="pushed authorization request endpoint")
        except ProviderHTTPError as exc:
            error = exc.data.get("error")
            raise PushedAuthorizationFailed(
                f"pushed authorization request refused: HTTP {exc.http_status} error={str(error)[:64]!r}"
            ) from exc
        request_uri = resp.data.get("request_uri") if isinstance(resp.data, dict) else None
        if not isinstance(request_uri, str) or not request_uri or len(request_uri) > 2000:
            raise PushedAuthorizationFailed("pushed authorization request answer has no usable request_uri")
        return {"client_id": self.provider.client_id, "request_uri": request_uri}

    def authorization_params(self, pending: PendingLogin) -> dict[str, str]:
        """The authorization request's parameters; the flow's own always win over the extra ones."""
        scopes = list(self.provider.scope_list)
        offline: dict[str, str] = {}
        if getattr(self.provider, "store_tokens", False):  # a refresh token is wanted: the preset says how
            offline = dict(self.quirks.offline_access_params)
            scopes += [s for s in self.quirks.offline_access_scopes if s not in scopes]
        params = {
            **self.provider.extra_auth_params,
            **offline,
            "response_type": "code",
            "client_id": self.provider.client_id,
            "redirect_uri": pending.redirect_uri,
            "scope": " ".join(scopes),
            "state": pending.state,
            "code_challenge": create_s256_code_challenge(pending.code_verifier),
            "code_challenge_method": "S256",
        }
        if self.uses_nonce:
            params["nonce"] = pending.nonce
        return params

    def requested_max_age(self) -> int | None:
        """The ``max_age`` the provider's extra authorization parameters ask for, in seconds, or None.

        Section 3.1.2.1: a whole number of seconds. Anything else is the configuration's fault, so it
        is a ``ProviderMisconfigured`` rather than a request the provider would read its own way.
        """
        value = (self.provider.extra_auth_params or {}).get("max_age")
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**10:
            return value
        if isinstance(value, str) and _WHOLE_SECONDS.fullmatch(value):
            return int(value)
        raise ProviderMisconfigured(
            f"extra authorization parameter max_age of {self.provider.slug} is not a whole number of seconds: "
            f"{value!r:.40}"
        )

    # --- the callback ----------------------------------------------------------------------------

    @sensitive_variables("params", "code", "token")
    def complete(self, params: dict[str, str], pending: PendingLogin) -> VerifiedLogin:
        """Everything after the state check: the callback's parameters, the code exchange, the identity.

        Every network call of a sign-in happens in here. Raises a ``SignInError`` naming the rule.
        """
        code = self.check_authorization_response(params)
        token = self.exchange_code(code=code, pending=pending)
        verified = self.verified_login(token, pending)
        verified.token_response = token
        if self.dpop_key is not None:
            verified.dpop_key = dpop.export_key(self.dpop_key)
        return verified

    @sensitive_variables("params", "code")
    def check_authorization_response(self, params: dict[str, str]) -> str:
        """Validate the callback's query parameters (state already matched) and return the code."""
        self._check_iss_parameter(params.get("iss"))
        error = params.get("error")
        if error:
            denied = ProviderDenied.for_error(error)
            raise denied(f"provider answered error={error[:64]!r}", message=_DENIAL_MESSAGES.get(error))
        code = params.get("code")
        if not code:
            raise InvalidRequest("callback has neither code nor error")
        return code

    def callback_issuer(self) -> str:
        """The ``iss`` an authorization response must carry (RFC 9207 2): the issuer, by default."""
        return str(self.metadata["issuer"])

    def _check_iss_parameter(self, iss: str | None) -> None:
        """RFC 9207: the authorization response names its issuer, defeating mix-up attacks."""
        if iss is None:
            if self.metadata.get("authorization_response_iss_parameter_supported") is True:
                raise InvalidRequest("callback lacks the iss parameter the provider promises (RFC 9207)")
            return
        if iss != self.callback_issuer():
            raise InvalidRequest("callback iss parameter names another issuer (RFC 9207 mix-up defence)")

    @sensitive_variables("code", "token")
    def exchange_code(self, *, code: str, pending: PendingLogin) -> dict[str, Any]:
        """Trade the code for tokens at the token endpoint (RFC 6749 4.1.3, RFC 7636 4.5).

        JSON is asked for explicitly: GitHub answers form-encoded unless told otherwise.
        """
        if self.uses_dpop():
            self.dpop_key = dpop.new_key()  # a key per grant: no two sign-ins' tokens share one
        token = self.token_request(
            "authorization_code",
            refused=_code_refused,
            code=code,
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier,
        )
        self.check_token_type(token, what="token response")
        return token

    def uses_dpop(self) -> bool:
        """Whether this provider's tokens are bound to a DPoP key of the site's (the provider setting)."""
        return bool(getattr(self.provider, "dpop", False))

    def check_token_type(self, token: dict[str, Any], *, what: str) -> None:
        """An access token of the expected type: ``DPoP`` when a proof was sent (RFC 9449 5), else ``Bearer``.

        A provider that answers a DPoP request with a bearer token issued a token anybody holding
        it can use: that is refused, not silently accepted.
        """
        expected = "dpop" if self.dpop_key is not None else "bearer"
        if not isinstance(token.get("access_token"), str) or str(token.get("token_type", "")).lower() != expected:
            raise ProviderMisconfigured(f"{what} lacks a {expected} access_token (token_type must be {expected})")

    @sensitive_variables("params", "body", "headers", "auth", "secret", "resp", "token")
    def token_request(self, grant_type: str, *, refused: Callable[[str], SignInError], **params: str) -> dict[str, Any]:
        """One authenticated call to the token endpoint; ``refused(error)`` is raised for the grant's refusal.

        The client authenticates as the provider supports (``token_endpoint_auth_method``); an
        ``invalid_client`` answer blames the site's configuration, not the person. GitHub reports a
        refused grant with HTTP 200 and an ``error``, so that is a refusal too.
        """
        endpoint = self.metadata["token_endpoint"]
        try:
            resp = self.authenticated_post(
                endpoint, prepare_token_params(grant_type, **params), what="token endpoint", proof=self.dpop_key
            )
        except ProviderHTTPError as exc:
            error = exc.data.get("error")
            if exc.http_status in (400, 401) and error in ("invalid_client", "unauthorized_client"):
                # Not the person's fault, nor fixable by them: the site's client id or secret is wrong.
                raise ProviderMisconfigured(
                    f"token endpoint refused this site's client credentials: error={error!r} (check the "
                    "provider's client id and secret, or its copy of /accounts/jwks.json)"
                ) from exc
            if exc.http_status == 400 and isinstance(error, str):
                raise refused(error) from exc
            raise
        token = resp.data
        if isinstance(token.get("error"), str):  # GitHub reports a bad code with HTTP 200
            raise refused(token["error"])
        return token

    # --- stored tokens: refresh and revocation (``accounts.provider_tokens``) -------------------

    @sensitive_variables("refresh_token", "token")
    def refresh(self, *, refresh_token: str, issuer: str, subject: str) -> dict[str, Any]:
        """New tokens for a refresh token (RFC 6749 section 6), checked to be for the same person.

        ``issuer`` and ``subject`` are the identity the tokens were stored for. Raises
        ``ProviderGrantRevoked`` when the provider answers ``invalid_grant`` (revoked, expired, or a
        reused rotated refresh token), ``TokenRejected`` for an answer about someone else.
        """
        token = self.token_request("refresh_token", refused=_refresh_refused, refresh_token=refresh_token)
        self.check_token_type(token, what="refresh answer")
        self.check_refreshed(token, issuer=issuer, subject=subject)
        return token

    def check_refreshed(self, token: dict[str, Any], *, issuer: str, subject: str) -> None:
        """Whatever a refresh answer says about who it is for must be the stored identity (no rule here)."""

    def fetch_profile(self, *, access_token: str) -> dict[str, Any]:
        """The person's claims now, read with a stored access token ("Update from <provider>")."""
        raise ProviderMisconfigured(f"{self.provider.slug} has no profile to read")

    def revocation_endpoint(self) -> str:
        """Where RFC 7009 revocation requests go, or "" when the provider has none."""
        endpoint = self.metadata.get("revocation_endpoint")
        return endpoint if isinstance(endpoint, str) else ""

    @sensitive_variables("access_token", "refresh_token", "token", "body", "headers", "auth", "secret")
    def revoke(self, *, access_token: str, refresh_token: str) -> bool:
        """Revoke the grant at the provider (RFC 7009); False when the provider offers no way to.

        The refresh token is revoked when there is one: RFC 7009 2.1 says revoking it also revokes
        the access tokens of the same grant. Raises ``ProviderUnavailable`` (or a subclass) when
        the provider refuses or cannot be reached; callers treat it as best effort.
        """
        endpoint = self.revocation_endpoint()
        token, hint = (refresh_token, "refresh_token") if refresh_token else (access_token, "access_token")
        if not endpoint or not token:
            return False
        self.authenticated_post(
            endpoint, {"token": token, "token_type_hint": hint}, what="revocation endpoint", allow_empty=True
        )
        return True

    def token_endpoint_auth_method(self) -> str:
        """The provider's configured method; else from discovery (Discovery 1.0 section 3).

        client_secret_basic unless the provider supports only client_secret_post, or only
        private_key_jwt (login.gov, GOV.UK One Login): then that one.
        """
        configured = getattr(self.provider, "token_auth_method", "")
        if configured:
            return str(configured)
        supported = self.metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if not isinstance(supported, list):
            raise ProviderMisconfigured("discovery token_endpoint_auth_methods_supported is not a list")
        for method in ("client_secret_basic", "client_secret_post"):
            if method in supported:
                return method
        if TokenAuthMethod.PRIVATE_KEY_JWT in supported:
            return TokenAuthMethod.PRIVATE_KEY_JWT
        raise ProviderMisconfigured(f"token endpoint supports none of our auth methods ({supported!r})")

    @sensitive_variables("params", "body", "headers", "auth", "secret")
    def client_authentication(self, endpoint: str, params: dict[str, str]) -> tuple[dict[str, str], str]:
        """Headers and form body of one authenticated call (token, refresh, PAR, revocation): the one place.

        ``client_secret_basic`` (RFC 6749 2.3.1: id and secret form-encoded, then joined for Basic),
        ``client_secret_post``, or ``private_key_jwt`` (RFC 7523 2.2, Core 9): a fresh assertion
        signed with the site's current key, which needs no secret at all.
        """
        method = self.token_endpoint_auth_method()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if method == TokenAuthMethod.PRIVATE_KEY_JWT:
            body = urlencode(
                {
                    **params,
                    "client_id": self.provider.client_id,
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": self.client_assertion(),
                }
            )
            return headers, body
        if method not in (TokenAuthMethod.CLIENT_SECRET_BASIC, TokenAuthMethod.CLIENT_SECRET_POST):
            raise ProviderMisconfigured(f"{self.provider.slug}: unknown token endpoint auth method {method!r:.40}")
        provider = self.provider
        secret = provider.reveal_client_secret()  # decrypted (or read from its variable) only here
        if method == TokenAuthMethod.CLIENT_SECRET_BASIC:
            auth = ClientAuth(quote_plus(provider.client_id), quote_plus(secret), method)
        else:
            auth = ClientAuth(provider.client_id, secret, method)
        _uri, headers, body = auth.prepare("POST", endpoint, headers, urlencode(params))
        return headers, body

    def client_assertion(self, *, now: float | None = None) -> str:
        """A ``private_key_jwt`` assertion: iss = sub = client id, aud = the issuer identifier, unique jti.

        The audience is the provider's issuer identifier, never the endpoint's URL: an assertion
        meant for one endpoint must not be replayable at another server that shares a URL with it
        (the OpenID Foundation's 2025 advisory on audience confusion). It lives at most
        ``ACCOUNTS_PRIVATE_KEY_JWT_LIFETIME`` (<= 60) seconds and is signed with an algorithm the
        provider advertises (``token_endpoint_auth_signing_alg_values_supported``).
        """
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.provider.client_id,
            "sub": self.provider.client_id,
            "aud": self.assertion_audience(),
            "jti": secrets.token_urlsafe(32),
            "iat": issued,
            "exp": issued + min(conf.PRIVATE_KEY_JWT_LIFETIME, 60),
        }
        advertised = self.metadata.get("token_endpoint_auth_signing_alg_values_supported")
        algorithms = [a for a in advertised if isinstance(a, str)] if isinstance(advertised, list) else None
        if self.assertion_signer is None:
            raise ProviderMisconfigured(f"{self.provider.slug}: no signer for client assertions (private_key_jwt)")
        return str(self.assertion_signer(claims, algorithms=algorithms))

    def assertion_audience(self) -> str:
        """The issuer identifier; the token endpoint only for a provider whose quirk says so, on its origin."""
        issuer = str(self.metadata["issuer"])
        if not self.quirks.assertion_audience_token_endpoint:
            return issuer
        endpoint = str(self.metadata["token_endpoint"])
        same_origin = urlsplit(endpoint)[:2] == urlsplit(issuer)[:2]
        if not same_origin:
            raise ProviderMisconfigured(
                f"{self.provider.slug}: token endpoint is not on the issuer's origin, so no assertion is made for it"
            )
        return endpoint

    @sensitive_variables("params", "body", "headers", "proof")
    def authenticated_post(
        self, endpoint: str, params: dict[str, str], *, what: str, proof: Any = None, allow_empty: bool = False
    ) -> Response:
        """One client-authenticated form POST; with ``proof`` (a DPoP key), a DPoP proof and one nonce retry."""
        if proof is None:
            headers, body = self.client_authentication(endpoint, params)
            return request_json("POST", endpoint, what=what, data=body, headers=headers, allow_empty=allow_empty)
        # A retry for a nonce gets a new client assertion too: the provider spent the first one's jti.
        return self.dpop_request(
            "POST", endpoint, what=what, build=lambda: self.client_authentication(endpoint, params),
            allow_empty=allow_empty,
        )  # fmt: skip

    @sensitive_variables("headers", "data", "access_token")
    def dpop_request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        build: Callable[[], tuple[dict[str, str], str | None]],
        access_token: str | None = None,
        allow_empty: bool = False,
        accept_jwt: bool = False,
    ) -> Response:
        """A request with a fresh DPoP proof; a ``use_dpop_nonce`` answer is retried once with the nonce.

        ``build`` makes the headers and body of each attempt (a client assertion is single use).

        RFC 9449 section 8 (authorization server: 400 ``use_dpop_nonce``) and section 9 (resource
        server: 401 with ``WWW-Authenticate: DPoP error="use_dpop_nonce"``); the nonce is kept per
        origin for the next request of this client. A second nonce demand is the provider's error.
        """
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        for attempt in (1, 2):
            headers, data = build()
            proof = dpop.make_proof(
                self.dpop_key, htm=method, htu=url, access_token=access_token, nonce=self.dpop_nonces.get(origin)
            )
            try:
                return request_json(
                    method, url, what=what, data=data, headers={**headers, "DPoP": proof},
                    allow_empty=allow_empty, accept_jwt=accept_jwt,
                )  # fmt: skip
            except ProviderHTTPError as exc:
                nonce = exc.headers.get("DPoP-Nonce")
                if attempt == 2 or not nonce or not _asks_for_nonce(exc) or len(nonce) > 500:
                    raise
                self.dpop_nonces[origin] = nonce
        raise AssertionError("unreachable")  # pragma: no cover

    def verified_login(self, token: dict[str, Any], pending: PendingLogin) -> VerifiedLogin:
        """Who signed in, from the token endpoint's answer, every claim verified."""
        raise NotImplementedError

    # --- signing out -----------------------------------------------------------------------------

    def end_session_url(self, *, id_token: str | None, post_logout_redirect_uri: str) -> str | None:
        """Where to continue a local logout (OpenID Connect RP-Initiated Logout 1.0), or None."""
        endpoint = self.metadata.get("end_session_endpoint")  # discovery checked it is https
        if not endpoint:
            return None
        params = [("client_id", self.provider.client_id), ("post_logout_redirect_uri", post_logout_redirect_uri)]
        if id_token:
            params.insert(0, ("id_token_hint", id_token))
        return add_params_to_uri(endpoint, params)

    def verify_logout_token(self, raw: str) -> dict[str, Any]:
        """The verified claims of a back-channel logout token (Back-Channel Logout 1.0, 2.6)."""
        raise InvalidRequest(f"{self.provider.slug} sends no logout tokens: it is not an OpenID Connect provider")


class OpenIDConnectClient(ProviderClient):
    """OpenID Connect Core 1.0: discovered metadata, a verified ID token, userinfo when needed."""

    default_scopes = "openid email profile"
    uses_nonce = True
    discovers = True

    @classmethod
    def load_metadata(cls, provider: Provider, quirks: Quirks) -> dict[str, Any]:
        return discovery.get_metadata(provider.issuer, quirks=quirks)

    @classmethod
    def configuration_problems(cls, provider: Provider) -> dict[str, Any]:
        if "openid" not in provider.scope_list:
            return {"scopes": _("An OpenID Connect provider needs the 'openid' scope.")}
        return {}

    @sensitive_variables("token", "raw_id_token")
    def verified_login(self, token: dict[str, Any], pending: PendingLogin) -> VerifiedLogin:
        """The ID token verified; userinfo merged in only if the provider's choice asks for it."""
        return self._verified_id_token(
            token.get("id_token"), access_token=token["access_token"], nonce=pending.nonce, max_age=pending.max_age
        )

    # --- sign-in without a redirect (accounts.no_redirect) ---------------------------------------

    def verify_presented_id_token(self, raw: str, *, client_ids: list[str], nonce: str | None) -> VerifiedLogin:
        """An ID token a browser (Google's button) or an app handed us, by the redirect flow's rules.

        Signature, algorithm, issuer, audience (one of ``client_ids``), expiry and ``sub`` are
        checked exactly as for the token endpoint's answer; only the origin differs: anyone can post
        such a token, so its unknown ``kid`` spends the strict refetch budget (``KeyOrigin.ANYONE``).
        ``nonce=None`` leaves the nonce claim to the caller. No access token, so no userinfo.
        """
        return self._verified_id_token(
            raw, access_token=None, nonce=nonce, client_ids=client_ids, origin=discovery.KeyOrigin.ANYONE
        )

    def complete_app_code(self, *, code: str, code_verifier: str, redirect_uri: str) -> VerifiedLogin:
        """A native or single-page app's own authorization code (with its PKCE verifier), redeemed here.

        The app ran the authorization request with this provider's client id; the code is exchanged
        with this site's credentials exactly as a callback's would be, and the ID token checked the
        same way. The app's PKCE verifier binds the code to the app instance that asked for it, so no
        nonce is required here (RFC 9700 2.1.1).
        """
        pending = PendingLogin(
            provider=self.provider.slug, state="", nonce="", code_verifier=code_verifier,
            redirect_uri=redirect_uri, next_url="", created_at=0.0,
        )  # fmt: skip
        token = self.exchange_code(code=code, pending=pending)
        return self._verified_id_token(token.get("id_token"), access_token=token["access_token"], nonce=None)

    def _verified_id_token(
        self,
        raw_id_token: object,
        *,
        access_token: str | None,
        nonce: str | None,
        max_age: int | None = None,
        client_ids: list[str] | None = None,
        origin: discovery.KeyOrigin = discovery.KeyOrigin.BACK_CHANNEL,
    ) -> VerifiedLogin:
        provider, metadata = self.provider, self.metadata
        if not isinstance(raw_id_token, str):
            raise TokenRejected("token response has no id_token")
        claims = tokens.verify_id_token(
            provider,
            raw_id_token,
            jwks_uri=metadata["jwks_uri"],
            nonce=nonce,
            issuers=lambda verified: self.quirks.accepted_issuers(provider.issuer, metadata, verified),
            access_token=access_token,
            max_age=max_age,
            client_ids=client_ids,
            origin=origin,
        )
        if access_token is not None and metadata.get("userinfo_endpoint") and self.userinfo_needed(claims):
            userinfo = self.fetch_userinfo(access_token=access_token)
            # Section 5.3.4: the userinfo sub must be the ID token's, or the answer is for someone else.
            if not isinstance(userinfo.get("sub"), str) or not tokens.same_text(userinfo["sub"], claims["sub"]):
                raise TokenRejected("userinfo sub differs from the ID token sub")
            claims = {**claims, **{k: v for k, v in userinfo.items() if k not in _PROTOCOL_CLAIMS}}
        claims["iss"] = self.quirks.canonical_issuer(provider.issuer, claims["iss"])
        return VerifiedLogin(claims=claims, id_token=raw_id_token, issuer=claims["iss"], subject=claims["sub"])

    def userinfo_needed(self, id_token_claims: dict[str, Any]) -> bool:
        """Whether this sign-in calls userinfo, by the provider's ``userinfo`` choice (see above)."""
        choice = self.provider.userinfo
        if choice == UserinfoPolicy.NEVER:
            return False
        if choice == UserinfoPolicy.ALWAYS:
            return True
        return any(not group & id_token_claims.keys() for group in USERINFO_NEEDED_UNLESS)

    @sensitive_variables("access_token", "resp")
    def fetch_userinfo(self, *, access_token: str) -> dict[str, Any]:
        """Claims from the userinfo endpoint (section 5.3), plain JSON or a signed JWT."""
        endpoint = self.metadata["userinfo_endpoint"]
        if self.dpop_key is not None:  # RFC 9449 7.1: the DPoP scheme, and a proof with the token's hash
            scheme = {"Authorization": f"DPoP {access_token}"}
            resp = self.dpop_request(
                "GET", endpoint, what="userinfo endpoint", build=lambda: (scheme, None), access_token=access_token,
                accept_jwt=True,
            )  # fmt: skip
        else:
            resp = request_json(
                "GET", endpoint, what="userinfo endpoint", headers={"Authorization": f"Bearer {access_token}"},
                accept_jwt=True,
            )  # fmt: skip
        if resp.data is None:
            return tokens.verify_userinfo_jwt(self.provider, resp.text.strip(), jwks_uri=self.metadata["jwks_uri"])
        return resp.data

    @sensitive_variables("raw")
    def verify_logout_token(self, raw: str) -> dict[str, Any]:
        return tokens.verify_logout_token(self.provider, raw, jwks_uri=self.metadata["jwks_uri"])

    def fetch_profile(self, *, access_token: str) -> dict[str, Any]:
        if not self.metadata.get("userinfo_endpoint"):
            raise ProviderMisconfigured(f"{self.provider.slug} has no userinfo endpoint")
        return self.fetch_userinfo(access_token=access_token)

    def check_refreshed(self, token: dict[str, Any], *, issuer: str, subject: str) -> None:
        """An ID token in a refresh answer is verified like any, and must keep iss, sub and aud (Core 12.2).

        Its signature, issuer, audience and times are checked as at sign-in (no nonce: none was
        sent); then its issuer and subject must be the stored identity's, or the provider is
        handing this identity's tokens to somebody else.
        """
        provider, metadata = self.provider, self.metadata
        raw = token.get("id_token")
        if raw is None:
            return
        if not isinstance(raw, str):
            raise TokenRejected("refresh answer's id_token is not a string")
        what = "refreshed ID token"
        _header, claims = tokens.verify_signed_jwt(
            provider, raw, jwks_uri=metadata["jwks_uri"], what=what, origin=discovery.KeyOrigin.BACK_CHANNEL
        )
        tokens.check_claims(
            claims,
            issuers=self.quirks.accepted_issuers(provider.issuer, metadata, claims),
            client_id=provider.client_id,
            what=what,
            sub={"essential": True},
        )
        if self.quirks.canonical_issuer(provider.issuer, claims["iss"]) != issuer:
            raise TokenRejected(f"{what} iss differs from the identity's issuer (Core 12.2)")
        if not isinstance(claims["sub"], str) or not tokens.same_text(claims["sub"], subject):
            raise TokenRejected(f"{what} sub differs from the identity's subject (Core 12.2)")


class GitHubClient(ProviderClient):
    """OAuth 2.0 with the identity from a REST API (GitHub, GitHub Enterprise Server, look-alikes)."""

    default_scopes = "read:user user:email"

    @classmethod
    def load_metadata(cls, provider: Provider, quirks: Quirks) -> dict[str, Any]:
        return github.metadata(provider)

    @classmethod
    def configuration_problems(cls, provider: Provider) -> dict[str, Any]:
        return {
            name: _("Required for a GitHub-style provider.")
            for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint")
            if not getattr(provider, name)
        }

    def callback_issuer(self) -> str:
        """GitHub names its callbacks ``https://github.com/login/oauth``, not its identity namespace."""
        return github.callback_issuer(self.provider)

    @sensitive_variables("token")
    def verified_login(self, token: dict[str, Any], pending: PendingLogin) -> VerifiedLogin:
        claims = github.fetch_identity(self.provider, access_token=token["access_token"])
        return VerifiedLogin(claims=claims, id_token=None, issuer=claims["iss"], subject=claims["sub"])

    def fetch_profile(self, *, access_token: str) -> dict[str, Any]:
        return github.fetch_identity(self.provider, access_token=access_token)

    @sensitive_variables("access_token", "refresh_token")
    def revoke(self, *, access_token: str, refresh_token: str) -> bool:
        """GitHub has no RFC 7009 endpoint: deleting the app's grant revokes every token of it."""
        if not access_token:
            return False
        github.delete_grant(self.provider, access_token=access_token)
        return True


class TokenIssuerClient(ProviderClient):
    """An issuer known by its issuer and JWKS URL alone, which signs access tokens for this site's APIs.

    Identity platforms publish a per-project JWKS URL for their session and machine-to-machine
    JWTs without any OpenID discovery document; the keys go through the same cache as a sign-in
    provider's (``accounts.oidc.discovery``). Nobody signs in with such an issuer: it has no
    authorization endpoint, so asking for one is an unknown provider, never a crash.
    """

    signs_in = False

    @classmethod
    def load_metadata(cls, provider: Provider, quirks: Quirks) -> dict[str, Any]:
        """The configured JWKS URL; without one, the issuer's discovery document names its keys."""
        if not provider.jwks_uri:
            metadata = discovery.get_metadata(provider.issuer, quirks=quirks, required=discovery.TOKEN_ISSUER_METADATA)
            return {"issuer": provider.issuer, "jwks_uri": metadata["jwks_uri"]}
        require_secure_url(provider.jwks_uri, what="jwks_uri")
        return {"issuer": provider.issuer, "jwks_uri": provider.jwks_uri}

    def authorization_url(self, *, redirect_uri: str, next_url: str, now: float) -> tuple[str, PendingLogin]:
        raise UnknownProvider(f"{self.provider.slug} is a token issuer: nobody signs in with it")


#: The client class of each ``Provider.Kind`` value.
CLIENT_CLASSES: dict[str, type[ProviderClient]] = {
    ProviderKind.OIDC: OpenIDConnectClient,
    ProviderKind.GITHUB: GitHubClient,
    ProviderKind.TOKEN_ISSUER: TokenIssuerClient,
}


def sign_in_kinds() -> list[str]:
    """The kinds people sign in with: what the login and profile pages list (token issuers are not)."""
    return [kind for kind, cls in CLIENT_CLASSES.items() if cls.signs_in]


def client_class(kind: str) -> type[ProviderClient]:
    """The client class for a provider kind: the one place the kind is looked at."""
    try:
        return CLIENT_CLASSES[kind]
    except KeyError:
        raise ProviderMisconfigured(f"no client for provider kind {kind!r}") from None


def _refresh_refused(error: str) -> SignInError:
    """``invalid_grant`` (GitHub: ``bad_refresh_token``) means the grant is gone; anything else is unexpected."""
    if error in ("invalid_grant", "bad_refresh_token"):
        return ProviderGrantRevoked(f"token endpoint refused the refresh token: error={error[:64]!r}")
    return TokenRejected(f"token endpoint refused the refresh: error={error[:64]!r}")


def prepare_token_params(grant_type: str, **params: str) -> dict[str, str]:
    """The form parameters of a token request (RFC 6749 4.1.3, 6), empty values left out."""
    return {"grant_type": grant_type, **{name: value for name, value in params.items() if value}}


def _asks_for_nonce(exc: ProviderHTTPError) -> bool:
    """A ``use_dpop_nonce`` answer: 400 with the error in the body, or 401 with it in WWW-Authenticate."""
    if exc.data.get("error") == "use_dpop_nonce":
        return True
    return 'error="use_dpop_nonce"' in exc.headers.get("WWW-Authenticate", "")


def _code_refused(error: str) -> TokenRejected:
    return TokenRejected(
        f"token endpoint refused the code: error={error[:64]!r}",
        message=_("The provider did not accept this sign-in (it may have expired). Please try again."),
    )
