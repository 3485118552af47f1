"""Every setting the accounts app reads, with its default, in one place.

Settings are read lazily (on each attribute access), so tests and projects can change them with
``override_settings`` and nothing is frozen at import time.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULT_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip

DEFAULTS: dict[str, Any] = {
    # (connect, read) timeouts in seconds for every call to a provider.
    "ACCOUNTS_OIDC_HTTP_TIMEOUT": (3.05, 5.0),
    # Longest a whole answer may take to arrive, in seconds (the read timeout bounds each wait).
    "ACCOUNTS_OIDC_HTTP_TOTAL_TIMEOUT": 10.0,
    # Largest response body accepted from a provider, in bytes.
    "ACCOUNTS_OIDC_MAX_RESPONSE_BYTES": 1024 * 1024,
    # Allow http:// issuers and endpoints on any host (otherwise only loopback, and only when DEBUG).
    "ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP": False,
    # Clock skew tolerated on exp / iat / nbf, in seconds.
    "ACCOUNTS_OIDC_CLOCK_LEEWAY": 60,
    # How long a started sign-in (state, nonce, PKCE verifier) stays usable, in seconds.
    "ACCOUNTS_OIDC_FLOW_TTL": 600,
    # How many sign-ins may be in flight at once in one browser session (tabs).
    "ACCOUNTS_OIDC_MAX_PENDING_FLOWS": 8,
    # Bounds on how long discovery and JWKS documents are cached; Cache-Control max-age is
    # honoured within them, and DEFAULT applies when the provider sends none.
    "ACCOUNTS_OIDC_CACHE_MIN_TTL": 300,
    "ACCOUNTS_OIDC_CACHE_MAX_TTL": 86400,
    "ACCOUNTS_OIDC_CACHE_DEFAULT_TTL": 3600,
    # A token whose key id is not in the cached JWKS makes the app refetch it, within a budget per
    # key set that depends on where the token came from (accounts.oidc.discovery.KeyOrigin):
    # - ID tokens and signed userinfo answers come from the provider over the back channel, so an
    #   unknown kid means a key rotation: refetch, at most once per COOLDOWN seconds (keep it a few
    #   seconds: a rotation within the cooldown fails sign-ins until it has passed);
    "ACCOUNTS_OIDC_JWKS_REFETCH_COOLDOWN": 2.0,
    # - tokens anyone can submit (back-channel logout tokens, bearer tokens) refetch at most once
    #   per UNTRUSTED_REFETCH_INTERVAL seconds, a budget of their own that never delays the above.
    #   (Formerly ACCOUNTS_OIDC_JWKS_REFETCH_INTERVAL, which still sets it when this is not set.)
    "ACCOUNTS_OIDC_JWKS_UNTRUSTED_REFETCH_INTERVAL": 60,
    # How long a request waits for another process's in-flight fetch of the same document.
    "ACCOUNTS_OIDC_FETCH_WAIT": 5.0,
    # Name of Django's cache alias used for discovery/JWKS documents and the refetch lock.
    "ACCOUNTS_OIDC_CACHE_ALIAS": "default",
    # Dotted path of the adapter class (see accounts/adapter.py).
    "ACCOUNTS_ADAPTER": "accounts.adapter.DefaultAccountAdapter",
    # Audit rows written per minute for failures of anonymous visitors from one address (an IPv4
    # address or an IPv6 /64); beyond it failures are counted on the next row written, not stored.
    "ACCOUNTS_AUDIT_ANONYMOUS_FAILURES_PER_MINUTE": 20,
}


#: Former names still honoured when the current name is not set: current name -> former name.
RENAMED: dict[str, str] = {
    # Until unknown-kid refetches were budgeted by token origin, one interval bounded them all.
    "ACCOUNTS_OIDC_JWKS_UNTRUSTED_REFETCH_INTERVAL": "ACCOUNTS_OIDC_JWKS_REFETCH_INTERVAL",
}


class _Conf:
    """Attribute access to the settings above: ``conf.FLOW_TTL`` reads ``ACCOUNTS_OIDC_FLOW_TTL``."""

    def __getattr__(self, name: str) -> Any:
        for prefix in ("ACCOUNTS_OIDC_", "ACCOUNTS_"):
            key = prefix + name
            if key in DEFAULTS:
                if not hasattr(settings, key) and key in RENAMED and hasattr(settings, RENAMED[key]):
                    return getattr(settings, RENAMED[key])
                return getattr(settings, key, DEFAULTS[key])
        raise AttributeError(name)


conf = _Conf()
