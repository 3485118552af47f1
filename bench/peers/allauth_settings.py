"""django-allauth's ``openid_connect`` provider against the loopback provider, from settings only.

Its documented defaults, except what this sign-in needs: PKCE (the provider double requires
it), login on GET (no confirmation form between the button and the provider), automatic signup
and no email verification step (the sign-in must end signed in, with no form to fill).
"""

from peer_base import *  # noqa: F403
from peer_base import CLIENT_ID, CLIENT_SECRET, INSTALLED_APPS, ISSUER, MIDDLEWARE

INSTALLED_APPS += [
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
]
MIDDLEWARE += ["allauth.account.middleware.AccountMiddleware"]
ROOT_URLCONF = "allauth_urls"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

ACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_LOGIN_ON_GET = True
SOCIALACCOUNT_PROVIDERS = {
    "openid_connect": {
        "OAUTH_PKCE_ENABLED": True,
        "APPS": [
            {
                "provider_id": "op",
                "name": "Loopback OP",
                "client_id": CLIENT_ID,
                "secret": CLIENT_SECRET,
                "settings": {"server_url": ISSUER},
            }
        ],
    }
}
