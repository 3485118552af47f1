"""Presets: what an admin would otherwise have to know about each big provider, declared once.

A preset is data, not a subclass: the endpoints, scopes and documented quirks of a provider, so
that adding Google, GitHub, Microsoft or GitLab takes only a client id and secret. The quirks a
preset turns on are data too (``accounts.oidc.quirks.Quirks``), handed to the provider's client;
each is tested against a local double that behaves the way that provider documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import models

from .choices import Kind, Userinfo
from .oidc.profiles import ProfileName
from .oidc.quirks import STANDARD, TENANT_PLACEHOLDER, Quirks


class PresetKey(models.TextChoices):
    """The presets there are; stored in ``Provider.preset``."""

    GENERIC = "generic", "OpenID Connect (Keycloak, Okta, Auth0, Authentik, ...)"
    GOOGLE = "google", "Google"
    GITHUB = "github", "GitHub"
    MICROSOFT = "microsoft", "Microsoft"
    GITLAB = "gitlab", "GitLab"
    # Token issuers: they sign access tokens for this site's APIs; nobody signs in with them.
    STYTCH = "stytch", "Stytch (session and M2M JWTs)"
    AUTH0 = "auth0", "Auth0 (API access tokens)"
    OKTA = "okta", "Okta (API access tokens)"
    ENTRA = "entra", "Microsoft Entra ID (API access tokens)"
    COGNITO = "cognito", "Amazon Cognito (API access tokens)"
    KEYCLOAK = "keycloak", "Keycloak (API access tokens)"
    GOOGLE_SERVICE = "google-service", "Google service accounts (Cloud Run, Tasks, Scheduler, Pub/Sub)"
    GITHUB_ACTIONS = "github-actions", "GitHub Actions (workflow OIDC tokens)"
    # High assurance (docs/high-assurance.md): private_key_jwt with the site's own keys.
    LOGIN_GOV = "login-gov", "Login.gov"
    GOV_UK_ONE_LOGIN = "gov-uk-one-login", "GOV.UK One Login"


@dataclass(frozen=True)
class Preset:
    key: PresetKey
    kind: Kind
    #: Issuer, or GitHub-style identity namespace; ``{base}`` and ``{tenant}`` are filled from options.
    issuer: str
    scopes: str
    default_base: str = ""
    #: GitHub-style endpoints (``{base}`` and ``{api}`` filled in); OpenID Connect presets use discovery.
    endpoints: dict[str, str] = field(default_factory=dict)
    extra_auth_params: dict[str, str] = field(default_factory=dict)
    #: OpenID Connect only: when to call userinfo. "When needed" suits every preset here: Google's
    #: and GitLab's ID tokens carry email, email_verified and the profile claims for the scopes
    #: asked; Microsoft's v2.0 ID token has no email_verified, so "when needed" calls userinfo
    #: there anyway, which is what "always" would do.
    #: None where there is no userinfo choice to make (GitHub-style providers have no ID token).
    userinfo: Userinfo | None = Userinfo.WHEN_NEEDED
    #: The documented ways this provider departs from the standard, handed to its client.
    quirks: Quirks = STANDARD
    help: str = ""
    #: Token issuers: the key-set URL (``{base}``, ``{project}``, ``{stytch_host}`` filled in); empty: discovery.
    jwks_uri: str = ""
    #: How the issuer shapes its access tokens (``accounts.oidc.profiles``).
    token_profile: ProfileName = ProfileName.RFC9068
    #: How the site authenticates at the token endpoint (blank: from discovery).
    token_auth_method: str = ""

    @property
    def label(self) -> str:
        return str(self.key.label)


PRESETS: dict[str, Preset] = {
    p.key: p
    for p in (
        Preset(
            key=PresetKey.GENERIC,
            kind=Kind.OIDC,
            issuer="{base}",
            scopes="openid email profile",
            help="Give the issuer URL exactly as the provider's discovery document states it.",
        ),
        Preset(
            key=PresetKey.GOOGLE,
            kind=Kind.OIDC,
            issuer="https://accounts.google.com",
            scopes="openid email profile",
            extra_auth_params={"prompt": "select_account"},
            quirks=Quirks(
                issuer_without_scheme=True,
                offline_access_params=(
                    ("access_type", "offline"),
                    ("prompt", "consent"),
                    ("include_granted_scopes", "true"),
                ),
            ),
        ),
        Preset(
            key=PresetKey.GITHUB,
            kind=Kind.GITHUB,
            issuer="{base}",
            default_base="https://github.com",
            scopes="read:user user:email",
            endpoints={
                "authorization_endpoint": "{base}/login/oauth/authorize",
                "token_endpoint": "{base}/login/oauth/access_token",
                "userinfo_endpoint": "{api}/user",
                "emails_endpoint": "{api}/user/emails",
            },
            userinfo=None,
            # Stored tokens need no quirk: a GitHub App's user tokens say they expire (expires_in, eight
            # hours) and come with a refresh token; an OAuth App's send neither and never expire.
            help="For GitHub Enterprise Server give its base URL, e.g. https://github.example.com.",
        ),
        Preset(
            key=PresetKey.MICROSOFT,
            kind=Kind.OIDC,
            issuer="https://login.microsoftonline.com/{tenant}/v2.0",
            scopes="openid email profile",
            extra_auth_params={"prompt": "select_account"},
            quirks=Quirks(tenant_issuer=True, offline_access_scopes=("offline_access",)),
            help="Tenant: 'common' (work, school and personal accounts), 'organizations', 'consumers' or a tenant id.",
        ),
        Preset(
            key=PresetKey.GITLAB,
            kind=Kind.OIDC,
            issuer="{base}",
            default_base="https://gitlab.com",
            scopes="openid email profile",
            help="For self-managed GitLab give its base URL, e.g. https://gitlab.example.com.",
        ),
        # --- token issuers (issue 20): each vendor's documented issuer and key-set URLs ---
        Preset(
            key=PresetKey.STYTCH,
            kind=Kind.TOKEN_ISSUER,
            issuer="stytch.com/{project}",
            scopes="openid",
            userinfo=None,
            jwks_uri="https://{stytch_host}/v1/sessions/jwks/{project}",
            token_profile=ProfileName.STYTCH,
            help="Give the project id (project-test-... or project-live-...).",
        ),
        Preset(
            key=PresetKey.AUTH0,
            kind=Kind.TOKEN_ISSUER,
            issuer="{base}/",
            scopes="openid",
            userinfo=None,
            jwks_uri="{base}/.well-known/jwks.json",
            token_profile=ProfileName.AUTH0,
            help="Give the tenant's domain as base URL, e.g. https://example.us.auth0.com.",
        ),
        Preset(
            key=PresetKey.OKTA,
            kind=Kind.TOKEN_ISSUER,
            issuer="{base}",
            scopes="openid",
            userinfo=None,
            token_profile=ProfileName.OKTA,
            help="Give the authorization server's issuer, e.g. https://example.okta.com/oauth2/default.",
        ),
        Preset(
            key=PresetKey.ENTRA,
            kind=Kind.TOKEN_ISSUER,
            issuer="https://login.microsoftonline.com/{tenant}/v2.0",
            scopes="openid",
            userinfo=None,
            jwks_uri="https://login.microsoftonline.com/common/discovery/v2.0/keys",
            token_profile=ProfileName.ENTRA,
            help="Tenant: your tenant id, or {tenantid} (multi-tenant) with the allowed tenants listed.",
        ),
        Preset(
            key=PresetKey.COGNITO,
            kind=Kind.TOKEN_ISSUER,
            issuer="{base}",
            scopes="openid",
            userinfo=None,
            jwks_uri="{base}/.well-known/jwks.json",
            token_profile=ProfileName.COGNITO,
            help="Give the user pool's issuer, e.g. https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC.",
        ),
        Preset(
            key=PresetKey.KEYCLOAK,
            kind=Kind.TOKEN_ISSUER,
            issuer="{base}",
            scopes="openid",
            userinfo=None,
            jwks_uri="{base}/protocol/openid-connect/certs",
            token_profile=ProfileName.KEYCLOAK,
            help="Give the realm's issuer, e.g. https://sso.example.com/realms/acme.",
        ),
        Preset(
            key=PresetKey.GOOGLE_SERVICE,
            kind=Kind.TOKEN_ISSUER,
            issuer="https://accounts.google.com",
            scopes="openid",
            userinfo=None,
            jwks_uri="https://www.googleapis.com/oauth2/v3/certs",
            token_profile=ProfileName.GOOGLE_SERVICE,
            help="Give the receiving URL as audience and the service accounts as allowed callers.",
        ),
        Preset(
            key=PresetKey.GITHUB_ACTIONS,
            kind=Kind.TOKEN_ISSUER,
            issuer="https://token.actions.githubusercontent.com",
            scopes="openid",
            userinfo=None,
            token_profile=ProfileName.GITHUB_ACTIONS,
            help="Keys come from its discovery document; list the allowed repositories (glob patterns).",
        ),
        # --- high assurance: no client secret, the site's keys (manage.py oidc_keys) -------------------
        Preset(
            key=PresetKey.LOGIN_GOV,
            kind=Kind.OIDC,
            # Production; the sandbox is --base-url https://idp.int.identitysandbox.gov
            issuer="{base}/",
            default_base="https://secure.login.gov",
            scopes="openid email",
            # auth-only: authentication with MFA, no identity proofing (urn:acr.login.gov:verified asks for it).
            extra_auth_params={"acr_values": "urn:acr.login.gov:auth-only", "prompt": "select_account"},
            # login.gov documents the token endpoint's URL as the assertion's audience.
            quirks=Quirks(assertion_audience_token_endpoint=True),
            token_auth_method="private_key_jwt",
            help="Register /accounts/jwks.json (or its key) in the login.gov dashboard; login.gov asks for RS256: "
            "manage.py oidc_keys generate --alg RS256. Sandbox: --base-url https://idp.int.identitysandbox.gov.",
        ),
        Preset(
            key=PresetKey.GOV_UK_ONE_LOGIN,
            kind=Kind.OIDC,
            # Production; the integration environment is --base-url https://oidc.integration.account.gov.uk
            issuer="{base}/",
            default_base="https://oidc.account.gov.uk",
            scopes="openid email phone",
            # Vector of Trust: Cl.Cm is medium authentication (two factors), no identity confidence.
            extra_auth_params={"vtr": '["Cl.Cm"]', "ui_locales": "en"},
            # GOV.UK One Login documents the token endpoint's URL as the assertion's audience.
            quirks=Quirks(assertion_audience_token_endpoint=True),
            token_auth_method="private_key_jwt",
            userinfo=Userinfo.ALWAYS,  # email and phone come from userinfo only
            help="Register /accounts/jwks.json (or its key) in the One Login admin tool. Integration: --base-url "
            "https://oidc.integration.account.gov.uk. Identity (P2) needs vtr Cl.Cm.P2 and a claims request.",
        ),
    )
}

PRESET_CHOICES = PresetKey.choices

#: Stytch's API host for a project id: test projects are served by test.stytch.com.
STYTCH_HOSTS = {"project-test-": "test.stytch.com", "project-live-": "api.stytch.com"}


def stytch_host(project_id: str) -> str:
    """The host of a Stytch project's key set, from its id; ValueError for an id that is neither test nor live."""
    for prefix, host in STYTCH_HOSTS.items():
        if project_id.startswith(prefix) and len(project_id) > len(prefix):
            return host
    raise ValueError("a Stytch project id starts with project-test- or project-live-")


def _fill(template: str, names: dict[str, str]) -> str:
    """``template`` with ``{name}`` filled in; ``{tenantid}`` is left for each token to fill."""
    for name, value in names.items():
        template = template.replace("{" + name + "}", value)
    return template


def github_api_base(base: str) -> str:
    """github.com's REST API lives on its own host; GitHub Enterprise Server's under /api/v3."""
    base = base.rstrip("/")
    return "https://api.github.com" if base == "https://github.com" else f"{base}/api/v3"


def preset_values(key: str, *, base_url: str = "", tenant: str = "common", project_id: str = "") -> dict[str, Any]:
    """The Provider field values a preset fills in. Raises KeyError/ValueError on bad input."""
    preset = PRESETS[key]
    base = (base_url or preset.default_base).rstrip("/")
    if "{base}" in preset.issuer + preset.jwks_uri + "".join(preset.endpoints.values()) and not base:
        raise ValueError(f"the {preset.label} preset needs a base URL (the issuer)")
    if preset.key == PresetKey.ENTRA and tenant in ("", "common"):
        tenant = TENANT_PLACEHOLDER  # multi-tenant: each token's own tenant, among the allowed ones
    names = {"base": base, "api": github_api_base(base) if base else "", "tenant": tenant or "common"}
    if "{project}" in preset.issuer:
        if not project_id:
            raise ValueError(f"the {preset.label} preset needs a project id")
        names.update(project=project_id, stytch_host=stytch_host(project_id))
    values: dict[str, Any] = {
        "preset": preset.key,
        "kind": preset.kind,
        "issuer": _fill(preset.issuer, names),
        "scopes": preset.scopes,
    }
    if preset.kind == Kind.TOKEN_ISSUER:
        values.update(jwks_uri=_fill(preset.jwks_uri, names), token_profile=preset.token_profile)
        if project_id:
            values.update(token_audience=project_id, client_id=project_id)
    values.update({name: _fill(url, names) for name, url in preset.endpoints.items()})
    if preset.extra_auth_params:
        values["extra_auth_params"] = dict(preset.extra_auth_params)
    if preset.userinfo is not None:
        values["userinfo"] = preset.userinfo
    if preset.token_auth_method:
        values["token_auth_method"] = preset.token_auth_method
    return values


def quirks_for(key: str) -> Quirks:
    """The quirks of the preset a provider was added from; an unknown or generic one has none."""
    preset = PRESETS.get(key)
    return preset.quirks if preset is not None else STANDARD
