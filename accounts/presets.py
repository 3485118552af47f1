"""Presets: what an admin would otherwise have to know about each big provider, declared once.

A preset is data, not a subclass: the endpoints, scopes and documented quirks of a provider, so
that adding Google, GitHub, Microsoft or GitLab takes only a client id and secret. The quirks
each preset turns on are handled by small functions below, and every one is tested against a
local double that behaves the way that provider documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .models import Provider

#: Microsoft's multi-tenant discovery documents name their issuer with this placeholder.
TENANT_PLACEHOLDER = "{tenantid}"
_TENANT_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    kind: str  # "oidc" or "github"
    #: Issuer, or GitHub-style identity namespace; ``{base}`` and ``{tenant}`` are filled from options.
    issuer: str
    scopes: str
    default_base: str = ""
    #: GitHub-style endpoints (``{base}`` and ``{api}`` filled in); OpenID Connect presets use discovery.
    endpoints: dict[str, str] = field(default_factory=dict)
    extra_auth_params: dict[str, str] = field(default_factory=dict)
    #: OpenID Connect only: when to call userinfo (``Provider.Userinfo``'s values). "when-needed"
    #: suits every preset here: Google's and GitLab's ID tokens carry email, email_verified and the
    #: profile claims for the scopes asked; Microsoft's v2.0 ID token has no email_verified, so
    #: "when-needed" calls userinfo there anyway, which is what "always" would do.
    userinfo: str = "when-needed"
    help: str = ""


PRESETS: dict[str, Preset] = {
    p.key: p
    for p in (
        Preset(
            key="generic",
            label="OpenID Connect (Keycloak, Okta, Auth0, Authentik, ...)",
            kind="oidc",
            issuer="{base}",
            scopes="openid email profile",
            help="Give the issuer URL exactly as the provider's discovery document states it.",
        ),
        Preset(
            key="google",
            label="Google",
            kind="oidc",
            issuer="https://accounts.google.com",
            scopes="openid email profile",
            extra_auth_params={"prompt": "select_account"},
        ),
        Preset(
            key="github",
            label="GitHub",
            kind="github",
            issuer="{base}",
            default_base="https://github.com",
            scopes="read:user user:email",
            endpoints={
                "authorization_endpoint": "{base}/login/oauth/authorize",
                "token_endpoint": "{base}/login/oauth/access_token",
                "userinfo_endpoint": "{api}/user",
                "emails_endpoint": "{api}/user/emails",
            },
            help="For GitHub Enterprise Server give its base URL, e.g. https://github.example.com.",
        ),
        Preset(
            key="microsoft",
            label="Microsoft",
            kind="oidc",
            issuer="https://login.microsoftonline.com/{tenant}/v2.0",
            scopes="openid email profile",
            extra_auth_params={"prompt": "select_account"},
            help="Tenant: 'common' (work, school and personal accounts), 'organizations', 'consumers' or a tenant id.",
        ),
        Preset(
            key="gitlab",
            label="GitLab",
            kind="oidc",
            issuer="{base}",
            default_base="https://gitlab.com",
            scopes="openid email profile",
            help="For self-managed GitLab give its base URL, e.g. https://gitlab.example.com.",
        ),
    )
}

PRESET_CHOICES = [(p.key, p.label) for p in PRESETS.values()]


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
    if preset.kind == "oidc":
        values["userinfo"] = preset.userinfo
    return values


# --- quirks ---------------------------------------------------------------------------------------


def metadata_issuer_matches(provider: Provider, metadata_issuer: str) -> bool:
    """Discovery 4.3 demands an exact match; Microsoft's multi-tenant endpoints are the documented exception.

    Their discovery document says ``https://login.microsoftonline.com/{tenantid}/v2.0``: the
    real issuer differs per tenant and is checked per token (see ``accepted_issuers``).
    """
    if metadata_issuer == provider.issuer:
        return True
    return provider.preset == "microsoft" and _tenant_template_for(provider) == metadata_issuer


def _tenant_template_for(provider: Provider) -> str:
    parts = urlsplit(provider.issuer)
    segments = parts.path.strip("/").split("/")
    if len(segments) < 1 or not segments[0]:
        return ""
    segments[0] = TENANT_PLACEHOLDER
    return f"{parts.scheme}://{parts.netloc}/" + "/".join(segments)


def accepted_issuers(provider: Provider, metadata: dict[str, Any]) -> Callable[[dict[str, Any]], list[str]]:
    """Which ``iss`` values a verified token may carry, given its (signature-verified) claims."""

    def issuers(claims: dict[str, Any]) -> list[str]:
        accepted = [provider.issuer]
        if provider.preset == "google":
            # Google documents ID tokens with iss "https://accounts.google.com" or "accounts.google.com".
            parts = urlsplit(provider.issuer)
            accepted.append(parts.netloc + parts.path)
        template = metadata.get("issuer", "")
        if provider.preset == "microsoft" and TENANT_PLACEHOLDER in template:
            tid = claims.get("tid")
            if isinstance(tid, str) and _TENANT_ID.match(tid):
                accepted.append(template.replace(TENANT_PLACEHOLDER, tid))
        return accepted

    return issuers


def canonical_issuer(provider: Provider, iss: str) -> str:
    """One spelling per issuer, so Google's two spellings never make one account two identities."""
    if provider.preset == "google":
        parts = urlsplit(provider.issuer)
        if iss == parts.netloc + parts.path:
            return provider.issuer
    return iss
