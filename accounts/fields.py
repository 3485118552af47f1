"""Model fields of the app: a client secret that is never written to the database in plain text."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from . import client_secrets
from .client_secrets import SecretForm
from .conf import conf


def validate_client_secret(value: str) -> None:
    """What an admin or a command may store: a valid ``env:NAME``, or a plain secret the site can encrypt."""
    form = client_secrets.form_of(value)
    if form == SecretForm.ENVIRONMENT and not client_secrets.ENVIRONMENT_NAME.fullmatch(
        client_secrets.environment_name(value)
    ):
        raise ValidationError(
            _("After env: give the name of an environment variable, e.g. env:OIDC_SECRET_GOOGLE."),
            code="environment_name",
        )
    if form == SecretForm.ENVIRONMENT and not client_secrets.environment_name_allowed(
        client_secrets.environment_name(value)
    ):
        raise ValidationError(
            _(
                "env:%(name)s is not allowed: a client secret can be read only from an environment variable "
                "whose name starts with %(prefix)s (ACCOUNTS_CLIENT_SECRET_ENV_PREFIX) or that "
                "ACCOUNTS_CLIENT_SECRET_ENV_ALLOWED lists, so that editing a provider can never read the "
                "site's other secrets."
            ),
            code="environment_name_not_allowed",
            params={"name": client_secrets.environment_name(value), "prefix": conf.CLIENT_SECRET_ENV_PREFIX},
        )
    if form != SecretForm.PLAIN:
        return
    if len(value.encode()) > client_secrets.MAX_SECRET_BYTES:
        raise ValidationError(
            _("A client secret may be at most %(limit)d bytes long."),
            code="too_long",
            params={"limit": client_secrets.MAX_SECRET_BYTES},
        )
    if not client_secrets.keys_configured():
        raise ValidationError(
            _(
                "This site has no key to encrypt client secrets with (ACCOUNTS_CLIENT_SECRET_KEYS). Give the secret "
                "as env:NAME, the name of an environment variable that holds it, or ask the site's "
                "administrator to configure a key."
            ),
            code="no_key",
        )


class EncryptedSecretField(models.CharField):
    """A ``CharField`` whose plain values are encrypted on their way to the database (``accounts.client_secrets``).

    The attribute holds the stored form once saved (``fernet:...`` or ``env:NAME``), so a model
    instance, a ``dumpdata`` and a database dump all carry the same ciphertext; the plain value is
    read with ``accounts.client_secrets.reveal`` only where it is sent. Both saving (``pre_save``) and
    ``QuerySet.update`` (``get_prep_value``) encrypt, so there is no path that writes it plain.
    """

    default_validators = [validate_client_secret]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 1000)
        super().__init__(*args, **kwargs)

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        stored = client_secrets.seal(getattr(model_instance, self.attname) or "")
        setattr(model_instance, self.attname, stored)
        return stored

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return client_secrets.seal(value) if isinstance(value, str) else value


class EncryptedTokenField(models.TextField):
    """A provider token, always held (in the instance and the database) as ``client_secrets.encrypt`` made it.

    The token vault (``accounts.provider_tokens``) encrypts before it assigns; this field refuses to
    write anything else, so a code path that forgot to encrypt fails loudly instead of storing a
    token in clear. Not editable: no form, and so no admin page, ever shows it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if isinstance(value, str) and value and client_secrets.form_of(value) != SecretForm.ENCRYPTED:
            raise ValueError(f"{self.name} must be stored encrypted (accounts.client_secrets.encrypt)")
        return value
