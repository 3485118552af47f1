"""What an admin configures (``Provider``) and what a sign-in leaves behind (``Identity``)."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from . import client_secrets
from .choices import (
    Action,
    EmailLinking,
    Kind,
    Outcome,
    ProfileSync,
    SiteKeyAlgorithm,
    SiteKeyState,
    TokenAuth,
    Userinfo,
)
from .conf import DEFAULT_ALGORITHMS
from .fields import EncryptedSecretField, EncryptedTokenField
from .oidc.clients import CLIENT_CLASSES, sign_in_kinds
from .oidc.config import MAX_ISSUER_LENGTH, MAX_SUBJECT_LENGTH
from .oidc.profiles import PROFILE_CHOICES, ProfileName, profile_named
from .oidc.quirks import TENANT_PLACEHOLDER
from .presets import PRESET_CHOICES, PresetKey

#: Authorization request parameters the flow sets itself; an admin's extra parameters may not
#: override them, or a misconfiguration could silently switch off state, nonce or PKCE.
RESERVED_AUTH_PARAMS = frozenset(
    {
        "response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
        "code_challenge", "code_challenge_method", "response_mode", "request", "request_uri",
    }
)  # fmt: skip

SUPPORTED_ALGORITHMS = frozenset(DEFAULT_ALGORITHMS) | {"HS256", "HS384", "HS512"}


def _validate_algorithms(value: str) -> None:
    names = value.split()
    if not names:
        raise ValidationError(_("List at least one signing algorithm."))
    unknown = sorted(set(names) - SUPPORTED_ALGORITHMS)
    if unknown:
        raise ValidationError(_("Unsupported algorithm(s): %(names)s."), params={"names": ", ".join(unknown)})


def _validate_extra_params(value: object) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValidationError(_('Use a JSON object of strings, e.g. {"prompt": "select_account"}.'))
    if "max_age" in value and not re.fullmatch(r"[0-9]{1,10}", value["max_age"]):
        raise ValidationError(_('max_age must be a whole number of seconds, e.g. "3600".'))
    clash = sorted(RESERVED_AUTH_PARAMS & set(value))
    if clash:
        raise ValidationError(
            _("These parameters are set by the sign-in flow itself: %(names)s."), params={"names": ", ".join(clash)}
        )


class HttpsURLField(models.URLField):
    """A URL field whose form assumes https for scheme-less input (Django 6's default, today)."""

    def formfield(self, form_class: Any = None, choices_form_class: Any = None, **kwargs: Any) -> Any:
        given = {"form_class": form_class, "choices_form_class": choices_form_class}
        return super().formfield(**{"assume_scheme": "https", **{k: v for k, v in given.items() if v}, **kwargs})


class ProviderQuerySet(models.QuerySet):
    def offered(self) -> ProviderQuerySet:
        """What the login page offers: enabled providers of a kind people sign in with, in display order.

        One query for the login page, the profile's connect list and the template tags, so a
        project's own page never lists a provider the app would refuse (a disabled one, a token issuer).
        """
        return self.filter(enabled=True, kind__in=sign_in_kinds())


class Provider(models.Model):
    """An identity provider people can sign in with."""

    Kind = Kind
    EmailLinking = EmailLinking
    Userinfo = Userinfo
    ProfileSync = ProfileSync

    slug = models.SlugField(_("slug"), unique=True, help_text=_("Used in URLs: /accounts/<slug>/login/."))
    name = models.CharField(_("display name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.OIDC)
    preset = models.CharField(
        _("preset"),
        max_length=20,
        choices=PRESET_CHOICES,
        default=PresetKey.GENERIC,
        help_text=_("Turns on the documented quirks of a big provider (see accounts/presets.py)."),
    )
    #: A URL for every kind that signs people in (checked in ``clean``); a token issuer's may be any
    #: identifier (Stytch's ``stytch.com/PROJECT_ID``), so the field itself is plain text.
    issuer = models.CharField(
        _("issuer"),
        max_length=500,
        help_text=_(
            "OpenID Connect: exactly as the provider's discovery document states it, e.g. "
            "https://accounts.google.com. GitHub-style: the provider's base URL, e.g. https://github.com. "
            "Token issuers: exactly as their tokens' iss claim says, e.g. stytch.com/project-live-..."
        ),
    )
    client_id = models.CharField(_("client ID"), max_length=500)
    client_secret = EncryptedSecretField(
        _("client secret"),
        blank=True,
        help_text=_(
            "Stored encrypted, never shown again. Or env:NAME to read it from the environment variable NAME "
            "each time it is used; NAME must start with ACCOUNTS_CLIENT_SECRET_ENV_PREFIX (default OIDC_SECRET_) "
            "or be listed in ACCOUNTS_CLIENT_SECRET_ENV_ALLOWED. Changing the issuer, kind, an endpoint or the JWKS "
            "URI clears it unless a new one is entered in the same save."
        ),
    )
    scopes = models.CharField(_("scopes"), max_length=500, default="openid email profile")
    authorization_endpoint = HttpsURLField(
        _("authorization endpoint"), max_length=500, blank=True, help_text=_("GitHub-style providers only.")
    )
    token_endpoint = HttpsURLField(
        _("token endpoint"), max_length=500, blank=True, help_text=_("GitHub-style providers only.")
    )
    userinfo_endpoint = HttpsURLField(
        _("user API endpoint"),
        max_length=500,
        blank=True,
        help_text=_("GitHub-style: e.g. https://api.github.com/user."),
    )
    emails_endpoint = HttpsURLField(
        _("emails endpoint"),
        max_length=500,
        blank=True,
        help_text=_("GitHub-style: e.g. https://api.github.com/user/emails."),
    )
    callback_issuer = HttpsURLField(
        _("callback issuer"),
        max_length=500,
        blank=True,
        help_text=_(
            "GitHub-style only: the issuer its sign-in callbacks name (RFC 9207 'iss'); a callback naming any "
            "other is refused. Blank: the authorization endpoint without its final /authorize, e.g. "
            "https://github.com/login/oauth. Identities stay under the issuer above."
        ),
    )
    jwks_uri = HttpsURLField(
        _("JWKS URI"),
        max_length=500,
        blank=True,
        help_text=_(
            "Token issuers only: where the issuer publishes the keys its access tokens are signed with, "
            "for an issuer without a discovery document."
        ),
    )
    # --- tokens for this site's APIs (accounts.api, accounts.oidc.profiles) -----------------------
    token_profile = models.CharField(
        _("token profile"),
        max_length=20,
        choices=PROFILE_CHOICES,
        default=ProfileName.RFC9068,
        help_text=_(
            "How this provider shapes the access tokens it issues for this site's APIs: rfc9068 (strict, "
            "the default), or the vendor's documented shape (stytch, auth0, okta, entra, cognito, keycloak, "
            "google-service, github-actions). The signature rules are the same for every profile."
        ),
    )
    token_audience = models.CharField(
        _("token audience"),
        max_length=500,
        blank=True,
        help_text=_(
            "This provider's access tokens must carry this audience instead of the API's own (Stytch: the "
            "project id; Google service tokens: the receiving URL)."
        ),
    )
    allowed_clients = models.CharField(
        _("allowed clients"),
        max_length=1000,
        blank=True,
        help_text=_(
            "Client ids whose access tokens are admitted (space or comma separated; empty: any). Required "
            "for the cognito profile, whose tokens carry no audience."
        ),
    )
    allowed_callers = models.TextField(
        _("allowed callers"),
        blank=True,
        help_text=_(
            "google-service: the service-account emails admitted. github-actions: repository, "
            "repository@ref or repository@environment:NAME glob patterns, e.g. acme/*@refs/heads/main. "
            "Space or comma separated; empty admits nobody."
        ),
    )
    token_max_age = models.PositiveIntegerField(
        _("maximum token age"),
        null=True,
        blank=True,
        help_text=_("Seconds: refuse access tokens issued (iat) longer ago than this. Empty: their exp decides."),
    )
    allowed_email_domains = models.CharField(
        _("allowed email domains"),
        max_length=500,
        blank=True,
        help_text=_("Only people whose provider-verified email is at one of these domains (space separated)."),
    )
    allowed_hosted_domains = models.CharField(
        _("allowed Google Workspace domains"),
        max_length=500,
        blank=True,
        help_text=_("Google only: the verified 'hd' claim must be one of these domains (space separated)."),
    )
    allowed_tenants = models.CharField(
        _("allowed Microsoft tenants"),
        max_length=1000,
        blank=True,
        help_text=_("Microsoft only: tenant ids ('tid') that may sign in (space separated)."),
    )
    userinfo = models.CharField(
        _("userinfo endpoint"),
        max_length=20,
        choices=Userinfo.choices,
        default=Userinfo.WHEN_NEEDED,
        help_text=_(
            "OpenID Connect only. Each userinfo call is one more round trip to the provider on every sign-in; "
            "'when needed' skips it when the signed ID token already carries the email, whether it is verified, "
            "and a name or username. Choose 'always' if the provider keeps claims you need out of its ID tokens."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    display_order = models.PositiveIntegerField(_("display order"), default=0)
    allowed_algorithms = models.CharField(
        _("allowed algorithms"),
        max_length=200,
        default=" ".join(DEFAULT_ALGORITHMS),
        validators=[_validate_algorithms],
        help_text=_(
            "ID token signing algorithms accepted, separated by spaces. HS256/384/512 (keyed with the "
            "client secret) are accepted only if listed here; 'none' never is."
        ),
    )
    extra_auth_params = models.JSONField(
        _("extra authorization parameters"),
        default=dict,
        blank=True,
        validators=[_validate_extra_params],
        help_text=_('Added to the authorization request, e.g. {"prompt": "select_account"}.'),
    )
    profile_sync = models.CharField(
        _("profile data"),
        max_length=20,
        choices=ProfileSync.choices,
        default=ProfileSync.FOLLOW,
    )
    email_linking = models.CharField(
        _("email linking"),
        max_length=20,
        choices=EmailLinking.choices,
        default=EmailLinking.NEVER,
        help_text=_("Only choose 'verified' for a provider you trust to verify email addresses."),
    )
    # --- sign-in without a redirect (accounts.no_redirect; docs/sign-in-without-redirect.md) ---
    credential_endpoint = models.BooleanField(
        _("button and One Tap endpoint"),
        default=False,
        help_text=_(
            "OpenID Connect only: accept ID tokens posted by Google Identity Services (the 'Sign in with Google' "
            "button, One Tap) at /accounts/<slug>/credential/. Off unless you use them."
        ),
    )
    app_client_ids = models.CharField(
        _("app client IDs"),
        max_length=1000,
        blank=True,
        help_text=_(
            "Native or single-page apps whose ID tokens /accounts/<slug>/token/ accepts (their client ids, "
            "comma or space separated). Empty: that endpoint is off."
        ),
    )
    app_redirect_uris = models.TextField(
        _("app redirect URIs"),
        blank=True,
        help_text=_(
            "Redirect URIs of the apps' own authorization requests whose codes /accounts/<slug>/token/ redeems "
            "(space or newline separated)."
        ),
    )

    # Stored provider tokens (accounts.provider_tokens): off unless the site calls the provider's APIs.
    store_tokens = models.BooleanField(
        _("store tokens"),
        default=False,
        help_text=_(
            "Keep each person's access and refresh tokens (encrypted) so the site can call this provider's "
            "APIs for them (accounts.provider_tokens.access_token). Off: only the sign-in is used."
        ),
    )

    # High assurance (docs/high-assurance.md): how the site authenticates, PAR, DPoP.
    token_auth_method = models.CharField(
        _("token endpoint authentication"),
        max_length=30,
        blank=True,
        choices=TokenAuth.choices,
        help_text=_(
            "Blank: picked from the provider's discovery document. private_key_jwt signs an assertion with the "
            "site's key (manage.py oidc_keys; register /accounts/jwks.json with the provider) and needs no secret."
        ),
    )
    par = models.BooleanField(
        _("pushed authorization requests"),
        default=False,
        help_text=_(
            "Push each authorization request to the provider first (RFC 9126); the browser carries only a "
            "reference. Always done when the provider requires it."
        ),
    )
    dpop = models.BooleanField(
        _("DPoP"),
        default=False,
        help_text=_("Bind the provider's tokens to a key of this site's (RFC 9449): a stolen token is useless alone."),
    )

    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = ProviderQuerySet.as_manager()

    #: Fields that decide where the client secret goes (the token endpoint, the issuer whose ID tokens
    #: it keys as an HMAC secret, a GitHub-style provider's endpoints, a token issuer's keys). Whoever
    #: changes one of them and keeps the stored secret could send it to a server of their own: saving
    #: such a change clears the secret unless a new one is entered in the same save.
    SECRET_BOUND_FIELDS = (
        "issuer", "kind", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "emails_endpoint",
        "jwks_uri",
    )  # fmt: skip
    #: Set by ``enter_client_secret``: the secret of this save was entered now, not kept from before.
    client_secret_entered = False
    #: Set by ``save``: the stored secret was cleared because a field of ``SECRET_BOUND_FIELDS`` changed...
    client_secret_cleared = False
    #: ...and these are the fields that did.
    secret_binding_changes_at_save: tuple[str, ...] = ()

    class Meta:
        ordering = ["display_order", "name"]
        verbose_name = _("provider")
        verbose_name_plural = _("providers")

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save; a change of where the secret goes clears a secret not entered in this same save."""
        kept = not self.client_secret_entered and self.client_secret == getattr(self, "_saved_secret", None)
        self.secret_binding_changes_at_save = tuple(self.secret_binding_changes())
        self.client_secret_cleared = bool(self.client_secret and kept and self.secret_binding_changes_at_save)
        if self.client_secret_cleared:
            self.client_secret = ""
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "client_secret"}
        super().save(*args, **kwargs)
        self._remember_secret_binding()

    # --- the client secret stays with the provider it was issued by --------------------------------

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any, **kwargs: Any) -> Provider:
        # **kwargs: Django 6.1 passes fetch_mode, and warns about overrides that cannot take it.
        instance = super().from_db(db, field_names, values, **kwargs)
        instance._remember_secret_binding()
        return instance

    def refresh_from_db(self, using: str | None = None, fields: Any = None, from_queryset: Any = None) -> None:
        """Reloaded values are the saved ones again: a refresh never reads as a move."""
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        self._remember_secret_binding(only=None if fields is None else set(fields))

    def enter_client_secret(self, value: str) -> None:
        """Set the client secret as typed by an admin now: kept even if the same save moves the provider."""
        self.client_secret = value
        self.client_secret_entered = True

    def secret_binding_changes(self) -> list[str]:
        """The fields of ``SECRET_BOUND_FIELDS`` changed since this provider was loaded (none for a new one)."""
        saved = getattr(self, "_saved_binding", None)
        if saved is None:
            return []
        return [name for name in self.SECRET_BOUND_FIELDS if name in saved and saved[name] != getattr(self, name)]

    def _remember_secret_binding(self, only: set[str] | None = None) -> None:
        """Take the current values as the saved ones (all of them, or the fields ``only`` names)."""
        loaded = self.__dict__  # deferred fields are absent: never fetched here, never compared
        names = [name for name in self.SECRET_BOUND_FIELDS if name in loaded and (only is None or name in only)]
        self._saved_binding = {**getattr(self, "_saved_binding", {}), **{name: loaded[name] for name in names}}
        if only is None or "client_secret" in only:
            self._saved_secret = loaded.get("client_secret")
            self.client_secret_entered = False

    @property
    def algorithms(self) -> list[str]:
        return self.allowed_algorithms.split()

    def reveal_client_secret(self) -> str:
        """The plain secret, for the one request that sends it (``accounts.client_secrets``); never keep it."""
        return client_secrets.reveal(self.client_secret, owner=self.slug)

    @property
    def logo_template(self) -> str:
        """The small inline SVG drawn on this provider's button (no external requests from any page)."""
        return f"oidc_signin/logos/{self.preset or 'generic'}.svg"

    @staticmethod
    def _words(value: str) -> list[str]:
        return [w.strip().lower() for w in value.replace(",", " ").split() if w.strip()]

    @property
    def email_domains(self) -> list[str]:
        return self._words(self.allowed_email_domains)

    @property
    def hosted_domains(self) -> list[str]:
        return self._words(self.allowed_hosted_domains)

    @property
    def tenants(self) -> list[str]:
        return self._words(self.allowed_tenants)

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    @property
    def client_list(self) -> list[str]:
        return [w for w in self.allowed_clients.replace(",", " ").split() if w]

    @property
    def caller_list(self) -> list[str]:
        return [w for w in self.allowed_callers.replace(",", " ").split() if w]

    @property
    def app_client_id_list(self) -> list[str]:
        """The client ids whose ID tokens the app endpoint accepts (case-sensitive, as client ids are)."""
        return [c for c in self.app_client_ids.replace(",", " ").split() if c]

    @property
    def app_redirect_uri_list(self) -> list[str]:
        return self.app_redirect_uris.split()

    def clean(self) -> None:
        super().clean()
        if self.issuer:
            self.issuer = self.issuer.strip()
        self._clean_issuer()
        self._clean_token_profile()
        kind = CLIENT_CLASSES.get(self.kind)  # an unknown kind is already a field error
        problems = kind.configuration_problems(self) if kind is not None else {}
        if problems:
            raise ValidationError(problems)
        if any(a.startswith("HS") for a in self.algorithms) and not self.client_secret:
            raise ValidationError({"allowed_algorithms": _("HMAC algorithms need a client secret.")})
        if self.store_tokens and not client_secrets.keys_configured():
            raise ValidationError(
                {"store_tokens": _("Tokens are stored encrypted: this site needs ACCOUNTS_CLIENT_SECRET_KEYS first.")}
            )

    def _clean_issuer(self) -> None:
        """A URL, except for a token issuer with its own key-set URL, whose issuer is whatever its tokens say."""
        if not self.issuer:
            return
        if not self.issuer.isprintable() or any(c.isspace() for c in self.issuer):
            raise ValidationError({"issuer": _("An issuer has no spaces or control characters.")})
        if self.kind == Kind.TOKEN_ISSUER and self.jwks_uri:
            return
        url = self.issuer.replace(TENANT_PLACEHOLDER, "common") if self.kind == Kind.TOKEN_ISSUER else self.issuer
        try:
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError:
            raise ValidationError(
                {"issuer": _("Enter a valid URL (only a token issuer with a JWKS URI may have another issuer).")}
            ) from None

    def _clean_token_profile(self) -> None:
        """The profile must fit the kind; its policy must be complete enough to admit anyone safely."""
        profile = profile_named(self.token_profile)
        if self.kind not in profile.kinds:
            raise ValidationError(
                {
                    "token_profile": _("The %(profile)s token profile does not fit a provider of this kind.")
                    % {"profile": profile.name}
                }
            )
        if TENANT_PLACEHOLDER in self.issuer:
            if profile.name != ProfileName.ENTRA or self.kind != Kind.TOKEN_ISSUER:
                raise ValidationError({"issuer": _("Only an entra token issuer may hold {tenantid}.")})
            if not self.tenants:
                raise ValidationError(
                    {"allowed_tenants": _("A multi-tenant ({tenantid}) issuer needs the list of allowed tenants.")}
                )
        if profile.name == ProfileName.COGNITO and not self.client_list:
            raise ValidationError({"allowed_clients": _("Cognito access tokens have no audience: list the clients.")})
        if profile.caller_rule_needs_list and not self.caller_list:
            raise ValidationError({"allowed_callers": _("This token profile admits only the callers listed here.")})


class Identity(models.Model):
    """One provider account (issuer + subject) attached to one local user.

    The pair (issuer, subject) is the only identity key: emails and usernames can change hands at
    the provider, a subject never does. The issuer is stored as well as the provider so that an
    admin editing a provider's issuer can never make old identities match a different issuer.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="identities"
    )
    provider = models.ForeignKey(
        Provider, verbose_name=_("provider"), on_delete=models.PROTECT, related_name="identities"
    )
    issuer = models.CharField(_("issuer"), max_length=MAX_ISSUER_LENGTH)
    subject = models.CharField(_("subject"), max_length=MAX_SUBJECT_LENGTH)
    email = models.EmailField(_("email"), blank=True)
    email_verified = models.BooleanField(_("email verified"), default=False)
    claims = models.JSONField(_("last verified claims"), default=dict, blank=True)
    created_at = models.DateTimeField(_("connected"), auto_now_add=True)
    last_login_at = models.DateTimeField(_("last sign-in"), null=True, blank=True)

    class Meta:
        verbose_name = _("identity")
        verbose_name_plural = _("identities")
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="oidc_signin_identity_unique_issuer_subject"),
        ]
        indexes = [models.Index(fields=["user", "provider"])]

    def __str__(self) -> str:
        return f"{self.provider} identity {self.subject} of {self.user}"


class DisconnectedIdentity(models.Model):
    """A provider account its owner disconnected: never attached to that user again behind their back.

    Without this, a person who disconnects a provider account (because it was compromised, or is
    no longer theirs) would find it silently re-attached by verified-email linking at its next
    sign-in. Connecting it again on purpose, from the profile page, removes the record.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="+"
    )
    issuer = models.CharField(_("issuer"), max_length=MAX_ISSUER_LENGTH)
    subject = models.CharField(_("subject"), max_length=MAX_SUBJECT_LENGTH)
    disconnected_at = models.DateTimeField(_("disconnected"), auto_now=True)

    class Meta:
        verbose_name = _("disconnected identity")
        verbose_name_plural = _("disconnected identities")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "issuer", "subject"], name="oidc_signin_disconnected_unique_user_issuer_subject"
            ),
        ]
        indexes = [models.Index(fields=["issuer", "subject"])]

    def __str__(self) -> str:
        return f"identity {self.subject} disconnected from {self.user}"


class ProviderSession(models.Model):
    """Which Django session a sign-in created, so the provider can end it (Back-Channel Logout 1.0).

    A logout token names the provider's session (``sid``) and/or the subject; this table turns
    that into the session keys to delete, whatever session backend the site uses.
    """

    provider = models.ForeignKey(
        Provider, verbose_name=_("provider"), on_delete=models.CASCADE, related_name="sessions"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="+"
    )
    issuer = models.CharField(_("issuer"), max_length=MAX_ISSUER_LENGTH)
    subject = models.CharField(_("subject"), max_length=MAX_SUBJECT_LENGTH)
    sid = models.CharField(_("provider session ID"), max_length=MAX_SUBJECT_LENGTH, blank=True)
    session_key = models.CharField(_("session key"), max_length=64, db_index=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("provider session")
        verbose_name_plural = _("provider sessions")
        indexes = [models.Index(fields=["issuer", "sid"]), models.Index(fields=["issuer", "subject"])]

    def __str__(self) -> str:
        return f"{self.provider} session of {self.user}"


class SignInEvent(models.Model):
    """One sign-in attempt, successful or not: the audit trail. Never holds a token or a secret."""

    Outcome = Outcome
    Action = Action

    created_at = models.DateTimeField(_("time"), auto_now_add=True, db_index=True)
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices)
    action = models.CharField(_("action"), max_length=20, choices=Action.choices, default=Action.SIGN_IN)
    provider = models.ForeignKey(
        Provider, verbose_name=_("provider"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    provider_slug = models.CharField(_("provider slug"), max_length=50, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    issuer = models.CharField(_("issuer"), max_length=MAX_ISSUER_LENGTH, blank=True)
    subject = models.CharField(_("subject"), max_length=MAX_SUBJECT_LENGTH, blank=True)
    code = models.CharField(_("code"), max_length=40, blank=True, help_text=_("Why it failed, as a short code."))
    reason = models.CharField(_("reason"), max_length=500, blank=True)
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=300, blank=True)
    suppressed = models.PositiveIntegerField(
        _("suppressed"),
        default=0,
        help_text=_("Anonymous failures from the same address not recorded since the previous row (rate limit)."),
    )

    class Meta:
        verbose_name = _("sign-in event")
        verbose_name_plural = _("sign-in events")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["outcome", "created_at"])]

    def __str__(self) -> str:
        when = f"{self.created_at:%Y-%m-%d %H:%M}" if self.created_at else "?"
        return f"{self.get_outcome_display()} {self.action} via {self.provider_slug or '?'} at {when}"


class SpentToken(models.Model):
    """A single-use token that was used: a back-channel logout token, or an API access token whose API
    refuses replays (``accounts.replay``). Presented again, it is refused.

    The key is a hash of what the token is for, its issuer and its ``jti``, so no value a sender chose
    is stored and two issuers' jtis never collide. The row lives in the database, not the cache:
    a cache may evict or cull entries under load that anyone can cause, which would make a spent
    token usable again. It is kept until the token itself can no longer be accepted (its ``exp``
    plus the clock leeway), then ``manage.py prune_signin_events`` deletes it.
    """

    digest = models.CharField(_("digest"), max_length=64, primary_key=True)
    expires_at = models.DateTimeField(_("expires"), db_index=True)

    class Meta:
        verbose_name = _("spent token")
        verbose_name_plural = _("spent tokens")

    def __str__(self) -> str:
        return f"spent token {self.digest[:12]}"


class ProviderToken(models.Model):
    """The provider's tokens for one identity, kept so the site can call the provider's APIs for its owner.

    Written only by ``accounts.provider_tokens`` (the vault): both tokens are encrypted with the keys
    of ``ACCOUNTS_CLIENT_SECRET_KEYS`` before they are assigned, and never rendered -- the admin shows
    the status fields only. The row is also the refresh lock: a refresh holds it (``SELECT ... FOR
    UPDATE``, or SQLite's write lock) from reading the refresh token until the rotated one is stored.
    Deleting the identity (disconnect, user deletion) deletes it, after revoking it at the provider.
    """

    identity = models.OneToOneField(
        Identity, verbose_name=_("identity"), on_delete=models.CASCADE, related_name="provider_token"
    )
    access_token = EncryptedTokenField(_("access token"))
    refresh_token = EncryptedTokenField(_("refresh token"))
    token_type = models.CharField(_("token type"), max_length=40, default="Bearer")
    #: The grant's DPoP private key (RFC 9449) as a JWK, encrypted like the tokens; empty for bearer tokens.
    dpop_key = EncryptedTokenField(_("DPoP key"))
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True, help_text=_("Empty: never expires."))
    scopes = models.CharField(_("granted scopes"), max_length=2000, blank=True)
    created_at = models.DateTimeField(_("stored"), auto_now_add=True)
    last_refresh_at = models.DateTimeField(_("last refresh"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    revoked_at = models.DateTimeField(
        _("revoked"), null=True, blank=True, help_text=_("The provider refused a refresh: the person must reconnect.")
    )

    class Meta:
        verbose_name = _("provider token")
        verbose_name_plural = _("provider tokens")

    def __str__(self) -> str:
        return f"tokens of {self.identity}"

    @property
    def has_refresh_token(self) -> bool:
        return bool(self.refresh_token)

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()


class SiteKey(models.Model):
    """One of the site's own signing key pairs (``accounts.site_keys``, ``manage.py oidc_keys``).

    Providers fetch the public halves at ``/accounts/jwks.json`` to check the site's
    ``private_key_jwt`` assertions. The private half is encrypted with the keys of
    ``ACCOUNTS_CLIENT_SECRET_KEYS`` and never rendered: the admin shows kid, algorithm, state and
    dates only. At most one key is ``current`` (a constraint, so two rotations cannot both win).
    """

    kid = models.CharField(_("key ID"), max_length=64, unique=True)
    algorithm = models.CharField(_("algorithm"), max_length=10, choices=SiteKeyAlgorithm.choices)
    state = models.CharField(_("state"), max_length=10, choices=SiteKeyState.choices, default=SiteKeyState.NEXT)
    private_jwk = EncryptedTokenField(_("private key"))
    public_jwk = models.JSONField(_("public key"), editable=False)
    created_at = models.DateTimeField(_("published since"), auto_now_add=True)
    activated_at = models.DateTimeField(_("signing since"), null=True, blank=True)
    retiring_since = models.DateTimeField(_("retiring since"), null=True, blank=True)

    class Meta:
        verbose_name = _("site key")
        verbose_name_plural = _("site keys")
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["state"], condition=models.Q(state="current"), name="oidc_signin_one_current_site_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.algorithm} key {self.kid} ({self.state})"
