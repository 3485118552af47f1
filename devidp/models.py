"""What the dev IdP stores: test users, registered clients, codes, tokens and its signing keys.

The client, code and token models implement the small interfaces Authlib's server expects
(``ClientMixin``, ``AuthorizationCodeMixin``, ``TokenMixin``), so the protocol itself stays
Authlib's. Everything is in the database rather than in memory because the site's own processes
and the runserver threads that answer the relying party's back-channel calls must agree.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from datetime import timedelta
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, list_to_scope, scope_to_list
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo
from django.db import models
from django.utils import timezone

#: How long an authorization code may wait for the token request (RFC 6749 4.1.2: "short").
CODE_LIFETIME = timedelta(seconds=60)
#: How long an access token lets the relying party read userinfo: short, so that the demo's
#: "Update from Dev IdP" shows a refresh (accounts.provider_tokens) within minutes.
TOKEN_LIFETIME = timedelta(minutes=10)
#: How long a refresh token stays usable, and a spent one is remembered (to catch its reuse).
REFRESH_TOKEN_LIFETIME = timedelta(days=30)

SIGNING_ALGORITHMS = ("RS256", "ES256")
#: The grants of the token endpoint (also its discovery metadata's ``grant_types_supported``).
GRANT_TYPES = ("authorization_code", "client_credentials", "refresh_token")


def _new_sub() -> str:
    return uuid.uuid4().hex


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def _now_seconds() -> int:
    return int(time.time())


class DevUser(models.Model):
    """A test person. ``sub`` is random and never changes, like a real provider's subject."""

    sub = models.CharField(max_length=64, unique=True, default=_new_sub, editable=False)
    name = models.CharField(max_length=200)
    given_name = models.CharField(max_length=100, blank=True)
    family_name = models.CharField(max_length=100, blank=True)
    preferred_username = models.CharField(max_length=100, blank=True)
    email = models.EmailField(unique=True)
    email_verified = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name = "test user"

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    def claims(self, scope: str) -> UserInfo:
        """The standard claims (OIDC Core 5.1) this user releases for ``scope``."""
        info = UserInfo(
            sub=self.sub,
            name=self.name,
            given_name=self.given_name,
            family_name=self.family_name,
            preferred_username=self.preferred_username,
            email=self.email,
            email_verified=self.email_verified,
        )
        return UserInfo({k: v for k, v in info.filter(scope).items() if v != ""})


class Client(models.Model, ClientMixin):
    """A registered relying party, with the client metadata of OpenID Connect Registration 1.0."""

    class AuthMethod(models.TextChoices):
        BASIC = "client_secret_basic", "client_secret_basic"
        POST = "client_secret_post", "client_secret_post"

    client_id = models.CharField(max_length=100, unique=True)
    client_secret = models.CharField(max_length=100, default=_new_secret)
    client_name = models.CharField(max_length=100, help_text="Shown on the sign-in page.")
    redirect_uris = models.JSONField(default=list, help_text="Exact callback URLs, as a JSON list.")
    post_logout_redirect_uris = models.JSONField(default=list, blank=True)
    scope = models.CharField(max_length=200, default="openid email profile")
    token_endpoint_auth_method = models.CharField(max_length=40, choices=AuthMethod.choices, default=AuthMethod.BASIC)
    id_token_signed_response_alg = models.CharField(
        max_length=10, choices=[(a, a) for a in SIGNING_ALGORITHMS], default="RS256"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.client_name} ({self.client_id})"

    # --- authlib.oauth2.rfc6749.ClientMixin ---

    @property
    def client_metadata(self) -> dict[str, Any]:
        """Registration metadata, as Authlib's logout and userinfo endpoints look it up."""
        return {
            "client_name": self.client_name,
            "redirect_uris": list(self.redirect_uris),
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "id_token_signed_response_alg": self.id_token_signed_response_alg,
        }

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        # OpenID Connect makes redirect_uri mandatory; never guess one for the client.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(scope_to_list(self.scope))
        return list_to_scope([s for s in scope_to_list(scope or "") if s in allowed])

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match only (OAuth 2.0 Security BCP)

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(self.client_secret.encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method == self.token_endpoint_auth_method
        return True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        """The code flow for sign-ins; client credentials for a service calling an API as itself."""
        return grant_type in GRANT_TYPES


class AuthorizationCode(models.Model, AuthorizationCodeMixin):
    """An issued code, with what the token request must match: redirect URI, PKCE challenge, nonce."""

    code = models.CharField(max_length=120, unique=True)
    client = models.ForeignKey(Client, on_delete=models.CASCADE)
    user = models.ForeignKey(DevUser, on_delete=models.CASCADE)
    redirect_uri = models.TextField(blank=True)
    scope = models.TextField(blank=True)
    nonce = models.CharField(max_length=255, blank=True)
    code_challenge = models.CharField(max_length=128, blank=True)
    code_challenge_method = models.CharField(max_length=10, blank=True)
    auth_time = models.PositiveBigIntegerField()
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["client", "nonce"])]

    def __str__(self) -> str:
        return f"code for {self.user} at {self.client}"

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce or None

    def get_auth_time(self) -> int:
        return self.auth_time


def token_digest(access_token: str) -> str:
    """What is stored of an access token: its SHA-256, so the table holds nothing a caller could replay.

    It also keeps the column short whatever the token's length (a signed JWT runs to a kilobyte).
    """
    return hashlib.sha256(access_token.encode()).hexdigest()


class Token(models.Model, TokenMixin):
    """An issued access token (an RFC 9068 JWT): it lets the client read userinfo, or call an API.

    A client-credentials token has no ``user``: the client acts for itself.
    """

    access_token = models.CharField(max_length=255, unique=True, help_text="SHA-256 of the token, never the token.")
    token_type = models.CharField(max_length=40, default="Bearer")
    client = models.ForeignKey(Client, on_delete=models.CASCADE)
    user = models.ForeignKey(DevUser, on_delete=models.CASCADE, null=True, blank=True)
    scope = models.TextField(blank=True)
    issued_at = models.PositiveBigIntegerField(default=_now_seconds)
    expires_in = models.PositiveIntegerField()
    revoked = models.BooleanField(default=False)
    #: SHA-256 of the refresh token issued with it ("" for none). Refresh tokens rotate: each is
    #: good for one refresh (``refresh_used``), and presenting a spent one revokes the whole grant.
    refresh_token = models.CharField(max_length=64, blank=True, db_index=True)
    refresh_used = models.BooleanField(default=False)
    #: The grant (one code exchange and every refresh after it) the token belongs to.
    grant_id = models.CharField(max_length=40, blank=True, db_index=True)

    def __str__(self) -> str:
        return f"token for {self.user or 'the client itself'} at {self.client}"

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.pk

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> DevUser | None:
        return self.user

    def get_client(self) -> Client:
        return self.client


class SigningKey(models.Model):
    """A private key the ID tokens are signed with. Only active keys are published in the JWKS.

    One key per algorithm is active at a time (enforced by a constraint, so two first requests
    racing to create keys cannot both succeed). A retired key is kept for the record and for
    verifying ``id_token_hint`` at logout, but is no longer published.
    """

    kid = models.CharField(max_length=100, unique=True)
    kty = models.CharField(max_length=10)
    alg = models.CharField(max_length=10, choices=[(a, a) for a in SIGNING_ALGORITHMS])
    private_jwk = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    active = models.BooleanField(default=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["alg"], condition=models.Q(active=True), name="devidp_one_active_key_per_alg"
            ),
        ]

    def __str__(self) -> str:
        state = "active" if self.active else "retired"
        return f"{self.alg} key {self.kid} ({state})"
