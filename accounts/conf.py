"""Every setting the accounts app reads: its name, type, default and purpose, in one place.

Each setting is a typed attribute of ``conf``: ``conf.OIDC_FLOW_TTL`` reads
``settings.ACCOUNTS_OIDC_FLOW_TTL``, and an attribute that does not exist is an ``AttributeError``
at import time for mypy and at first use for Python. Values are read on each access, so
``override_settings`` works and nothing is frozen at import. ``manage.py check`` reports a value
of the wrong type and an ``ACCOUNTS_*`` name that is not a setting (``accounts.checks``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from django.conf import settings

T = TypeVar("T")

DEFAULT_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip

_MISSING = object()


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _timeout(value: object) -> bool:
    """What ``requests`` takes: seconds, or a (connect, read) pair of seconds."""
    if isinstance(value, tuple | list):
        return len(value) == 2 and all(_number(v) for v in value)
    return _number(value) and value != 0


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _flag(value: object) -> bool:
    return isinstance(value, bool)


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _audiences(value: object) -> bool:
    """One audience, or a list of them; empty means "not configured" (each API then names its own)."""
    if isinstance(value, str):
        return True
    return isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value)


#: What ``ACCOUNTS_API_UNKNOWN_SUBJECT`` may say (``accounts.api.UnknownSubject``'s values).
UNKNOWN_SUBJECT_CHOICES = frozenset({"refuse", "create-user", "machine"})
#: Who an API admits (``accounts.api.Callers``' values).
CALLERS_CHOICES = frozenset({"any", "users", "machines"})


def _unknown_subject(value: object) -> bool:
    return value in UNKNOWN_SUBJECT_CHOICES


def _api_prefixes(value: object) -> bool:
    """``{"/api/": {"audience": ..., "scopes": [...], ...}}``: each option as ``bearer_token_required`` takes it."""
    if not isinstance(value, dict):
        return False
    checks: dict[str, Callable[[object], bool]] = {
        "audience": lambda v: _audiences(v) and bool(v),
        "scopes": lambda v: isinstance(v, list | tuple) and all(isinstance(s, str) and s for s in v),
        "callers": lambda v: v in CALLERS_CHOICES,
        "unknown_subject": _unknown_subject,
        "refuse_replay": _flag,
        "profile": lambda v: v in ("access-token", "app-session"),
    }
    for prefix, options in value.items():
        if not isinstance(prefix, str) or not prefix.startswith("/") or not isinstance(options, dict):
            return False
        if set(options) - set(checks) or not all(checks[name](option) for name, option in options.items()):
            return False
    return True


def _fernet_keys(value: object) -> bool:
    """Fernet keys: each the URL-safe base64 of 32 random bytes, as ``Fernet.generate_key()`` writes them."""
    if not isinstance(value, list | tuple):
        return False
    for key in value:
        try:
            if not isinstance(key, str) or len(base64.urlsafe_b64decode(key.encode("ascii"))) != 32:
                return False
        except (ValueError, binascii.Error):
            return False
    return True


#: What an environment variable's name may look like (``accounts.client_secrets.ENVIRONMENT_NAME``).
_ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _environment_prefix(value: object) -> bool:
    """The start of an environment variable name: never empty, which would allow every variable."""
    return isinstance(value, str) and bool(_ENVIRONMENT_NAME.fullmatch(value))


def _environment_names(value: object) -> bool:
    return isinstance(value, list | tuple) and all(
        isinstance(name, str) and _ENVIRONMENT_NAME.fullmatch(name) for name in value
    )


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One ``ACCOUNTS_*`` setting: read as its attribute of ``conf``, checked by ``manage.py check``."""

    default: T
    #: Whether a configured value has the right type and range.
    valid: Callable[[object], bool]
    #: What a valid value is, for the check's message.
    expects: str
    #: A former name still honoured when the current one is not set.
    former: str | None = None
    name: str = ""

    def __set_name__(self, owner: type, attribute: str) -> None:
        object.__setattr__(self, "name", "ACCOUNTS_" + attribute)

    @overload
    def __get__(self, obj: None, owner: type) -> Setting[T]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> T: ...
    def __get__(self, obj: object | None, owner: type) -> Setting[T] | T:
        if obj is None:
            return self
        value = getattr(settings, self.name, _MISSING)
        if value is _MISSING and self.former is not None:
            value = getattr(settings, self.former, _MISSING)
        return self.default if value is _MISSING else value  # type: ignore[return-value]

    def configured(self) -> tuple[str, Any] | None:
        """(name, value) as the project set it, under its current or former name, or None."""
        for name in (self.name, self.former):
            if name is not None and hasattr(settings, name):
                return name, getattr(settings, name)
        return None


class AppSettings:
    """The app's settings; see the comments for what each one is for."""

    #: (connect, read) timeouts in seconds for every call to a provider.
    OIDC_HTTP_TIMEOUT = Setting[tuple[float, float]]((3.05, 5.0), _timeout, "seconds, or a (connect, read) pair")
    #: Longest a whole answer may take to arrive, in seconds (the read timeout bounds each wait).
    OIDC_HTTP_TOTAL_TIMEOUT = Setting[float](10.0, _number, "a number of seconds")
    #: Dotted path of a callable that returns the ``requests.Session`` every call to a provider goes
    #: through (a proxy, client certificates for mTLS, instrumentation); empty: the app's own.
    OIDC_HTTP_SESSION = Setting[str]("", lambda value: isinstance(value, str), "a dotted path to a callable, or empty")
    #: Largest response body accepted from a provider, in bytes.
    OIDC_MAX_RESPONSE_BYTES = Setting[int](1024 * 1024, _whole, "a whole number of bytes")
    #: Allow http:// issuers and endpoints on any host (otherwise only loopback, and only when DEBUG).
    OIDC_ALLOW_INSECURE_HTTP = Setting[bool](False, _flag, "True or False")
    #: Clock skew tolerated on exp / iat / nbf / auth_time, in seconds.
    OIDC_CLOCK_LEEWAY = Setting[int](60, _whole, "a whole number of seconds")
    #: How long a started sign-in (state, nonce, PKCE verifier) stays usable, in seconds.
    OIDC_FLOW_TTL = Setting[int](600, _whole, "a whole number of seconds")
    #: How many sign-ins may be in flight at once in one browser session (tabs).
    OIDC_MAX_PENDING_FLOWS = Setting[int](8, _whole, "a whole number")
    #: Bounds on how long discovery and JWKS documents are cached; Cache-Control max-age is
    #: honoured within them, and the default applies when the provider sends none.
    OIDC_CACHE_MIN_TTL = Setting[int](300, _whole, "a whole number of seconds")
    OIDC_CACHE_MAX_TTL = Setting[int](86400, _whole, "a whole number of seconds")
    OIDC_CACHE_DEFAULT_TTL = Setting[int](3600, _whole, "a whole number of seconds")
    #: When a document has expired and the provider cannot be reached, the expired copy stands in
    #: for at most this many seconds past its expiry (then sign-ins fail: keys that old may have
    #: been revoked), and the provider is asked again at most every RETRY_AFTER_FAILURE seconds.
    OIDC_CACHE_STALE_WINDOW = Setting[int](86400, _whole, "a whole number of seconds")
    OIDC_CACHE_RETRY_AFTER_FAILURE = Setting[int](30, _whole, "a whole number of seconds")
    #: A token whose key id is not in the cached JWKS makes the app refetch it, within a budget per
    #: key set that depends on where the token came from (``accounts.oidc.discovery.KeyOrigin``).
    #: ID tokens and signed userinfo come from the provider over the back channel, so an unknown kid
    #: means a key rotation: refetch at most once per this many seconds. A token meeting the
    #: cooldown waits for it to end and then refetches (keep it a few seconds: that is how long such
    #: a sign-in may be delayed).
    OIDC_JWKS_REFETCH_COOLDOWN = Setting[float](2.0, _number, "a number of seconds")
    #: Tokens anyone can submit (back-channel logout tokens, bearer tokens) refetch at most once per
    #: this many seconds, a budget of their own that never delays the above.
    OIDC_JWKS_UNTRUSTED_REFETCH_INTERVAL = Setting[float](
        60, _number, "a number of seconds", former="ACCOUNTS_OIDC_JWKS_REFETCH_INTERVAL"
    )
    #: A discovery or JWKS fetch that failed (unreachable, timed out, an error answer, garbage) is
    #: remembered for about this many seconds (with up to 20% jitter either way), in the shared cache:
    #: meanwhile a request that needs the document and has no copy of it is answered at once (502 for
    #: a page, 503 with Retry-After for an API) instead of each calling a provider that hangs.
    #: 0 turns the memory off.
    OIDC_FETCH_FAILURE_TTL = Setting[float](10.0, _number, "a number of seconds")
    #: How long a request waits for another process's in-flight fetch of the same document.
    OIDC_FETCH_WAIT = Setting[float](5.0, _number, "a number of seconds")
    #: Django cache alias for discovery/JWKS documents, refetch budgets and the fetch lock.
    OIDC_CACHE_ALIAS = Setting[str]("default", _text, "the name of a cache in CACHES")
    #: Dotted path of the adapter class (see accounts/adapter.py).
    ADAPTER = Setting[str]("accounts.adapter.DefaultAccountAdapter", _text, "a dotted path to a class")
    #: Audit rows written per minute for failures of anonymous visitors from one address (an IPv4
    #: address or an IPv6 /64); beyond it failures are counted on the next row written, not stored.
    AUDIT_ANONYMOUS_FAILURES_PER_MINUTE = Setting[int](20, _whole, "a whole number")

    #: The audience (``aud``) bearer access tokens must carry for this site's APIs, RFC 9068's
    #: identifier of the API itself (never a client id); a list accepts any of them. An API that
    #: names its own (``bearer_token_required(audience=...)``) uses that instead.
    API_AUDIENCE = Setting[str | list[str]]("", _audiences, "an audience string, or a list of them")
    #: What a valid user access token whose subject has no identity here becomes: "refuse" it,
    #: "create-user" (as a first sign-in would), or "machine" (only tokens that show a client; others refused).
    API_UNKNOWN_SUBJECT = Setting[str]("refuse", _unknown_subject, '"refuse", "create-user" or "machine"')
    #: URL path prefixes ``accounts.api.BearerTokenMiddleware`` protects, each with the options of
    #: ``bearer_token_required``: ``{"/api/": {"audience": "https://api.example", "scopes": ["read"]}}``.
    API_PREFIXES = Setting[dict[str, dict[str, Any]]](
        {}, _api_prefixes, "a dict of path prefixes to dicts of bearer_token_required options"
    )
    #: Verified access tokens each process remembers until they expire (``accounts.token_cache``), so
    #: a repeated token skips the signature check; 0 turns the cache off.
    API_TOKEN_CACHE_SIZE = Setting[int](1024, _whole, "a whole number of tokens")

    #: Keys client secrets are stored encrypted with (``accounts.client_secrets``), newest first: the first
    #: encrypts, every one decrypts. Put a new key in front, run ``manage.py oidc_secrets reencrypt``,
    #: then drop the old one. Empty: secrets can only be given as ``env:NAME``.
    CLIENT_SECRET_KEYS = Setting[Sequence[str]]((), _fernet_keys, "a list of Fernet keys (oidc_secrets generate-key)")
    #: ``env:NAME`` client secrets may name only environment variables that start with this prefix, or
    #: that CLIENT_SECRET_ENV_ALLOWED lists. Whoever may edit providers may choose a secret's variable,
    #: and the secret is sent to the provider's token endpoint: without this bound, ``env:DJANGO_SECRET_KEY``
    #: would send the site's own secrets to a server of their choosing.
    CLIENT_SECRET_ENV_PREFIX = Setting[str](
        "OIDC_SECRET_", _environment_prefix, "the non-empty start of an environment variable name"
    )
    #: Environment variables ``env:NAME`` may name besides those starting with CLIENT_SECRET_ENV_PREFIX.
    CLIENT_SECRET_ENV_ALLOWED = Setting[Sequence[str]]((), _environment_names, "a list of environment variable names")

    # --- sign-in without a redirect (accounts.no_redirect; docs/sign-in-without-redirect.md) ---
    #: Refusals per minute the button/One Tap and app endpoints answer from one address (an IPv4
    #: address or an IPv6 /64) before they refuse everything from it with 429 for the rest of the minute.
    NO_REDIRECT_FAILURES_PER_MINUTE = Setting[int](20, _whole, "a whole number")
    #: The Google Identity Services script the button tag loads; development points it at the
    #: development provider's offline stand-in (``/devidp/gsi/client.js``).
    GIS_CLIENT_SCRIPT = Setting[str]("https://accounts.google.com/gsi/client", _text, "a script URL")
    #: How long a session token handed to an app that keeps no cookies lasts, in seconds.
    APP_SESSION_TTL = Setting[int](3600, _whole, "a whole number of seconds")

    #: Stored provider tokens (``accounts.provider_tokens``): an access token that expires within
    #: this many seconds is refreshed before it is handed out, so a call made with it does not fail
    #: on its way to the provider.
    PROVIDER_TOKENS_REFRESH_MARGIN = Setting[int](60, _whole, "a whole number of seconds")
    #: The longest the token vault waits for another process's refresh of the same identity (the
    #: row lock), in seconds, on PostgreSQL (``lock_timeout``); SQLite waits its busy timeout.
    PROVIDER_TOKENS_LOCK_TIMEOUT = Setting[float](15.0, _number, "a number of seconds")

    # --- high assurance (accounts.site_keys, accounts.dpop; docs/high-assurance.md) ---
    #: The algorithm ``manage.py oidc_keys generate`` and ``rotate`` make keys for unless told otherwise.
    SITE_KEY_ALGORITHM = Setting[str](
        "ES256", lambda v: v in ("ES256", "PS256", "RS256"), '"ES256", "PS256" or "RS256"'
    )
    #: How long ``GET /accounts/jwks.json`` may be cached by providers (Cache-Control max-age), in seconds.
    SITE_JWKS_MAX_AGE = Setting[int](300, _whole, "a whole number of seconds")
    #: How long a new key is published before ``manage.py oidc_keys rotate`` lets it sign, in seconds:
    #: longer than any provider caches the site's JWKS (SITE_JWKS_MAX_AGE, and their own floors).
    SITE_KEY_PUBLISH_DELAY = Setting[int](900, _whole, "a whole number of seconds")
    #: Lifetime of a ``private_key_jwt`` client assertion, in seconds (at most 60).
    PRIVATE_KEY_JWT_LIFETIME = Setting[int](60, lambda v: _whole(v) and v in range(1, 61), "1 to 60 seconds")
    #: DPoP proofs an API accepts (``accounts.dpop``): ``iat`` at most this many seconds old (or ahead).
    DPOP_PROOF_MAX_AGE = Setting[int](60, _whole, "a whole number of seconds")
    #: Whether the APIs ask DPoP clients for a server nonce (RFC 9449 section 8), answering ``use_dpop_nonce``.
    DPOP_REQUIRE_NONCE = Setting[bool](False, _flag, "True or False")

    @classmethod
    def all(cls) -> list[Setting[Any]]:
        return [value for value in vars(cls).values() if isinstance(value, Setting)]


conf = AppSettings()
