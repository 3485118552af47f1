"""What would make sign-ins with a provider fail, found before a person hits it.

``check`` loads a provider's metadata and keys the way a sign-in does (through the same caches)
and lists problems in words an admin can act on. The ``oidc_provider check`` command prints it;
nothing here changes what a sign-in accepts -- the rules themselves live in ``accounts.oidc``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from joserfc.jwk import KeySet

from .adapter import get_adapter
from .oidc import discovery
from .oidc.tokens import matching_keys

if TYPE_CHECKING:
    from .models import Provider

#: The endpoints worth showing, in the order a sign-in uses them: a discovered provider's, and
#: those a provider without discovery has configured (GitHub-style).
DISCOVERED_ENDPOINTS = (
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "end_session_endpoint",
)
CONFIGURED_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "emails_endpoint")


@dataclass
class Report:
    """A provider's endpoints, keys and problems, as one check found them."""

    provider: Provider
    metadata: dict[str, Any]
    #: None for a provider without discovery (GitHub-style: no ID token, so no keys).
    keys: KeySet | None
    problems: list[str] = field(default_factory=list)

    @property
    def endpoints(self) -> dict[str, str | None]:
        names = DISCOVERED_ENDPOINTS if self.keys is not None else CONFIGURED_ENDPOINTS
        return {name: self.metadata.get(name) for name in names}


def check(provider: Provider) -> Report:
    """Load ``provider``'s metadata and keys as a sign-in would and report. Raises ``SignInError``."""
    client = get_adapter().get_client(provider)
    if not client.discovers:
        return Report(provider=provider, metadata=client.metadata, keys=None)
    keys = discovery.get_keys(client.metadata["jwks_uri"]).keys
    return Report(
        provider=provider, metadata=client.metadata, keys=keys, problems=problems(provider, client.metadata, keys)
    )


def problems(provider: Provider, metadata: dict[str, Any], keys: KeySet) -> list[str]:
    """What in this metadata and key set would make sign-ins fail, in words an admin can act on."""
    found = []

    def listed(name: str, default: list[str]) -> list[str]:
        value = metadata.get(name)
        if value is None:
            return default
        if not isinstance(value, list):
            found.append(f"{name} is not a list")
            return default
        return [v for v in value if isinstance(v, str)]

    advertised = listed("id_token_signing_alg_values_supported", [])
    allowed = provider.algorithms
    if advertised and not set(advertised) & set(allowed):
        found.append(f"the provider signs ID tokens with {advertised}, none of which is allowed ({allowed})")
    usable = [alg for alg in allowed if not alg.startswith("HS") and matching_keys(keys, {}, alg)]
    if not usable and not any(alg.startswith("HS") for alg in allowed):
        found.append("no published key can verify any allowed algorithm")
    if not any(k.kid for k in keys.keys) and len(keys.keys) > 1:
        found.append("several keys have no kid, so tokens without a kid cannot be verified")
    methods = listed("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    if not {"client_secret_basic", "client_secret_post"} & set(methods):
        found.append(f"token endpoint supports neither client_secret_basic nor client_secret_post ({methods})")
    if "S256" not in listed("code_challenge_methods_supported", ["S256"]):
        found.append("the provider does not advertise PKCE S256 (PKCE is sent anyway)")
    return found
