"""The OpenID Provider itself, assembled from Authlib's server components.

* ``AuthorizationServer`` (Django integration) runs the authorization and token endpoints;
* ``AuthorizationCodeGrant`` + ``CodeChallenge`` (PKCE, S256 only, required) + ``OpenIDCode``
  (ID tokens, signed through joserfc) implement the code flow;
* ``ClientCredentialsGrant`` lets a registered client get a token for itself (machine to machine);
* every access token is an RFC 9068 JWT (``typ: at+jwt``), signed with the ID tokens' RS256 key,
  so a site's APIs can verify it offline (``accounts.api``);
* ``ResourceProtector`` + ``BearerTokenValidator`` guard userinfo;
* ``EndSessionEndpoint`` implements RP-initiated logout.

What is left here is storage (this app's models) and the few facts Authlib cannot know: the
issuer (computed per request from the host, so the IdP works on any port), which key signs, and
which claims a user releases.
"""

from __future__ import annotations

import contextvars
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from authlib.common.security import generate_token
from authlib.integrations.django_oauth2 import AuthorizationServer, BearerTokenValidator, ResourceProtector
from authlib.oauth2.rfc6749 import InvalidRequestError, grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode, UserInfo
from authlib.oidc.rpinitiated import EndSessionEndpoint, EndSessionRequest
from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from joserfc import jwt
from joserfc.jwk import KeySet

from . import keys
from .models import (
    CODE_LIFETIME,
    REFRESH_TOKEN_LIFETIME,
    SIGNING_ALGORITHMS,
    TOKEN_LIFETIME,
    AuthorizationCode,
    Client,
    DevUser,
    Token,
    token_digest,
)

if TYPE_CHECKING:
    from authlib.oauth2.rfc6749 import OAuth2Request
    from django.http import HttpRequest


def issuer_for(url: str) -> str:
    """The issuer identifier for a request to ``url``: its scheme and host plus this app's prefix.

    Computed per request, never configured, so ``runserver 0:8011`` or a test's live server on a
    random port each get a consistent issuer in discovery and in the ID tokens.
    """
    parts = urlsplit(url)
    prefix = reverse("devidp:discovery").removesuffix("/.well-known/openid-configuration")
    return f"{parts.scheme}://{parts.netloc}{prefix}"


def request_issuer(request: HttpRequest) -> str:
    return issuer_for(request.build_absolute_uri("/"))


#: The site a token request came to, while it is answered: the issuer of the tokens it gets.
_token_request_site: contextvars.ContextVar[str] = contextvars.ContextVar("devidp_token_request_site")


def access_token_audience(site: str) -> str:
    """The ``aud`` of every access token: ``DEVIDP_ACCESS_TOKEN_AUDIENCE``, else ``<site>/api/``.

    RFC 9068 wants the API's identifier there, never the client's; with the default, the demo
    site's own APIs are the audience (``ACCOUNTS_API_AUDIENCE = "http://127.0.0.1:8000/api/"``).
    """
    configured = getattr(settings, "DEVIDP_ACCESS_TOKEN_AUDIENCE", None)
    return configured if configured else site.rstrip("/") + "/api/"


def jwt_access_token(*, client: Client, grant_type: str, user: DevUser | None, scope: str | None) -> str:
    """An RFC 9068 JWT access token: ``typ: at+jwt``, iss, aud, exp, iat, jti, client_id, sub, scope.

    A client-credentials token names the client itself as its subject (section 2.2), so a resource
    server can tell it from a user's. Signed with the active RS256 key, whose kid the header names.
    """
    site = _token_request_site.get()
    now = int(time.time())
    claims = {
        "iss": issuer_for(site),
        "aud": access_token_audience(site),
        "exp": now + int(TOKEN_LIFETIME.total_seconds()),
        "iat": now,
        "jti": generate_token(24),
        "client_id": client.client_id,
        "sub": user.sub if user is not None else client.client_id,
        "scope": scope or "",
    }
    return jwt.encode({"alg": "RS256", "typ": "at+jwt"}, claims, keys.signing_keys("RS256"), algorithms=["RS256"])


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only, and required of every client at the authorization request.

    Authlib's ``required=True`` only insists on PKCE for public clients at the token endpoint;
    OAuth 2.0 Security BCP (RFC 9700) wants it from confidential clients too, and "plain"
    defeats its purpose, so an authorization request without an S256 challenge is refused.
    """

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: grants.AuthorizationCodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if self.required and not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256.")
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.")
        super().validate_code_challenge(grant, redirect_uri)


class DevOpenIDCode(OpenIDCode):
    """ID tokens for the code flow: issuer from the token request, key by the client's algorithm."""

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return AuthorizationCode.objects.filter(client__client_id=request.payload.client_id, nonce=nonce).exists()

    def get_compatible_claims(self, request: OAuth2Request) -> dict[str, Any]:
        claims = super().get_compatible_claims(request)
        claims["iss"] = issuer_for(request.uri)
        # A single audience as a plain string (Authlib's default is a one-element list): what most
        # providers send, and what Authlib's own logout endpoint resolves the client from.
        claims["aud"] = request.client.get_client_id()
        return claims

    def resolve_client_private_key(self, client: Client) -> KeySet:
        return keys.signing_keys(self.get_client_algorithm(client))

    def generate_user_info(self, user: DevUser, scope: str) -> UserInfo:
        # OIDC Core 5.4: when an access token is issued, profile and email claims are served by the
        # userinfo endpoint, so the ID token names only the subject -- which keeps the relying
        # party's userinfo handling exercised.
        return UserInfo(sub=user.sub)


class CodeGrant(grants.AuthorizationCodeGrant):
    """The authorization code grant, storing codes in ``AuthorizationCode``."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> AuthorizationCode:
        now = timezone.now()
        AuthorizationCode.objects.filter(expires_at__lte=now).delete()  # keep the table small
        data = request.payload.data
        return AuthorizationCode.objects.create(
            code=code,
            client=request.client,
            user=request.user,
            redirect_uri=request.payload.redirect_uri or "",
            scope=request.scope or "",
            nonce=data.get("nonce") or "",
            code_challenge=data.get("code_challenge") or "",
            code_challenge_method=data.get("code_challenge_method") or "",
            auth_time=int(time.time()),
            expires_at=now + CODE_LIFETIME,
        )

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        """Find the code and consume it in the same step.

        Deleting it here (not after the token is issued) makes it single-use even when two token
        requests race, and a request that then fails (say, a wrong PKCE verifier) burns the code,
        so a verifier cannot be guessed by retrying.
        """
        found = (
            AuthorizationCode.objects.select_related("client", "user")
            .filter(code=code, client=client, expires_at__gt=timezone.now())
            .first()
        )
        if found is None:
            return None
        deleted, _ = AuthorizationCode.objects.filter(pk=found.pk).delete()
        return found if deleted else None

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing left to do: ``query_authorization_code`` consumed the code already."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> DevUser:
        return authorization_code.user


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """RFC 6749 4.4: a client authenticated by its secret gets a token for itself, no user involved."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class RefreshGrant(grants.RefreshTokenGrant):
    """RFC 6749 section 6 with rotation and reuse detection, as Auth0, Okta and Keycloak do it.

    Every refresh issues a new refresh token and spends the old one; a spent one presented again
    means two parties hold it (a leak, or a client refreshing twice at once), so the whole grant is
    revoked -- every access and refresh token of it -- and the client must sign the person in again.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        client = self.request.client  # authenticated already: another client's token is simply unknown
        found = (
            Token.objects.select_related("user", "client")
            .filter(refresh_token=token_digest(refresh_token), client=client)
            .first()
        )
        if found is None:
            return None
        expired = found.issued_at + REFRESH_TOKEN_LIFETIME.total_seconds() < time.time()
        # Spend it in the same step (compare and set), so two refreshes racing cannot both use it.
        spent_now = Token.objects.filter(pk=found.pk, refresh_used=False, revoked=False).update(refresh_used=True)
        if not spent_now:
            Token.objects.filter(grant_id=found.grant_id).update(revoked=True, refresh_used=True)
            return None
        return None if expired else found

    def authenticate_user(self, refresh_token: Token) -> DevUser | None:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """Nothing left to do: ``authenticate_refresh_token`` spent it already."""


class DevAuthorizationServer(AuthorizationServer):
    """Authlib's Django server with this app's models and one-hour RFC 9068 access tokens."""

    def __init__(self) -> None:
        super().__init__(Client, Token)

    def create_bearer_token_generator(self) -> BearerTokenGenerator:
        return BearerTokenGenerator(
            access_token_generator=jwt_access_token,
            refresh_token_generator=lambda **_: generate_token(48),
            expires_generator=int(TOKEN_LIFETIME.total_seconds()),
        )

    def create_token_response(self, request: Any = None) -> Any:
        """Answer a token request, its tokens issued by the site it came to (as the ID tokens are)."""
        reset = _token_request_site.set(request.build_absolute_uri("/"))
        try:
            return super().create_token_response(request)
        finally:
            _token_request_site.reset(reset)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> Token:
        # Keep the table small; spent refresh tokens are kept as long as they could come back.
        expired_before = int(time.time() - TOKEN_LIFETIME.total_seconds())
        forgotten_before = int(time.time() - REFRESH_TOKEN_LIFETIME.total_seconds())
        Token.objects.filter(
            Q(issued_at__lt=forgotten_before)
            | (Q(refresh_token="") & (Q(issued_at__lt=expired_before) | Q(revoked=True)))
        ).delete()
        previous = getattr(request, "refresh_token", None)
        return Token.objects.create(
            refresh_token=token_digest(token["refresh_token"]) if token.get("refresh_token") else "",
            grant_id=previous.grant_id if isinstance(previous, Token) else generate_token(24),
            access_token=token_digest(token["access_token"]),
            token_type=token["token_type"],
            client=request.client,
            user=request.user,
            scope=token.get("scope", ""),
            expires_in=token["expires_in"],
        )


class DevEndSessionEndpoint(EndSessionEndpoint):
    """RP-initiated logout: redirects only to a registered URI, and only with a valid id_token_hint."""

    def get_server_jwks(self) -> KeySet:
        # Retired keys too: a session that began before a rotation can still be ended cleanly.
        return keys.verification_keys()

    def get_algorithms(self) -> list[str]:
        return list(SIGNING_ALGORITHMS)

    def end_session(self, end_session_request: EndSessionRequest) -> None:
        """The dev IdP holds no login session of its own; the view forgets the remembered account."""


class DigestBearerTokenValidator(BearerTokenValidator):
    """Authlib's validator, looking the token up by its digest (``Token.access_token``)."""

    def authenticate_token(self, token_string: str) -> Token | None:
        return Token.objects.select_related("user", "client").filter(access_token=token_digest(token_string)).first()


server = DevAuthorizationServer()
server.register_grant(CodeGrant, [S256CodeChallenge(required=True), DevOpenIDCode(require_nonce=False)])
server.register_grant(ClientCredentialsGrant)
server.register_grant(RefreshGrant)
server.register_endpoint(DevEndSessionEndpoint)

#: Guards the userinfo endpoint: a valid, unexpired bearer token with the "openid" scope.
require_token = ResourceProtector()
require_token.register_token_validator(DigestBearerTokenValidator(Token))
