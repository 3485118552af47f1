"""System checks: configurations that would quietly weaken sign-in are reported at start-up."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks

from accounts.adapter import DefaultAccountAdapter
from accounts.checks import check_cache, check_insecure_http, check_middleware, check_session_engine, check_settings


def ids(messages) -> list[str]:
    return [m.id for m in messages]


def test_insecure_http_in_production_is_reported(settings):
    settings.DEBUG, settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = False, True
    assert ids(check_insecure_http(None)) == ["oidc_signin.W001"]
    settings.ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = False
    assert check_insecure_http(None) == []


def test_dummy_cache_is_reported(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    assert ids(check_cache(None)) == ["oidc_signin.W003"]


def test_signed_cookie_sessions_are_reported(settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    assert ids(check_session_engine(None)) == ["oidc_signin.W004"]
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    assert check_session_engine(None) == []


def test_missing_or_misplaced_sign_in_session_middleware_is_an_error(settings):
    ours = "accounts.session.SignInSessionMiddleware"
    sessions = "django.contrib.sessions.middleware.SessionMiddleware"
    assert check_middleware(None) == []  # the demo project's order
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != ours]
    assert ids(check_middleware(None)) == ["oidc_signin.E010"]
    settings.MIDDLEWARE = [ours, sessions]  # before SessionMiddleware it would see no session
    assert ids(check_middleware(None)) == ["oidc_signin.E010"]


def test_the_former_middleware_path_still_works(settings):
    from accounts.middleware import ProviderSessionMiddleware
    from accounts.session import SignInSessionMiddleware

    former = "accounts.middleware.ProviderSessionMiddleware"
    ours = "accounts.session.SignInSessionMiddleware"
    settings.MIDDLEWARE = [former if m == ours else m for m in settings.MIDDLEWARE]
    assert check_middleware(None) == []
    assert ProviderSessionMiddleware is SignInSessionMiddleware


def test_the_project_settings_pass_the_settings_check():
    assert check_settings(None) == []


def test_a_setting_of_the_wrong_type_is_an_error(settings):
    settings.ACCOUNTS_OIDC_FLOW_TTL = "600"  # a string from an environment variable, unconverted
    [error] = check_settings(None)
    assert error.id == "oidc_signin.E001" and error.msg.startswith("ACCOUNTS_OIDC_FLOW_TTL is '600'")
    assert "a whole number of seconds" in error.msg and "600" in error.hint


def test_a_former_name_with_a_bad_value_is_reported_under_that_name(settings):
    settings.ACCOUNTS_OIDC_JWKS_REFETCH_INTERVAL = -1
    [error] = check_settings(None)
    assert error.id == "oidc_signin.E001" and error.msg.startswith("ACCOUNTS_OIDC_JWKS_REFETCH_INTERVAL is -1")


def test_a_mistyped_setting_name_is_reported_with_the_likely_one(settings):
    settings.ACCOUNTS_OIDC_CLOCK_LEWAY = 120
    [warning] = check_settings(None)
    assert warning.id == "oidc_signin.W006" and warning.msg.startswith("ACCOUNTS_OIDC_CLOCK_LEWAY is not a setting")
    assert warning.hint == "Did you mean ACCOUNTS_OIDC_CLOCK_LEEWAY?"


def test_an_unknown_name_in_our_own_prefix_is_reported(settings):
    settings.ACCOUNTS_OIDC_SOMETHING_ELSE = 1
    [warning] = check_settings(None)
    assert warning.id == "oidc_signin.W006" and warning.msg.startswith("ACCOUNTS_OIDC_SOMETHING_ELSE")


def test_a_projects_own_accounts_app_settings_are_left_alone(settings):
    """A project with its own ``accounts`` app may well have ACCOUNTS_* settings of its own."""
    settings.ACCOUNTS_REGISTRATION_OPEN = False
    assert check_settings(None) == []


def test_no_backend_that_finds_users_again_is_an_error(settings):
    from accounts.checks import check_authentication_backend

    assert check_authentication_backend(None) == []
    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.RemoteUserBackend"]  # a ModelBackend: fine
    assert check_authentication_backend(None) == []
    settings.AUTHENTICATION_BACKENDS = ["tests.test_checks.TokenOnlyBackend"]
    assert ids(check_authentication_backend(None)) == ["oidc_signin.E002"]


class TokenOnlyBackend:
    """A project's API-key backend: it authenticates requests, but cannot find a user by id."""

    def authenticate(self, request, **credentials):
        return None

    def get_user(self, user_id):
        return None


def test_missing_messages_or_sessions_are_errors_not_a_500_at_the_callback(settings):
    from accounts.checks import check_required_apps

    assert check_required_apps(None) == []
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "messages" not in m]
    [error] = check_required_apps(None)
    assert error.id == "oidc_signin.E005" and "MessageMiddleware" in error.msg
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "django.contrib.sessions"]
    assert ids(check_required_apps(None)) == ["oidc_signin.E004", "oidc_signin.E005"]


def test_the_adapter_setting_must_name_a_default_adapter_subclass(settings):
    """Every sign-in asks the adapter: a bad ACCOUNTS_ADAPTER would fail each of them, so it fails at start-up."""
    from accounts.checks import check_adapter

    assert check_adapter(None) == []  # the default
    settings.ACCOUNTS_ADAPTER = "tests.test_checks.ProjectAdapter"
    assert check_adapter(None) == []
    settings.ACCOUNTS_ADAPTER = "tests.test_checks.NotAnAdapter"
    [error] = check_adapter(None)
    assert error.id == "oidc_signin.E006" and "is not a subclass of accounts.adapter.DefaultAccountAdapter" in error.msg
    assert error.hint.startswith("Subclass DefaultAccountAdapter")
    settings.ACCOUNTS_ADAPTER = "tests.test_checks.AN_ADAPTER"  # an instance, not the class
    assert ids(check_adapter(None)) == ["oidc_signin.E006"]
    assert "oidc_signin.E006" in ids(run_checks())  # registered: manage.py check reports it


@pytest.mark.parametrize("path", ["tests.test_checks.NoSuchAdapter", "tests.no_such_module.Adapter", "Adapter"])
def test_an_adapter_setting_that_does_not_import_is_an_error(settings, path):
    from accounts.checks import check_adapter

    settings.ACCOUNTS_ADAPTER = path
    [error] = check_adapter(None)
    assert error.id == "oidc_signin.E006" and error.msg.startswith(f"ACCOUNTS_ADAPTER {path!r} does not import")
    assert error.hint == "Check the dotted path to the class."


class ProjectAdapter(DefaultAccountAdapter):
    pass


AN_ADAPTER = ProjectAdapter()


class NotAnAdapter:
    """Has the hooks' names, but none of the rules the default keeps."""

    def is_sign_in_allowed(self, request, provider, claims):
        return True


# --- checks that read the providers (Tags.database: only when a database is named) ---------------


def _provider(slug: str = "corp", **fields):
    from accounts.models import Provider

    values = {"name": slug.title(), "issuer": "https://sso.example.com", "client_id": "cid", "client_secret": "s"}
    return Provider.objects.create(slug=slug, **{**values, **fields})


def _db_ids(check) -> list[str]:
    return ids(check(None, databases=["default"]))


@pytest.mark.django_db
def test_database_checks_need_a_named_database_so_check_without_one_passes():
    from accounts.checks import check_provider_registrations, check_provider_secrets

    _provider(client_secret="")
    _provider("twin", client_secret="")
    assert check_provider_secrets(None) == [] and check_provider_registrations(None) == []
    assert "oidc_signin.W007" in ids(run_checks(databases=["default"]))  # registered: check --database reports it
    assert "oidc_signin.W007" not in ids(run_checks())


@pytest.mark.django_db
def test_an_enabled_provider_without_a_secret_is_reported():
    from accounts.checks import check_provider_secrets

    provider = _provider(client_secret="")
    assert _db_ids(check_provider_secrets) == ["oidc_signin.W007"]
    _provider("api", kind="token-issuer", client_secret="")  # a token issuer signs nobody in: needs none
    provider.enabled = False
    provider.save()
    assert _db_ids(check_provider_secrets) == []


@pytest.mark.django_db
def test_encrypted_secrets_without_a_key_are_an_error(settings):
    from accounts.checks import check_provider_secrets

    _provider()
    assert _db_ids(check_provider_secrets) == []
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = []
    assert _db_ids(check_provider_secrets) == ["oidc_signin.E007"]


@pytest.mark.django_db
def test_encrypted_secrets_no_configured_key_decrypts_are_an_error(settings):
    from cryptography.fernet import Fernet

    from accounts.checks import check_provider_secrets

    _provider()
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = [Fernet.generate_key().decode()]
    messages = check_provider_secrets(None, databases=["default"])
    assert ids(messages) == ["oidc_signin.E008"] and "corp" in messages[0].msg


@pytest.mark.django_db
def test_plain_secrets_left_in_the_database_are_reported():
    from django.db import connection

    from accounts.checks import check_provider_secrets
    from accounts.models import Provider

    provider = _provider()
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Provider._meta.db_table} SET client_secret = 'plain' WHERE id = %s", [provider.pk])
    assert _db_ids(check_provider_secrets) == ["oidc_signin.W010"]


@pytest.mark.django_db
def test_two_providers_for_one_client_of_one_issuer_are_reported():
    from accounts.checks import check_provider_registrations

    _provider()
    _provider("other", client_id="another")
    assert _db_ids(check_provider_registrations) == []
    _provider("twin", issuer="https://sso.example.com/")  # the same issuer, spelt with its slash
    messages = check_provider_registrations(None, databases=["default"])
    assert ids(messages) == ["oidc_signin.W008"] and "corp, twin" in messages[0].msg


@pytest.mark.django_db
def test_an_http_issuer_with_debug_off_is_reported(settings):
    from accounts.checks import check_provider_registrations

    _provider(issuer="http://sso.example.com")
    settings.DEBUG = False
    assert _db_ids(check_provider_registrations) == ["oidc_signin.W009"]
    settings.DEBUG = True
    assert _db_ids(check_provider_registrations) == []


def test_database_checks_pass_before_the_tables_exist(monkeypatch):
    """``migrate`` runs the checks before it creates the tables: no table is no finding, not a crash."""
    from django.db import OperationalError

    from accounts import checks
    from accounts.models import Provider

    def no_table(*args, **kwargs):
        raise OperationalError("no such table: oidc_signin_provider")

    monkeypatch.setattr(Provider.objects, "using", no_table)
    assert checks.check_provider_secrets(None, databases=["default"]) == []
    assert checks.check_provider_registrations(None, databases=["default"]) == []


@pytest.mark.parametrize("keys", ["one-key-not-a-list", ["not-base64!"], ["c2hvcnQ="], [b"bytes"]])
def test_a_client_secret_key_that_is_no_fernet_key_is_reported(settings, keys):
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = keys
    assert ids(check_settings(None)) == ["oidc_signin.E001"]
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = ["ogTZScmC1iS6-_Ntl3_aluIjb03rT4XQdPkN-U2bG5s="]
    assert check_settings(None) == []
