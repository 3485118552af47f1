"""System checks: configurations that would quietly weaken sign-in are reported at start-up."""

from __future__ import annotations

from accounts.checks import check_cache, check_insecure_http, check_middleware, check_session_engine


def ids(messages) -> list[str]:
    return [m.id for m in messages]


def test_insecure_http_in_production_is_reported(settings):
    settings.DEBUG, settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = False, True
    assert ids(check_insecure_http(None)) == ["accounts.W001"]
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = False
    assert check_insecure_http(None) == []


def test_dummy_cache_is_reported(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    assert ids(check_cache(None)) == ["accounts.W003"]


def test_signed_cookie_sessions_are_reported(settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    assert ids(check_session_engine(None)) == ["accounts.W004"]
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    assert check_session_engine(None) == []


def test_missing_or_misplaced_provider_session_middleware_is_reported(settings):
    ours = "accounts.middleware.ProviderSessionMiddleware"
    sessions = "django.contrib.sessions.middleware.SessionMiddleware"
    assert check_middleware(None) == []  # the demo project's order
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != ours]
    assert ids(check_middleware(None)) == ["accounts.W005"]
    settings.MIDDLEWARE = [ours, sessions]  # before SessionMiddleware it would see no session
    assert ids(check_middleware(None)) == ["accounts.W005"]
