"""mozilla-django-oidc against the loopback provider: RS256 with the JWKS endpoint, PKCE on.

Its endpoints are configured statically (it has no discovery); it fetches the JWKS and calls
userinfo on every sign-in, which is its design, and links users by email.
"""

from peer_base import *  # noqa: F403
from peer_base import CLIENT_ID, CLIENT_SECRET, INSTALLED_APPS, ISSUER

INSTALLED_APPS += ["mozilla_django_oidc"]
ROOT_URLCONF = "mozilla_urls"
AUTHENTICATION_BACKENDS = ["mozilla_django_oidc.auth.OIDCAuthenticationBackend"]

OIDC_RP_CLIENT_ID = CLIENT_ID
OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
OIDC_OP_AUTHORIZATION_ENDPOINT = ISSUER + "/authorize"
OIDC_OP_TOKEN_ENDPOINT = ISSUER + "/token"
OIDC_OP_USER_ENDPOINT = ISSUER + "/userinfo"
OIDC_OP_JWKS_ENDPOINT = ISSUER + "/jwks"
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_RP_SCOPES = "openid email profile"
OIDC_USE_PKCE = True
OIDC_TIMEOUT = 10
