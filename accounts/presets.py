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
from .oidc.quirks import STANDARD, Quirks


class PresetKey(models.TextChoices):
    """The presets there are; stored in ``Provider.preset``."""

    GENERIC = "generic", "OpenID Connect (Keycloak, Okta, Auth0, Authentik, ...)"
    GOOGLE = "google", "Google"
    GITHUB = "github", "GitHub"
    MICROSOFT = "microsoft", "Microsoft"
    GITLAB = "gitlab", "GitLab"


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
    )
}

PRESET_CHOICES = PresetKey.choices


def github_api_base(base: str) -> str:
    """github.com's REST API lives on its own host; GitHub Enterprise Server's under /api/v3."""
    base = base.rstrip("/")
    return "https://api.github.com" if base == "https://github.com" else f"{base}/api/v3"


def preset_values(key: str, *, base_url: str = "", tenant: str = "common") -> dict[str, Any]:
    """The Provider field values a preset fills in. Raises KeyError/ValueError on bad input."""
    preset = PRESETS[key]
    base = (base_url or preset.default_base).rstrip("/")
    if "{base}" in preset.issuer + "".join(preset.endpoints.values()) and not base:
        raise ValueError(f"the {preset.label} preset needs a base URL (the issuer)")
    names = {"base": base, "api": github_api_base(base) if base else "", "tenant": tenant or "common"}
    values: dict[str, Any] = {
        "preset": preset.key,
        "kind": preset.kind,
        "issuer": preset.issuer.format(**names),
        "scopes": preset.scopes,
    }
    values.update({name: url.format(**names) for name, url in preset.endpoints.items()})
    if preset.extra_auth_params:
        values["extra_auth_params"] = dict(preset.extra_auth_params)
    if preset.userinfo is not None:
        values["userinfo"] = preset.userinfo
    return values


def quirks_for(key: str) -> Quirks:
    """The quirks of the preset a provider was added from; an unknown or generic one has none."""
    preset = PRESETS.get(key)
    return preset.quirks if preset is not None else STANDARD
