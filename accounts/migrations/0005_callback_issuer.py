"""GitHub-style providers get a callback issuer of their own (RFC 9207 ``iss``), separate from their identities' issuer.

No data migration: a blank ``callback_issuer`` means "the authorization endpoint without its final
/authorize" (``accounts.oidc.github.callback_issuer``), so every GitHub provider stored before this
accepts ``iss=https://github.com/login/oauth`` as it is, and its identities keep their issuer.
The client secret's help text now names the env: prefix rule and the clearing on a move.
"""

import accounts.fields
import accounts.models
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('oidc_signin', '0004_encrypted_client_secret'),
    ]

    operations = [
        migrations.AddField(
            model_name='provider',
            name='callback_issuer',
            field=accounts.models.HttpsURLField(blank=True, help_text="GitHub-style only: the issuer its sign-in callbacks name (RFC 9207 'iss'); a callback naming any other is refused. Blank: the authorization endpoint without its final /authorize, e.g. https://github.com/login/oauth. Identities stay under the issuer above.", max_length=500, verbose_name='callback issuer'),
        ),
        migrations.AlterField(
            model_name='provider',
            name='client_secret',
            field=accounts.fields.EncryptedSecretField(blank=True, help_text='Stored encrypted, never shown again. Or env:NAME to read it from the environment variable NAME each time it is used; NAME must start with ACCOUNTS_CLIENT_SECRET_ENV_PREFIX (default OIDC_SECRET_) or be listed in ACCOUNTS_CLIENT_SECRET_ENV_ALLOWED. Changing the issuer, kind, an endpoint or the JWKS URI clears it unless a new one is entered in the same save.', max_length=1000, verbose_name='client secret'),
        ),
    ]
