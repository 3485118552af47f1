"""System checks: configuration that would quietly weaken sign-in is reported at start-up."""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.utils.module_loading import import_string

from .conf import AppSettings, conf


@register(Tags.security, deploy=True)
def check_insecure_http(app_configs, **kwargs):
    if conf.OIDC_ALLOW_INSECURE_HTTP and not settings.DEBUG:
        return [
            Warning(
                "ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP is on with DEBUG off.",
                hint="Tokens and client secrets would travel over plain http; turn it off in production.",
                id="oidc_signin.W001",
            )
        ]
    return []


@register(Tags.security)
def check_session_engine(app_configs, **kwargs):
    if settings.SESSION_ENGINE == "django.contrib.sessions.backends.signed_cookies":
        return [
            Warning(
                "The accounts app is used with signed-cookie sessions.",
                hint="A sign-in's state, nonce and PKCE verifier would travel in a cookie the browser can read, "
                "and back-channel logout cannot end a cookie session; use the db, cache or cached_db engine.",
                id="oidc_signin.W004",
            )
        ]
    return []


@register()
def check_middleware(app_configs, **kwargs):
    """Without the app's middleware a sign-in would send no session cookie: refused at start-up."""
    from .session import MIDDLEWARE_PATH

    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    session = "django.contrib.sessions.middleware.SessionMiddleware"
    # The former path (``accounts.middleware``) names the same class and keeps working.
    ours = [index for index, path in enumerate(middleware) if path in (MIDDLEWARE_PATH, _FORMER_MIDDLEWARE_PATH)]
    if ours and (session not in middleware or ours[0] > middleware.index(session)):
        return []
    return [
        Error(
            f"{MIDDLEWARE_PATH} is not in MIDDLEWARE after {session}.",
            hint="It sends the session cookie of a sign-in and the cookies of started sign-ins; without it "
            "nobody stays signed in, and a session whose key changes (a password change, cycle_key()) "
            "could no longer be ended by the provider's logout.",
            id="oidc_signin.E010",
        )
    ]


_FORMER_MIDDLEWARE_PATH = "accounts.middleware.ProviderSessionMiddleware"


@register(Tags.caches)
def check_cache(app_configs, **kwargs):
    backend = settings.CACHES.get(conf.OIDC_CACHE_ALIAS, {}).get("BACKEND", "")
    errors = []
    if not backend:
        return [Warning(f"Cache alias {conf.OIDC_CACHE_ALIAS!r} is not configured.", id="oidc_signin.W002")]
    if backend.endswith("DummyCache"):
        errors.append(
            Warning(
                "The accounts app's cache is a DummyCache.",
                hint="Discovery and JWKS documents would be fetched on every sign-in and the refetch lock "
                "would not work; use local memory, Redis or Memcached.",
                id="oidc_signin.W003",
            )
        )
    else:
        caches[conf.OIDC_CACHE_ALIAS]  # raises early if the backend cannot be built
    return errors


@register()
def check_settings(app_configs, **kwargs):
    """A value of the wrong type fails here, not at the first sign-in; a mistyped name is not ignored."""
    found: list[CheckMessage] = []
    known = AppSettings.all()
    for setting in known:
        configured = setting.configured()
        if configured is not None and not setting.valid(configured[1]):
            name, value = configured
            found.append(
                Error(
                    f"{name} is {value!r:.60}, which is not {setting.expects}.",
                    hint=f"Remove it to use the default, {setting.default!r}.",
                    id="oidc_signin.E001",
                )
            )
    names = {s.name for s in known} | {s.former for s in known if s.former}
    for name in sorted(dir(settings)):
        if not name.startswith("ACCOUNTS_") or name in names:
            continue
        close = difflib.get_close_matches(name, sorted(names), n=1)
        # ACCOUNTS_OIDC_* is ours alone; any other ACCOUNTS_* name may be a project's own
        # ``accounts`` app's setting, so it is reported only when it reads like a typo of ours.
        if close or name.startswith("ACCOUNTS_OIDC_"):
            found.append(
                Warning(
                    f"{name} is not a setting of the sign-in app, so it has no effect.",
                    hint=f"Did you mean {close[0]}?" if close else "See the settings reference in docs/settings.md.",
                    id="oidc_signin.W006",
                )
            )
    return found


@register()
def check_authentication_backend(app_configs, **kwargs):
    """A sign-in must survive its own redirect: some configured backend has to find the user again."""
    try:
        from .session import session_backend

        session_backend()
    except ImproperlyConfigured:
        return [
            Error(
                "AUTHENTICATION_BACKENDS has no ModelBackend (or subclass), so a provider sign-in would last "
                "for one response only: the next request would not find the user.",
                hint="Add 'django.contrib.auth.backends.ModelBackend' to AUTHENTICATION_BACKENDS.",
                id="oidc_signin.E002",
            )
        ]
    except ImportError as exc:
        return [Error(f"An AUTHENTICATION_BACKENDS entry does not import: {exc}", id="oidc_signin.E003")]
    return []


#: What the views need of the project, and what goes wrong without it.
REQUIRED = (
    (
        "django.contrib.sessions",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "a sign-in's state, nonce and PKCE verifier are kept in the session between its two halves",
        "oidc_signin.E004",
    ),
    (
        "django.contrib.messages",
        "django.contrib.messages.middleware.MessageMiddleware",
        "the views confirm a sign-in, a connect or a sign-out with a message (without it the callback is a 500)",
        "oidc_signin.E005",
    ),
)


@register()
def check_required_apps(app_configs, **kwargs):
    """The contrib apps the views rely on, installed with their middleware: a missing one was a 500."""
    from django.apps import apps

    found: list[CheckMessage] = []
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    for app, mw, why, error_id in REQUIRED:
        missing = [what for what, ok in ((app, apps.is_installed(app)), (mw, mw in middleware)) if not ok]
        if missing:
            found.append(
                Error(
                    f"The accounts app needs {' and '.join(missing)}: {why}.",
                    hint=f"Add {app!r} to INSTALLED_APPS and {mw!r} to MIDDLEWARE.",
                    id=error_id,
                )
            )
    return found


@register()
def check_adapter(app_configs, **kwargs):
    """ACCOUNTS_ADAPTER must name a DefaultAccountAdapter subclass: found out at start-up, not at the first sign-in.

    Every sign-in asks the adapter, so a mistyped path or a class of the wrong kind would make each
    of them fail; a class that does not inherit the default would lack the hooks the app calls.
    """
    from .adapter import DefaultAccountAdapter

    path = conf.ADAPTER
    if not isinstance(path, str):  # the wrong type is oidc_signin.E001's to report
        return []
    try:
        adapter = import_string(path)
    except ImportError as exc:
        problem, hint = f"ACCOUNTS_ADAPTER {path!r:.100} does not import: {exc}", "Check the dotted path to the class."
    else:
        if isinstance(adapter, type) and issubclass(adapter, DefaultAccountAdapter):
            return []
        problem = f"ACCOUNTS_ADAPTER {path!r:.100} is not a subclass of accounts.adapter.DefaultAccountAdapter."
        hint = "Subclass DefaultAccountAdapter and override only the hooks you need; the others keep their rules."
    return [Error(problem, hint=hint, id="oidc_signin.E006")]


def _providers(databases: Collection[str] | None) -> list[tuple[str, list[Any]]]:
    """Every provider of each database the check was asked about; none when the tables do not exist yet.

    ``manage.py check`` without ``--database`` asks about none (Django's rule for checks that
    query), so a build step with no database at hand still passes; ``migrate`` asks, and so does
    ``check --database default``.
    """
    from .models import Provider

    found = []
    for alias in databases or ():
        try:
            found.append((alias, list(Provider.objects.using(alias).order_by("slug"))))
        except DatabaseError:  # before the first migrate, or a database this app's tables are not in
            continue
    return found


@register(Tags.database)
def check_provider_secrets(app_configs, databases=None, **kwargs):
    """A sign-in that cannot work is reported before anyone tries it: a secret missing or unreadable."""
    from . import client_secrets
    from .oidc.clients import sign_in_kinds

    found: list[CheckMessage] = []
    kinds = set(sign_in_kinds())
    for alias, providers in _providers(databases):
        missing = [p.slug for p in providers if p.enabled and p.kind in kinds and not p.client_secret]
        if missing:
            found.append(
                Warning(
                    f"Enabled provider(s) without a client secret in database {alias!r}: {', '.join(missing)}.",
                    hint="The token request would fail for each sign-in: enter the secret the provider issued, "
                    "or env:NAME to read it from an environment variable.",
                    id="oidc_signin.W007",
                )
            )
        encrypted = [
            p.slug for p in providers if client_secrets.form_of(p.client_secret) == client_secrets.SecretForm.ENCRYPTED
        ]
        if encrypted and not client_secrets.keys_configured():
            found.append(
                Error(
                    f"Client secrets are stored encrypted ({', '.join(encrypted)}), but ACCOUNTS_CLIENT_SECRET_KEYS "
                    "is not set, so none can be read and sign-in with them fails.",
                    hint="Set ACCOUNTS_CLIENT_SECRET_KEYS to the key(s) they were encrypted with "
                    "(see docs/settings.md).",
                    id="oidc_signin.E007",
                )
            )
        elif encrypted:
            unreadable = [p.slug for p in providers if not client_secrets.decryptable(p.client_secret)]
            if unreadable:
                found.append(
                    Error(
                        "No key of ACCOUNTS_CLIENT_SECRET_KEYS decrypts the client secret of: "
                        f"{', '.join(unreadable)}.",
                        hint="Put the key they were encrypted with back into ACCOUNTS_CLIENT_SECRET_KEYS (after "
                        "the newest), or enter those secrets again.",
                        id="oidc_signin.E008",
                    )
                )
        plain = [
            p.slug for p in providers if client_secrets.form_of(p.client_secret) == client_secrets.SecretForm.PLAIN
        ]
        if plain:
            found.append(
                Warning(
                    f"Client secrets stored in plain text: {', '.join(plain)}; a copy of the database would "
                    "hand them out.",
                    hint="Set ACCOUNTS_CLIENT_SECRET_KEYS (manage.py oidc_secrets generate-key makes a key), then run "
                    "manage.py oidc_secrets reencrypt.",
                    id="oidc_signin.W010",
                )
            )
        forbidden = [
            f"{p.slug} (env:{client_secrets.environment_name(p.client_secret)[:128]})"
            for p in providers
            if client_secrets.form_of(p.client_secret) == client_secrets.SecretForm.ENVIRONMENT
            and not client_secrets.environment_name_allowed(client_secrets.environment_name(p.client_secret))
        ]
        if forbidden:
            found.append(
                Error(
                    f"Client secrets read from environment variables that may not hold one: {', '.join(forbidden)}; "
                    "sign-in with them fails.",
                    hint="Rename each variable to start with ACCOUNTS_CLIENT_SECRET_ENV_PREFIX (default OIDC_SECRET_) "
                    "and enter env:NEW_NAME, or list the name in ACCOUNTS_CLIENT_SECRET_ENV_ALLOWED.",
                    id="oidc_signin.E009",
                )
            )
    return found


@register(Tags.database)
def check_provider_registrations(app_configs, databases=None, **kwargs):
    """Two rows for one client of one issuer, or an issuer reached over plain http in production."""
    found: list[CheckMessage] = []
    for _alias, providers in _providers(databases):
        by_client: dict[tuple[str, str], list[str]] = {}
        for p in providers:
            by_client.setdefault((p.issuer.rstrip("/"), p.client_id), []).append(p.slug)
        for (issuer, client_id), slugs in by_client.items():
            if len(slugs) > 1:
                found.append(
                    Warning(
                        f"Providers {', '.join(slugs)} are the same client {client_id!r:.60} of issuer "
                        f"{issuer!r:.100}.",
                        hint="Identities are keyed by issuer and subject, so the same person signing in through "
                        "either lands on one account while the audit trail and the buttons say two providers; "
                        "keep one and delete or change the other.",
                        id="oidc_signin.W008",
                    )
                )
        if settings.DEBUG:
            continue
        insecure = [p.slug for p in providers if p.enabled and p.issuer.lower().startswith("http://")]
        if insecure:
            found.append(
                Warning(
                    f"Enabled provider(s) with an http:// issuer while DEBUG is off: {', '.join(insecure)}.",
                    hint="Tokens and the client secret would cross the network unencrypted (and sign-in refuses "
                    "them unless ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP is on); use the provider's https:// issuer.",
                    id="oidc_signin.W009",
                )
            )
    return found


@register(Tags.database)
def check_stored_provider_tokens(app_configs, databases=None, **kwargs):
    """A provider that stores tokens (``store_tokens``) on a site with no key to encrypt them with."""
    from . import client_secrets

    found: list[CheckMessage] = []
    if client_secrets.keys_configured():
        return found
    for alias, providers in _providers(databases):
        storing = [p.slug for p in providers if p.enabled and p.store_tokens]
        if storing:
            found.append(
                Error(
                    f"Provider(s) {', '.join(storing)} store tokens (store_tokens) in database {alias!r}, but "
                    "ACCOUNTS_CLIENT_SECRET_KEYS is not set, so every sign-in with them fails.",
                    hint="Set ACCOUNTS_CLIENT_SECRET_KEYS (manage.py oidc_secrets generate-key makes a key), or "
                    "turn store_tokens off (docs/provider-tokens.md).",
                    id="oidc_signin.E021",
                )
            )
    return found


@register(Tags.database)
def check_site_keys(app_configs, databases=None, **kwargs):
    """A provider set to ``private_key_jwt`` on a site with no current key to sign its assertions with."""
    from .models import SiteKey

    found: list[CheckMessage] = []
    for alias, providers in _providers(databases):
        signing = [p.slug for p in providers if p.enabled and p.token_auth_method == "private_key_jwt"]
        if signing and not SiteKey.objects.using(alias).filter(state="current").exists():
            found.append(
                Error(
                    f"Provider(s) {', '.join(signing)} authenticate with private_key_jwt in database {alias!r}, but "
                    "the site has no current signing key, so every sign-in with them fails.",
                    hint="Run manage.py oidc_keys generate and register /accounts/jwks.json with the provider "
                    "(docs/high-assurance.md).",
                    id="oidc_signin.E040",
                )
            )
    return found
