"""Settings every peer project shares; the benchmark passes what must equal ours as JSON.

``BENCH_SQLITE_OPTIONS`` is our project's own ``DATABASES["default"]["OPTIONS"]`` (WAL,
synchronous=NORMAL, IMMEDIATE transactions, busy timeout) and ``BENCH_MIDDLEWARE`` our middleware
stack without the accounts app's own, both read from ``project.settings`` by the benchmark, so
the peers run on the same database tuning and the same Django/WhiteNoise middleware as we do.
"""

import json
import os

SECRET_KEY = os.environ["BENCH_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]

ISSUER = os.environ["BENCH_ISSUER"]
CLIENT_ID = os.environ["BENCH_CLIENT_ID"]
CLIENT_SECRET = os.environ["BENCH_CLIENT_SECRET"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = ["benchhooks.QueryCountMiddleware", *json.loads(os.environ["BENCH_MIDDLEWARE"])]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["BENCH_DB"],
        "OPTIONS": json.loads(os.environ["BENCH_SQLITE_OPTIONS"]),
    }
}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = os.environ["BENCH_STATIC_ROOT"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
SECURE_SSL_REDIRECT = False
LOGIN_REDIRECT_URL = "/whoami/"
LOGOUT_REDIRECT_URL = "/whoami/"
