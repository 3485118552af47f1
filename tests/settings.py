"""Settings for the test suite: the project's settings with test-only switches.

DATABASE_URL and CACHE_URL still come from the environment, so `make test` can run the suite a
second time against PostgreSQL and Redis.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-a-secret")
# Client secrets are stored encrypted; the sites the suite starts (tests/sites.py) inherit this key.
os.environ.setdefault("ACCOUNTS_CLIENT_SECRET_KEYS", "ogTZScmC1iS6-_Ntl3_aluIjb03rT4XQdPkN-U2bG5s=")

from project.settings import *  # noqa: F403

if "CACHE_URL" not in os.environ:
    # In-process unless the run names a cache (the second pass: Redis): most tests use no database,
    # and the project's database cache would need one. Its own tests set it up (tests/test_diagnostics.py).
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

if "devidp" not in INSTALLED_APPS:  # noqa: F405
    INSTALLED_APPS.append("devidp")  # noqa: F405
# The dev IdP refuses to serve with DEBUG off; the suite runs with DEBUG off and needs it.
DEVIDP_ALLOW_WITHOUT_DEBUG = True

# The provider doubles serve plain http on 127.0.0.1.
ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
# The test client and the provider doubles speak plain http: no https redirect, no HSTS.
SECURE_SSL_REDIRECT = False
SECURE_HSTS_SECONDS = 0
# Nothing is collected for the suite: static files come from the apps, as in development.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
