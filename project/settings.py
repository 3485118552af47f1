"""Settings for the demo project, read from the environment (and an optional ``.env`` file).

Every variable is documented in ``.env.example`` and in the README's configuration reference.
Nothing product-specific lives here: the ``accounts`` app reads its own settings through
``accounts.conf`` so that a reusing project only sets what it wants to change.
"""

import sys
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # optional; real environment variables win

DEBUG = env.bool("DJANGO_DEBUG", default=False)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        # One clear sentence instead of a traceback: this is the first thing a new deployment hits.
        sys.exit(
            "DJANGO_SECRET_KEY is not set: set it in the environment or in .env "
            "(or set DJANGO_DEBUG=1 for local development)."
        )
    SECRET_KEY = "django-insecure-local-development-only"

# Keys the sign-in app encrypts client secrets with (docs/settings.md), newest first, comma separated.
ACCOUNTS_CLIENT_SECRET_KEYS = env.list("ACCOUNTS_CLIENT_SECRET_KEYS", default=[])
if not ACCOUNTS_CLIENT_SECRET_KEYS and DEBUG:
    # Development only, like the SECRET_KEY above: it encrypts the dev IdP's client secret in db.sqlite3.
    ACCOUNTS_CLIENT_SECRET_KEYS = ["zVlcNFX41xwEpS1HA29-nIBb_Jvxlf3dwaHdZE-e1D8="]

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# The development identity provider serves test users from this very server. It exists so that a
# fresh clone has a working sign-in with no internet; it is never installed when debug is off.
DEVIDP_ENABLED = DEBUG and env.bool("DEVIDP_ENABLED", default=True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "accounts",
]
if DEVIDP_ENABLED:
    INSTALLED_APPS.append("devidp")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves collected static files from the app server itself, with far-future cache headers.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Pages in the visitor's language (Accept-Language): after the session, before CommonMiddleware.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.session.SignInSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "project.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite as a web server's database: the defaults are tuned for one writer at a time.
    # IMMEDIATE takes the write lock when a transaction begins, so two sign-ins queue for it instead
    # of both reading, then one failing at once with "database is locked" when it tries to write
    # (SQLite cannot upgrade a reader that another writer overtook). The busy timeout is how long
    # one waits its turn; WAL lets readers go on while somebody writes, and synchronous=NORMAL is
    # WAL's safe setting (an fsync per checkpoint, not per commit). DATABASE_URL's ?timeout= wins.
    _sqlite_options = DATABASES["default"].setdefault("OPTIONS", {})
    _sqlite_options.setdefault("transaction_mode", "IMMEDIATE")
    _sqlite_options.setdefault("timeout", 10)
    _sqlite_options.setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL")
# The embedded default is Django's database cache on the site's own database (its table is made by
# `migrate`): every process of one site -- runserver, gunicorn's workers, `manage.py oidc_provider`
# in a shell -- shares one copy of each discovery and JWKS document, the refetch lock and the
# admin's health records. A sign-in in steady state still reads nothing from it: each process keeps
# what it read until the document's TTL (accounts.oidc.discovery). Redis is the choice for several servers.
CACHES = {"default": env.cache("CACHE_URL", default="dbcache://oidc_signin_cache?MAX_ENTRIES=10000")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# The languages the app ships translations for (accounts/locale/); English is the default.
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# In production `manage.py collectstatic` (run by `make serve`) fills STATIC_ROOT and WhiteNoise
# serves it; in development the files are served from the apps themselves, nothing to collect.
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=BASE_DIR / "staticfiles") if not DEBUG else None
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "oidc_signin:login"
LOGIN_REDIRECT_URL = "oidc_signin:profile"
LOGOUT_REDIRECT_URL = "oidc_signin:login"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- https in production (``DJANGO_DEBUG=0 manage.py check --deploy`` is clean with the defaults) ---
# Behind a TLS-terminating proxy the app sees plain http: trust the proxy's X-Forwarded-Proto, or
# every redirect URI sent to a provider would be built as http://. Only set it when such a proxy
# strips that header from what clients send.
if env.bool("DJANGO_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SECURE_REFERRER_POLICY = "same-origin"
# Preloading is a promise to browsers made by submitting the domain, not a setting to default on:
# DJANGO_SECURE_HSTS_PRELOAD=1 once the domain is submitted; until then its check is silenced.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD or DEBUG else ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "accounts": {"handlers": ["console"], "level": env.str("ACCOUNTS_LOG_LEVEL", default="INFO")},
    },
}

# --- the demo API (project/api_views.py): /api/whoami/ and /api/reports/ ---
# The audience its access tokens must carry; the dev IdP issues its tokens for it (DEVIDP_ACCESS_TOKEN_AUDIENCE).
DEMO_API_AUDIENCE = env.str("DEMO_API_AUDIENCE", default="demo-api")
# A user token whose subject never signed in here: "refuse" (the default) or "create-user".
DEMO_API_UNKNOWN_SUBJECT = env.str("DEMO_API_UNKNOWN_SUBJECT", default="refuse")
if DEMO_API_UNKNOWN_SUBJECT not in ("refuse", "create-user"):
    sys.exit(f"DEMO_API_UNKNOWN_SUBJECT is {DEMO_API_UNKNOWN_SUBJECT!r}: use refuse or create-user.")
if DEVIDP_ENABLED:
    DEVIDP_ACCESS_TOKEN_AUDIENCE = env.str("DEVIDP_ACCESS_TOKEN_AUDIENCE", default=DEMO_API_AUDIENCE)

# --- the accounts app (see accounts/conf.py for every setting and its default) ---
# Google's button and One Tap: in development, the dev IdP's offline stand-in plays Google's script.
ACCOUNTS_GIS_CLIENT_SCRIPT = env.str(
    "ACCOUNTS_GIS_CLIENT_SCRIPT",
    default="/devidp/gsi/client.js" if DEVIDP_ENABLED else "https://accounts.google.com/gsi/client",
)
ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = env.bool("ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP", default=False)
ACCOUNTS_OIDC_CLOCK_LEEWAY = env.int("ACCOUNTS_OIDC_CLOCK_LEEWAY", default=60)
