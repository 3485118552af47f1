"""drf-oidc-auth (API rows only): DRF's ``JSONWebTokenAuthentication``, keys from the provider's JWKS.

It reads the discovery document and the JWKS (kept in Django's cache), checks the signature,
``iss`` and the ``aud`` below, and resolves the user by ``sub`` as a username, its default.
"""

from peer_base import *  # noqa: F403
from peer_base import INSTALLED_APPS, ISSUER

INSTALLED_APPS += ["rest_framework"]
ROOT_URLCONF = "drfoidc_urls"
OIDC_AUTH = {
    "OIDC_ENDPOINT": ISSUER,
    "OIDC_CLAIMS_OPTIONS": {"aud": {"essential": True, "values": ["https://api.bench.example"]}},
    "JWT_AUTH_HEADER_PREFIX": "Bearer",
    "JWT_ALGORITHMS": ("RS256",),
}
