"""Client secrets at rest: a copy of the database, a page, a log line or the admin's history never holds one."""

from __future__ import annotations

import importlib
import io
import json
import logging
import re
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from accounts import client_secrets
from accounts.errors import ClientSecretUnavailable
from accounts.models import Provider
from tests.conftest import assert_error_page, encodings, sign_in, signed_in
from tests.test_admin import form_data

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-that-no-dump-may-hold"
ENV_NAME = "TESTS_OP_CLIENT_SECRET"


def stored_column(slug: str = "test-op") -> str:
    """The column as the database holds it: what a dump or a copied SQLite file would show."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT client_secret FROM {Provider._meta.db_table} WHERE slug = %s", [slug])
        return cursor.fetchone()[0]


def new_provider(secret: str = SECRET, slug: str = "corp") -> Provider:
    return Provider.objects.create(
        slug=slug, name="Corp", issuer="https://sso.example.com", client_id="cid", client_secret=secret
    )


def test_a_database_dump_holds_no_client_secret():
    provider = new_provider()
    column = stored_column("corp")
    assert column.startswith(client_secrets.ENCRYPTED_PREFIX)
    assert not [form for form in encodings(SECRET) if form in column]
    assert provider.client_secret == column  # the instance holds the stored form after saving, too

    out = io.StringIO()
    call_command("dumpdata", "oidc_signin.provider", stdout=out)
    dumped = out.getvalue()
    assert not [form for form in encodings(SECRET) if form in dumped]
    assert json.loads(dumped)[0]["fields"]["client_secret"] == column  # so loaddata restores it as it was


def test_an_update_query_encrypts_too():
    provider = new_provider()
    Provider.objects.filter(pk=provider.pk).update(client_secret="changed-by-update")
    assert stored_column("corp").startswith(client_secrets.ENCRYPTED_PREFIX)
    provider.refresh_from_db()
    assert provider.reveal_client_secret() == "changed-by-update"


def test_the_token_request_sends_the_decrypted_secret(client, op, provider):
    """The double refuses a wrong client secret, so a finished sign-in proves the plain one was sent."""
    assert stored_column().startswith(client_secrets.ENCRYPTED_PREFIX)
    response = sign_in(client, op, provider)
    assert response.status_code == 302, response.content[:300]
    assert signed_in(client)


def test_an_environment_reference_is_read_each_time_it_is_used(client, op, provider, monkeypatch):
    provider.client_secret = f"env:{ENV_NAME}"
    provider.full_clean()
    provider.save()
    assert stored_column() == f"env:{ENV_NAME}"  # the value itself never reaches the database

    monkeypatch.setenv(ENV_NAME, op.client_secret)
    assert sign_in(client, op, provider).status_code == 302
    assert signed_in(client)


def test_an_unset_environment_variable_is_a_clear_page_and_one_log_line(client, op, provider, monkeypatch, caplog):
    provider.client_secret = f"env:{ENV_NAME}"
    provider.save()
    monkeypatch.delenv(ENV_NAME, raising=False)
    with caplog.at_level(logging.WARNING, logger="accounts"):
        response = sign_in(client, op, provider)
    assert_error_page(
        response,
        503,
        "not set up correctly",
        code="client_secret_unavailable",
        reason=f"environment variable '{ENV_NAME}', which is not set",
    )
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("accounts")]
    assert len(lines) == 1 and ENV_NAME in lines[0]
    assert not signed_in(client)


def test_a_secret_no_configured_key_decrypts_is_a_clear_page(client, op, provider, settings):
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = [Fernet.generate_key().decode()]  # the key it was stored with is gone
    assert_error_page(
        sign_in(client, op, provider), 503, code="client_secret_unavailable", reason="cannot be decrypted"
    )


def test_an_encrypted_secret_without_any_key_is_a_clear_page(client, op, provider, settings):
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = []
    assert_error_page(
        sign_in(client, op, provider),
        503,
        code="client_secret_unavailable",
        reason="ACCOUNTS_CLIENT_SECRET_KEYS is not set",
    )


def test_a_plain_secret_is_refused_without_a_key_and_a_reference_is_not(settings):
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = []
    provider = Provider(slug="corp", name="Corp", issuer="https://sso.example.com", client_id="cid")
    provider.client_secret = SECRET
    with pytest.raises(ValidationError) as refused:
        provider.full_clean()
    assert [e.code for e in refused.value.error_dict["client_secret"]] == ["no_key"]
    with pytest.raises(client_secrets.NoSecretKey), transaction.atomic():
        provider.save()  # no path writes it in plain text, validated or not
    assert not Provider.objects.exists()

    provider.client_secret = f"env:{ENV_NAME}"
    provider.full_clean()
    provider.save()
    assert stored_column("corp") == f"env:{ENV_NAME}"


@pytest.mark.parametrize("value", ["env:", "env:1ABC", "env:WITH SPACE", "env:A-B"])
def test_a_reference_must_name_an_environment_variable(value):
    provider = Provider(
        slug="corp", name="Corp", issuer="https://sso.example.com", client_id="cid", client_secret=value
    )
    with pytest.raises(ValidationError) as refused:
        provider.full_clean()
    assert [e.code for e in refused.value.error_dict["client_secret"]] == ["environment_name"]


def test_a_secret_too_long_for_its_column_is_refused():
    provider = Provider(
        slug="corp", name="Corp", issuer="https://sso.example.com", client_id="cid", client_secret="é" * 251
    )
    with pytest.raises(ValidationError) as refused:
        provider.full_clean()
    assert [e.code for e in refused.value.error_dict["client_secret"]] == ["too_long"]
    provider.client_secret = "x" * client_secrets.MAX_SECRET_BYTES
    provider.full_clean()
    provider.save()
    assert len(stored_column("corp")) <= Provider._meta.get_field("client_secret").max_length


def test_a_new_key_in_front_keeps_old_secrets_readable_and_reencrypt_moves_them(settings):
    old, new = settings.ACCOUNTS_CLIENT_SECRET_KEYS[0], Fernet.generate_key().decode()
    provider = new_provider()
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = [new, old]
    provider.refresh_from_db()
    assert provider.reveal_client_secret() == SECRET

    out = io.StringIO()
    call_command("oidc_secrets", "reencrypt", stdout=out)
    assert "Re-encrypted 1 client secret(s)" in out.getvalue()
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = [new]  # the old key is dropped
    provider.refresh_from_db()
    assert provider.reveal_client_secret() == SECRET


def test_reencrypt_encrypts_a_plain_secret_left_from_before(settings):
    provider = new_provider()
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Provider._meta.db_table} SET client_secret = %s WHERE id = %s", [SECRET, provider.pk])
    call_command("oidc_secrets", "reencrypt", stdout=io.StringIO())
    assert stored_column("corp").startswith(client_secrets.ENCRYPTED_PREFIX)
    provider.refresh_from_db()
    assert provider.reveal_client_secret() == SECRET


def test_reencrypt_names_the_providers_no_key_decrypts(settings):
    new_provider()
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="client secret of: corp"):
        call_command("oidc_secrets", "reencrypt", stdout=io.StringIO())


def test_reencrypt_needs_a_key(settings):
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = []
    with pytest.raises(CommandError, match="ACCOUNTS_CLIENT_SECRET_KEYS is not set"):
        call_command("oidc_secrets", "reencrypt", stdout=io.StringIO())


def test_generate_key_prints_a_key_the_setting_accepts(settings):
    out = io.StringIO()
    call_command("oidc_secrets", "generate-key", stdout=out)
    settings.ACCOUNTS_CLIENT_SECRET_KEYS = [out.getvalue().strip()]
    assert new_provider().reveal_client_secret() == SECRET


def test_status_says_how_each_secret_is_stored_and_never_the_secret():
    new_provider()
    new_provider(f"env:{ENV_NAME}", slug="envy")
    out = io.StringIO()
    call_command("oidc_secrets", "status", stdout=out)
    assert out.getvalue().split("\n")[:2] == [f"corp{' ' * 17}encrypted", f"envy{' ' * 17}environment ({ENV_NAME})"]
    assert SECRET not in out.getvalue()


def test_the_migration_encrypts_stored_plain_secrets_and_reverses(settings):
    migration = importlib.import_module("accounts.migrations.0004_encrypted_client_secret")
    provider = new_provider()
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Provider._meta.db_table} SET client_secret = %s WHERE id = %s", [SECRET, provider.pk])

    def execute(sql: str, params: list) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    editor = SimpleNamespace(connection=connection, quote_name=connection.ops.quote_name, execute=execute)
    migration.encrypt_stored_secrets(apps, editor)
    assert stored_column("corp").startswith(client_secrets.ENCRYPTED_PREFIX)
    migration.decrypt_stored_secrets(apps, editor)
    assert stored_column("corp") == SECRET

    settings.ACCOUNTS_CLIENT_SECRET_KEYS = []  # no key: left as it is, for oidc_signin.W010 to report
    migration.encrypt_stored_secrets(apps, editor)
    assert stored_column("corp") == SECRET


def test_the_admin_history_and_pages_never_hold_the_secret(admin_client):
    provider = new_provider()
    page = admin_client.get(f"/admin/oidc_signin/provider/{provider.pk}/change/").content.decode()
    assert not [form for form in [*encodings(SECRET), provider.client_secret] if form in page]

    data = form_data(issuer="https://sso.example.com", client_secret="brand-new-secret", skip_check="on")
    response = admin_client.post(f"/admin/oidc_signin/provider/{provider.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    provider.refresh_from_db()
    assert provider.reveal_client_secret() == "brand-new-secret"
    history = " ".join(
        f"{entry.change_message} {entry.object_repr}" for entry in LogEntry.objects.filter(object_id=str(provider.pk))
    )
    assert re.search("client.secret", history, re.IGNORECASE)  # the history says it changed ...
    assert "brand-new-secret" not in history and SECRET not in history  # ... never what it is


def test_a_sign_in_logs_no_secret(client, op, provider, caplog):
    with caplog.at_level(logging.DEBUG):
        assert sign_in(client, op, provider).status_code == 302
    assert not [form for form in encodings(op.client_secret) if form in caplog.text]


def test_reveal_reports_without_the_value():
    with pytest.raises(ClientSecretUnavailable) as unavailable:
        client_secrets.reveal("fernet:not-a-token", owner="corp")
    assert "not-a-token" not in unavailable.value.reason
