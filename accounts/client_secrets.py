"""Client secrets at rest: encrypted with a key from settings, or a reference to an environment variable.

A copy of the database -- a backup, a ``dumpdata``, a laptop's SQLite file -- must not hand out
the credentials the site signs in with. ``Provider.client_secret`` therefore stores one of:

* ``""``: no secret (a token issuer, or a provider not finished yet);
* ``env:NAME``: the secret is the environment variable ``NAME``, read each time it is used, so
  the value never reaches the database at all (the usual way with a secrets manager);
* ``fernet:<token>``: the secret encrypted with the first key of ``ACCOUNTS_CLIENT_SECRET_KEYS``
  (``cryptography``'s MultiFernet: the first key encrypts, every key decrypts, so a new key can be
  put in front and ``manage.py oidc_secrets reencrypt`` moves every secret to it).

Anything else is a value typed in but not saved yet (or left from before encryption): saving
encrypts it (``seal``), and it works in memory meanwhile. The plain value exists only where it is
used -- the token request and an HMAC key -- through ``reveal``; it is never rendered, never
logged and never in an audit row or the admin's history, whose change messages name fields only.
"""

from __future__ import annotations

import enum
import functools
import os
import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables

from .conf import conf
from .errors import ClientSecretUnavailable

ENCRYPTED_PREFIX = "fernet:"
ENVIRONMENT_PREFIX = "env:"
#: A POSIX-style environment variable name: what ``env:NAME`` may reference.
ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: Longest plain secret accepted, in UTF-8 bytes; its encrypted form fits the column (1000 characters).
MAX_SECRET_BYTES = 500


class SecretForm(enum.StrEnum):
    """How a stored ``client_secret`` value holds the secret."""

    NONE = "none"
    ENVIRONMENT = "environment"
    ENCRYPTED = "encrypted"
    PLAIN = "plain"


def form_of(stored: str) -> SecretForm:
    if not stored:
        return SecretForm.NONE
    if stored.startswith(ENVIRONMENT_PREFIX):
        return SecretForm.ENVIRONMENT
    if stored.startswith(ENCRYPTED_PREFIX):
        return SecretForm.ENCRYPTED
    return SecretForm.PLAIN


def environment_name(stored: str) -> str:
    """The variable an ``env:NAME`` value names (``""`` for any other form)."""
    return stored.removeprefix(ENVIRONMENT_PREFIX) if form_of(stored) == SecretForm.ENVIRONMENT else ""


def environment_name_allowed(name: str) -> bool:
    """Whether ``env:NAME`` may name this variable: a name with the configured prefix, or one listed.

    Whoever may edit providers chooses the variable, and its value is sent to the provider's token
    endpoint, which they choose too. Any variable at all would hand them ``DJANGO_SECRET_KEY``,
    ``DATABASE_URL`` or ``ACCOUNTS_CLIENT_SECRET_KEYS`` as Basic credentials; only variables set
    aside for client secrets (``ACCOUNTS_CLIENT_SECRET_ENV_PREFIX``, ``..._ENV_ALLOWED``) can be read.
    """
    if not ENVIRONMENT_NAME.fullmatch(name):
        return False
    prefix = conf.CLIENT_SECRET_ENV_PREFIX
    if prefix and name.startswith(prefix) and len(name) > len(prefix):
        return True
    return name in conf.CLIENT_SECRET_ENV_ALLOWED


class NoSecretKey(ImproperlyConfigured):
    """A plain secret is to be stored, and ``ACCOUNTS_CLIENT_SECRET_KEYS`` names no key to encrypt it with."""


def keys_configured() -> bool:
    return bool(conf.CLIENT_SECRET_KEYS)


@functools.lru_cache(maxsize=4)
def _multi_fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _fernet() -> MultiFernet:
    keys = tuple(conf.CLIENT_SECRET_KEYS)
    if not keys:
        raise NoSecretKey(
            "ACCOUNTS_CLIENT_SECRET_KEYS is not set, so a client secret cannot be stored encrypted: configure a key "
            "(manage.py oidc_secrets generate-key makes one), or give the secret as env:NAME."
        )
    return _multi_fernet(keys)


def generate_key() -> str:
    """A new random key for ``ACCOUNTS_CLIENT_SECRET_KEYS``."""
    return Fernet.generate_key().decode()


@sensitive_variables("value")
def seal(value: str) -> str:
    """The stored form of ``value``: a plain secret is encrypted; the other forms are kept as they are."""
    if form_of(value) != SecretForm.PLAIN:
        return value
    return ENCRYPTED_PREFIX + _fernet().encrypt(value.encode()).decode()


def reencrypt(stored: str) -> str:
    """``stored`` encrypted with the newest key (a plain value is encrypted; ``env:`` and empty are kept).

    Raises ``InvalidToken`` when no configured key decrypts it.
    """
    if form_of(stored) != SecretForm.ENCRYPTED:
        return seal(stored)
    token = stored.removeprefix(ENCRYPTED_PREFIX).encode()
    return ENCRYPTED_PREFIX + _fernet().rotate(token).decode()


def decryptable(stored: str) -> bool:
    """Whether the configured keys can read ``stored`` (only the encrypted form needs a key)."""
    if form_of(stored) != SecretForm.ENCRYPTED:
        return True
    if not keys_configured():
        return False
    try:
        _fernet().decrypt(stored.removeprefix(ENCRYPTED_PREFIX).encode())
    except InvalidToken:
        return False
    return True


@sensitive_variables("secret")
def reveal(stored: str, *, owner: str) -> str:
    """The secret itself, at the moment it is sent; ``owner`` (a provider's slug) names it in errors.

    Raises ``ClientSecretUnavailable`` -- a page that blames the site's configuration, with one log
    line that names the variable or the key problem and never the value -- when the environment
    variable is unset or no configured key decrypts the stored value.
    """
    form = form_of(stored)
    if form == SecretForm.ENVIRONMENT:
        name = environment_name(stored)
        if not environment_name_allowed(name):  # stored before the rule, or written past validation
            raise ClientSecretUnavailable(
                f"client secret of {owner} names the environment variable {name[:128]!r}, which neither "
                "ACCOUNTS_CLIENT_SECRET_ENV_PREFIX nor ACCOUNTS_CLIENT_SECRET_ENV_ALLOWED allows"
            )
        secret = os.environ.get(name, "")
        if not secret:
            raise ClientSecretUnavailable(
                f"client secret of {owner} is the environment variable {name[:128]!r}, which is not set"
            )
        return secret
    if form == SecretForm.ENCRYPTED:
        if not keys_configured():
            raise ClientSecretUnavailable(
                f"client secret of {owner} is encrypted and ACCOUNTS_CLIENT_SECRET_KEYS is not set"
            )
        try:
            return _fernet().decrypt(stored.removeprefix(ENCRYPTED_PREFIX).encode()).decode()
        except (InvalidToken, UnicodeError):
            raise ClientSecretUnavailable(
                f"client secret of {owner} cannot be decrypted with any key of ACCOUNTS_CLIENT_SECRET_KEYS "
                "(was its key removed?)"
            ) from None
    return stored


# --- provider tokens (``accounts.provider_tokens``): always encrypted, never a reference -----------


@sensitive_variables("value")
def encrypt(value: str) -> str:
    """``value`` encrypted with the newest key, whatever it looks like (``""`` stays ``""``).

    Unlike ``seal``, nothing is taken for an already stored form: a provider's token that happens
    to begin with ``env:`` or ``fernet:`` is encrypted like any other. Raises ``NoSecretKey``.
    """
    if not value:
        return ""
    return ENCRYPTED_PREFIX + _fernet().encrypt(value.encode()).decode()


@sensitive_variables("value")
def decrypt(stored: str, *, owner: str) -> str:
    """The plain value of what ``encrypt`` returned; ``owner`` names it in errors, never the value.

    Raises ``ClientSecretUnavailable`` when no configured key decrypts it.
    """
    if not stored:
        return ""
    if form_of(stored) != SecretForm.ENCRYPTED:
        raise ClientSecretUnavailable(f"{owner} is not stored encrypted")
    if not keys_configured():
        raise ClientSecretUnavailable(f"{owner} is encrypted and ACCOUNTS_CLIENT_SECRET_KEYS is not set")
    try:
        value = _fernet().decrypt(stored.removeprefix(ENCRYPTED_PREFIX).encode()).decode()
    except (InvalidToken, UnicodeError):
        raise ClientSecretUnavailable(
            f"{owner} cannot be decrypted with any key of ACCOUNTS_CLIENT_SECRET_KEYS (was its key removed?)"
        ) from None
    return value
