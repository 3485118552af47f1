"""How a provider bends the standard, as data handed to its client.

The protocol code checks every rule strictly; a ``Quirks`` object is the one way to relax one,
and only in the ways big providers document. The presets (``accounts.presets``) say which
provider needs which; ``oidc/`` itself knows no provider by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: Microsoft's multi-tenant discovery documents name their issuer with this placeholder.
TENANT_PLACEHOLDER = "{tenantid}"
_TENANT_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Quirks:
    """Documented departures from OpenID Connect; the default departs from nothing."""

    #: ID tokens may name the issuer without its scheme (Google documents ``iss`` as either
    #: ``https://accounts.google.com`` or ``accounts.google.com``). Both are stored as the
    #: configured issuer, so one person never becomes two identities.
    issuer_without_scheme: bool = False
    #: The discovery document's issuer has a ``{tenantid}`` placeholder and each token carries its
    #: tenant's own issuer, chosen by its ``tid`` claim (Microsoft's multi-tenant endpoints).
    tenant_issuer: bool = False
    #: Authorization parameters the provider needs before it issues a refresh token, sent when the
    #: site stores tokens (``store_tokens``). Google: ``access_type=offline``, and ``prompt=consent``
    #: (it sends a refresh token only on a consent screen); ``include_granted_scopes=true`` keeps the
    #: scopes granted before when more are asked for (incremental authorization).
    offline_access_params: tuple[tuple[str, str], ...] = ()
    #: Scopes the provider needs before it issues a refresh token (Microsoft: ``offline_access``).
    offline_access_scopes: tuple[str, ...] = ()
    #: The ``aud`` of a ``private_key_jwt`` assertion: the issuer identifier (the OpenID Foundation's
    #: 2025 advice), or for providers that document only it (login.gov, GOV.UK One Login) the token
    #: endpoint's URL -- then only when that endpoint is on the issuer's own origin, so a discovery
    #: document naming another server's endpoint cannot harvest an assertion for it.
    assertion_audience_token_endpoint: bool = False

    def metadata_issuer_matches(self, configured: str, metadata_issuer: str) -> bool:
        """Discovery 4.3 demands an exact match; a tenant template is the documented exception."""
        if metadata_issuer == configured:
            return True
        return self.tenant_issuer and _tenant_template(configured) == metadata_issuer

    def accepted_issuers(self, configured: str, metadata: dict[str, Any], claims: dict[str, Any]) -> list[str]:
        """Which ``iss`` values a token may carry, given its (signature-verified) claims."""
        accepted = [configured]
        if self.issuer_without_scheme:
            accepted.append(_without_scheme(configured))
        template = metadata.get("issuer", "")
        if self.tenant_issuer and isinstance(template, str) and TENANT_PLACEHOLDER in template:
            tid = claims.get("tid")
            if isinstance(tid, str) and _TENANT_ID.match(tid):
                accepted.append(template.replace(TENANT_PLACEHOLDER, tid))
        return accepted

    def canonical_issuer(self, configured: str, iss: str) -> str:
        """One spelling per issuer: the scheme-less alias is stored as the configured issuer."""
        if self.issuer_without_scheme and iss == _without_scheme(configured):
            return configured
        return iss


STANDARD = Quirks()


def _without_scheme(issuer: str) -> str:
    parts = urlsplit(issuer)
    return parts.netloc + parts.path


def _tenant_template(issuer: str) -> str:
    parts = urlsplit(issuer)
    segments = parts.path.strip("/").split("/")
    if not segments[0]:
        return ""
    segments[0] = TENANT_PLACEHOLDER
    return f"{parts.scheme}://{parts.netloc}/" + "/".join(segments)
