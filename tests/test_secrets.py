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
from django.test import Client

from accounts import client_secrets
from accounts.errors import ClientSecretUnavailable
from accounts.models import Provider
from tests.conftest import assert_error_page, encodings, sign_in, signed_in
from tests.test_admin import form_data

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-that-no-dump-may-hold"
ENV_NAME = "OIDC_SECRET_TESTS_OP"  # under the default ACCOUNTS_CLIENT_SECRET_ENV_PREFIX


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


# --- provider editing grants no more than provider editing: env: names -------------------------------

#: Variables of the site's own that a provider editor must never be able to send to a server of theirs.
SITE_SECRETS = ["DJANGO_SECRET_KEY", "ACCOUNTS_CLIENT_SECRET_KEYS", "DATABASE_URL", "OIDC_SECRET_", "oidc_secret_x"]


@pytest.mark.parametrize("name", SITE_SECRETS)
def test_full_clean_refuses_an_environment_reference_outside_the_prefix(name):
    provider = Provider(slug="corp", name="Corp", issuer="https://sso.example.com", client_id="cid")
    provider.client_secret = f"env:{name}"
    with pytest.raises(ValidationError) as refused:
        provider.full_clean()
    [error] = refused.value.error_dict["client_secret"]
    assert error.code == "environment_name_not_allowed"
    assert "starts with OIDC_SECRET_" in " ".join(refused.value.message_dict["client_secret"])


def test_the_prefix_and_the_allow_list_come_from_settings(settings):
    provider = Provider(slug="corp", name="Corp", issuer="https://sso.example.com", client_id="cid")
    provider.client_secret = "env:CORP_SSO_SECRET"
    with pytest.raises(ValidationError):
        provider.full_clean()
    settings.ACCOUNTS_CLIENT_SECRET_ENV_ALLOWED = ["CORP_SSO_SECRET"]
    provider.full_clean()
    settings.ACCOUNTS_CLIENT_SECRET_ENV_ALLOWED = []
    settings.ACCOUNTS_CLIENT_SECRET_ENV_PREFIX = "CORP_"
    provider.full_clean()
    provider.client_secret = f"env:{ENV_NAME}"  # the default prefix no longer applies
    with pytest.raises(ValidationError) as refused:
        provider.full_clean()
    assert "starts with CORP_" in refused.value.message_dict["client_secret"][0]


def test_the_admin_refuses_an_environment_reference_outside_the_prefix_with_a_form_error(admin_client, op):
    provider = new_provider()
    data = form_data(issuer="https://sso.example.com", client_secret="env:DJANGO_SECRET_KEY", skip_check="on")
    response = admin_client.post(f"/admin/oidc_signin/provider/{provider.pk}/change/", data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors.as_data()["client_secret"]
    assert [e.code for e in errors] == ["environment_name_not_allowed"]
    assert "env:DJANGO_SECRET_KEY is not allowed" in response.content.decode()
    provider.refresh_from_db()
    assert provider.reveal_client_secret() == SECRET


def test_the_command_refuses_an_environment_reference_outside_the_prefix(op):
    with pytest.raises(CommandError, match="client_secret: env:DATABASE_URL is not allowed") as refused:
        call_command(
            "oidc_provider", "add", "corp", "--issuer", op.issuer, "--client-id", "cid",
            "--client-secret", "env:DATABASE_URL", stdout=io.StringIO(),
        )  # fmt: skip
    assert "\n" not in str(refused.value) and not Provider.objects.exists()


def test_a_stored_reference_outside_the_prefix_is_never_read_nor_sent(client, op, provider, monkeypatch, caplog):
    """A row stored before the rule (or written past validation) still cannot send the variable anywhere."""
    monkeypatch.setenv("SITE_DATABASE_URL", "postgres://site:hunter2@db/site")
    Provider.objects.filter(pk=provider.pk).update(client_secret="env:SITE_DATABASE_URL")  # no validation
    provider.refresh_from_db()
    with caplog.at_level(logging.DEBUG):
        response = sign_in(client, op, provider)
    assert_error_page(
        response, 503, code="client_secret_unavailable",
        reason="names the environment variable 'SITE_DATABASE_URL', which neither ACCOUNTS_CLIENT_SECRET_ENV_PREFIX",
    )  # fmt: skip
    assert "/token" not in op.hits and "hunter2" not in caplog.text
    assert not signed_in(client)


def test_a_stored_reference_outside_the_prefix_is_a_system_check_error(db):
    from accounts.checks import check_provider_secrets

    new_provider()
    Provider.objects.filter(slug="corp").update(client_secret="env:DJANGO_SECRET_KEY")
    errors = [m for m in check_provider_secrets(None, databases=["default"]) if m.id == "oidc_signin.E009"]
    assert len(errors) == 1 and "corp (env:DJANGO_SECRET_KEY)" in errors[0].msg


# --- provider editing grants no more than provider editing: a moved provider loses its secret ---------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("issuer", "https://attacker.example"),
        ("kind", "github"),
        ("authorization_endpoint", "https://attacker.example/authorize"),
        ("token_endpoint", "https://attacker.example/token"),
        ("userinfo_endpoint", "https://attacker.example/user"),
        ("emails_endpoint", "https://attacker.example/emails"),
        ("jwks_uri", "https://attacker.example/jwks"),
    ],
)
@pytest.mark.parametrize("secret", [SECRET, f"env:{ENV_NAME}"], ids=["encrypted", "environment"])
def test_moving_a_provider_clears_its_stored_secret(field, value, secret):
    provider = new_provider(secret)
    provider = Provider.objects.get(pk=provider.pk)
    setattr(provider, field, value)
    provider.save()
    assert provider.client_secret_cleared and provider.secret_binding_changes_at_save == (field,)
    assert stored_column("corp") == ""


def test_a_refreshed_provider_is_not_taken_for_a_moved_one():
    """Moved elsewhere (another process, a secret entered with it): the refreshed values are the saved ones."""
    provider = Provider.objects.get(pk=new_provider(f"env:{ENV_NAME}").pk)
    moved = Provider.objects.get(pk=provider.pk)
    moved.issuer = "https://sso2.example.com"
    moved.enter_client_secret(f"env:{ENV_NAME}")  # the same reference, entered again on purpose
    moved.save()
    provider.refresh_from_db()
    provider.name = "Renamed"
    provider.save()
    assert not provider.client_secret_cleared and stored_column("corp") == f"env:{ENV_NAME}"
    provider.refresh_from_db(fields=["name"])  # a partial refresh leaves an unsaved move a move
    provider.token_endpoint = "https://attacker.example/token"
    provider.refresh_from_db(fields=["name"])
    provider.save()
    assert provider.client_secret_cleared and stored_column("corp") == ""


def test_other_changes_keep_the_stored_secret():
    provider = Provider.objects.get(pk=new_provider().pk)
    provider.name, provider.scopes, provider.callback_issuer = "Renamed", "openid email", "https://x.example/oauth"
    provider.save()
    assert not provider.client_secret_cleared and provider.reveal_client_secret() == SECRET


def test_a_secret_entered_in_the_same_save_follows_the_move():
    provider = Provider.objects.get(pk=new_provider(f"env:{ENV_NAME}").pk)
    provider.issuer = "https://sso2.example.com"
    provider.enter_client_secret(f"env:{ENV_NAME}")  # typed again, even unchanged: the admin meant it
    provider.save()
    assert not provider.client_secret_cleared and stored_column("corp") == f"env:{ENV_NAME}"
    provider.issuer = "https://sso3.example.com"  # a later move in the same instance clears again
    provider.save()
    assert provider.client_secret_cleared and stored_column("corp") == ""


def test_the_admin_clears_the_secret_of_a_moved_provider_and_says_so(admin_client, op, op2):
    """The attack: an editor points the provider at their own server and signs in once to collect the secret."""
    provider = new_provider(op.client_secret)
    data = form_data(issuer=op2.issuer, client_id=op2.client_id, skip_check="on")  # secret box blank: "keep"
    response = admin_client.post(f"/admin/oidc_signin/provider/{provider.pk}/change/", data, follow=True)
    assert response.status_code == 200
    assert "The stored client secret of Corp was cleared because its issuer changed" in response.content.decode()
    assert stored_column("corp") == ""

    sign_in(Client(), op2, Provider.objects.get(pk=provider.pk))  # the editor's own provider gets the request...
    sent = [(headers, body) for _m, path, headers, body in op2.requests_log if path.endswith("/token")]
    assert sent and not [form for form in encodings(op.client_secret) if form in repr(sent)]  # ... and no secret


def test_the_admin_keeps_a_secret_typed_in_the_same_save(admin_client, op2):
    provider = new_provider()
    data = form_data(issuer=op2.issuer, client_secret="the-new-providers-secret", skip_check="on")
    response = admin_client.post(f"/admin/oidc_signin/provider/{provider.pk}/change/", data, follow=True)
    assert "was cleared" not in response.content.decode()
    provider.refresh_from_db()
    assert provider.reveal_client_secret() == "the-new-providers-secret"


def test_the_admin_keeps_a_reference_typed_again_unchanged_in_the_same_save(admin_client, op2):
    provider = new_provider(f"env:{ENV_NAME}")
    data = form_data(issuer=op2.issuer, client_secret=f"env:{ENV_NAME}", skip_check="on")
    response = admin_client.post(f"/admin/oidc_signin/provider/{provider.pk}/change/", data, follow=True)
    assert "was cleared" not in response.content.decode()
    assert stored_column("corp") == f"env:{ENV_NAME}"


def test_the_admin_says_so_in_the_secret_fields_help():
    from accounts.admin import ProviderForm

    help_text = str(ProviderForm.base_fields["client_secret"].help_text)
    assert "clears the stored secret unless you enter it again" in help_text


def test_the_command_clears_the_secret_of_a_moved_provider_and_says_so(op, op2):
    call_command(
        "oidc_provider", "add", "corp", "--issuer", op.issuer, "--client-id", "cid", "--client-secret", "s",
        stdout=io.StringIO(),
    )  # fmt: skip
    out = io.StringIO()
    call_command("oidc_provider", "add", "corp", "--issuer", op2.issuer, "--client-id", "cid", "--update", stdout=out)
    assert "client secret was cleared because issuer changed" in out.getvalue()
    assert stored_column("corp") == ""
    out = io.StringIO()
    call_command(
        "oidc_provider", "add", "corp", "--issuer", op.issuer, "--client-id", "cid", "--update",
        "--client-secret", "s2", stdout=out,
    )  # fmt: skip
    assert "cleared" not in out.getvalue()
    assert Provider.objects.get(slug="corp").reveal_client_secret() == "s2"
