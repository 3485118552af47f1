"""Client secrets are stored encrypted (``accounts.client_secrets``): the column widens for the ciphertext,
and every plain secret already stored is encrypted -- when ``ACCOUNTS_CLIENT_SECRET_KEYS`` names a key.

Without a key the rows are left as they are (sign-in keeps working) and ``manage.py check
--database default`` reports them (``oidc_signin.W010``) until a key is configured and
``manage.py oidc_secrets reencrypt`` has run.
"""

from django.db import migrations

import accounts.fields
from accounts import client_secrets


def encrypt_stored_secrets(apps, schema_editor):
    if not client_secrets.keys_configured():
        return
    Provider = apps.get_model("oidc_signin", "Provider")
    for pk, stored in Provider.objects.using(schema_editor.connection.alias).values_list("pk", "client_secret"):
        if client_secrets.form_of(stored) == client_secrets.SecretForm.PLAIN:
            Provider.objects.using(schema_editor.connection.alias).filter(pk=pk).update(
                client_secret=client_secrets.seal(stored)
            )


def decrypt_stored_secrets(apps, schema_editor):
    """Back to plain text, for a downgrade to a version that cannot read them (the column must fit them)."""
    Provider = apps.get_model("oidc_signin", "Provider")
    quote = schema_editor.quote_name
    # Raw SQL: the field itself would encrypt the value again on its way to the database.
    table, column, pk_column = quote(Provider._meta.db_table), quote("client_secret"), quote("id")
    update = f"UPDATE {table} SET {column} = %s WHERE {pk_column} = %s"  # noqa: S608 -- quoted names; values bound
    for pk, stored in Provider.objects.using(schema_editor.connection.alias).values_list("pk", "client_secret"):
        if client_secrets.form_of(stored) == client_secrets.SecretForm.ENCRYPTED:
            schema_editor.execute(update, [client_secrets.reveal(stored, owner=str(pk)), pk])


class Migration(migrations.Migration):
    dependencies = [
        ("oidc_signin", "0003_cache_table"),
    ]

    operations = [
        migrations.AlterField(
            model_name="provider",
            name="client_secret",
            field=accounts.fields.EncryptedSecretField(
                blank=True,
                help_text=(
                    "Stored encrypted, never shown again. Or env:NAME to read it from the environment variable "
                    "NAME each time it is used."
                ),
                max_length=1000,
                verbose_name="client secret",
            ),
        ),
        migrations.RunPython(encrypt_stored_secrets, decrypt_stored_secrets),
    ]
