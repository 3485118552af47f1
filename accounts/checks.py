"""System checks: configuration that would quietly weaken sign-in is reported at start-up."""

from __future__ import annotations

import difflib

from django.conf import settings
from django.core.cache import caches
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
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
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    ours = "accounts.middleware.ProviderSessionMiddleware"
    session = "django.contrib.sessions.middleware.SessionMiddleware"
    if ours in middleware and (session not in middleware or middleware.index(ours) > middleware.index(session)):
        return []
    return [
        Warning(
            f"{ours} is not in MIDDLEWARE after {session}.",
            hint="Without it, a session whose key changes (a password change, cycle_key()) keeps its old key "
            "in the back-channel logout records, and the provider's logout can no longer end it.",
            id="oidc_signin.W005",
        )
    ]


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
        from .flow import session_backend

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
