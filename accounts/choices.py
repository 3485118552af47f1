"""The closed sets of values the app stores or compares, as enums.

Where the protocol layer has the same set (``accounts.oidc.config``), the values are its own and
only the labels are added here. They live apart from ``models`` so that data modules
(``presets``) can use them without importing the models (which import the presets for the preset
field's choices). ``Provider.Kind`` and the other model attributes are these same classes.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .oidc.config import ProviderKind, UserinfoPolicy


class Kind(models.TextChoices):
    """``accounts.oidc.config.ProviderKind`` (which chooses the client class), with labels: one vocabulary."""

    OIDC = ProviderKind.OIDC.value, _("OpenID Connect")
    GITHUB = ProviderKind.GITHUB.value, _("GitHub-style OAuth 2.0 (no ID token)")
    #: Known by its issuer and JWKS URL alone: it signs access tokens for this site's APIs, nobody signs in with it.
    TOKEN_ISSUER = ProviderKind.TOKEN_ISSUER.value, _("Token issuer only: API access tokens, no sign-in")


class EmailLinking(models.TextChoices):
    NEVER = "never", _("Never: a new provider identity always gets its own account")
    VERIFIED = "verified", _("Verified: attach to the one user whose email the provider verified")


class Userinfo(models.TextChoices):
    """``accounts.oidc.config.UserinfoPolicy`` (when to call userinfo), with labels: one vocabulary."""

    ALWAYS = UserinfoPolicy.ALWAYS.value, _("Always: call the userinfo endpoint on every sign-in")
    WHEN_NEEDED = (
        UserinfoPolicy.WHEN_NEEDED.value,
        _("When needed: only if the ID token lacks the email or profile claims"),
    )
    NEVER = UserinfoPolicy.NEVER.value, _("Never: use the ID token's claims alone")


class ProfileSync(models.TextChoices):
    FOLLOW = "follow", _("Follow the provider: refresh name and email from verified claims on each sign-in")
    KEEP = "keep", _("Keep local edits: copy name and email only when the account is created")


class Outcome(models.TextChoices):
    SUCCESS = "success", _("Success")
    FAILURE = "failure", _("Failure")


class Action(models.TextChoices):
    """What an audited attempt tried to do."""

    SIGN_IN = "login", _("Sign-in")
    CONNECT = "connect", _("Connect another provider")
    BACKCHANNEL_LOGOUT = "backchannel-logout", _("Back-channel logout")
    #: Stored provider tokens revoked at the provider and deleted (``accounts.provider_tokens``).
    TOKENS_REVOKED = "tokens-revoked", _("Provider tokens revoked")
    #: A refresh of stored provider tokens failed for good (``invalid_grant``).
    TOKEN_REFRESH = "token-refresh", _("Provider token refresh")


# --- high assurance (accounts.site_keys, docs/high-assurance.md) ------------------------------------


class TokenAuth(models.TextChoices):
    """How the site authenticates to a provider's token, PAR and revocation endpoints (``token_auth_method``).

    Blank means automatic: picked from the provider's discovery document (``private_key_jwt`` when
    it supports nothing else). The values are ``accounts.oidc.config.TokenAuthMethod``'s.
    """

    CLIENT_SECRET_BASIC = "client_secret_basic", _("client_secret_basic: the client secret in a Basic header")
    CLIENT_SECRET_POST = "client_secret_post", _("client_secret_post: the client secret in the request body")
    PRIVATE_KEY_JWT = "private_key_jwt", _("private_key_jwt: an assertion signed with the site's key (no secret)")


class SiteKeyAlgorithm(models.TextChoices):
    """The algorithms the site's own keys sign with (``accounts.site_keys``); ES256 unless told otherwise."""

    ES256 = "ES256", "ES256"
    PS256 = "PS256", "PS256"
    RS256 = "RS256", "RS256"


class SiteKeyState(models.TextChoices):
    """Where a site key is in its life: published before it signs, published until its assertions expired."""

    NEXT = "next", _("next: published, not signing yet")
    CURRENT = "current", _("current: published and signing")
    RETIRING = "retiring", _("retiring: published until what it signed has expired")
