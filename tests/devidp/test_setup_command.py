"""``manage.py devidp``: setup is idempotent, errors are one clear line."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import Provider
from devidp.bootstrap import normalize_base_url, site_variants
from devidp.models import Client, DevUser, SigningKey


@pytest.mark.django_db
def test_setup_registers_everything_a_sign_in_needs(capsys):
    call_command("devidp", "setup", "--base-url", "http://127.0.0.1:8000")

    client = Client.objects.get()
    assert client.client_id == "local-dev-client" and len(client.client_secret) >= 32
    assert client.redirect_uris == [
        "http://127.0.0.1:8000/accounts/local/callback/",
        "http://localhost:8000/accounts/local/callback/",
    ]
    assert client.post_logout_redirect_uris == [
        "http://127.0.0.1:8000/accounts/login/",
        "http://localhost:8000/accounts/login/",
    ]
    provider = Provider.objects.get()
    assert (provider.slug, provider.name, provider.issuer) == ("local", "Local dev IdP", "http://127.0.0.1:8000/devidp")
    assert (provider.client_id, provider.reveal_client_secret()) == (client.client_id, client.client_secret)
    assert provider.scopes == "openid email profile" and provider.enabled and provider.display_order == 0
    provider.full_clean()  # a row the admin would accept
    alice = DevUser.objects.get(email="alice@example.com")
    bob = DevUser.objects.get(email="bob@example.com")
    assert (alice.name, alice.email_verified) == ("Alice Example", True)
    assert (bob.name, bob.email_verified) == ("Bob Unverified", False)
    assert alice.sub != bob.sub and len(alice.sub) == 32
    assert sorted(SigningKey.objects.values_list("alg", flat=True)) == ["ES256", "RS256"]
    assert "Open http://127.0.0.1:8000/accounts/login/" in capsys.readouterr().out


@pytest.mark.django_db
def test_setup_twice_changes_nothing(capsys):
    call_command("devidp", "setup")
    client = Client.objects.get()
    provider = Provider.objects.get()
    snapshot = (
        list(DevUser.objects.values_list("sub", "email", "email_verified")),
        list(SigningKey.objects.values_list("kid", flat=True)),
    )
    capsys.readouterr()

    call_command("devidp", "setup")

    assert Client.objects.count() == 1 and Client.objects.get().client_secret == client.client_secret
    assert Provider.objects.count() == 1
    assert Provider.objects.get().updated_at == provider.updated_at  # not even re-saved
    assert DevUser.objects.count() == 2 and SigningKey.objects.count() == 2
    assert snapshot == (
        list(DevUser.objects.values_list("sub", "email", "email_verified")),
        list(SigningKey.objects.values_list("kid", flat=True)),
    )
    assert "nothing changed" in capsys.readouterr().out


@pytest.mark.django_db
def test_setup_on_another_port_keeps_the_secret_and_adds_the_uris():
    call_command("devidp", "setup", "--base-url", "http://127.0.0.1:8000")
    secret = Client.objects.get().client_secret

    call_command("devidp", "setup", "--base-url", "http://localhost:9000/")

    client = Client.objects.get()
    assert client.client_secret == secret
    assert "http://localhost:9000/accounts/local/callback/" in client.redirect_uris
    assert "http://127.0.0.1:9000/accounts/local/callback/" in client.redirect_uris
    assert "http://127.0.0.1:8000/accounts/local/callback/" in client.redirect_uris
    assert Provider.objects.get().issuer == "http://localhost:9000/devidp"
    assert Provider.objects.get().reveal_client_secret() == secret  # moved on purpose, with its secret


@pytest.mark.django_db
def test_setup_repairs_an_edited_provider_row():
    call_command("devidp", "setup")
    Provider.objects.filter(slug="local").update(enabled=False, client_secret="stale")

    call_command("devidp", "setup")

    provider = Provider.objects.get()
    assert provider.enabled and provider.reveal_client_secret() == Client.objects.get().client_secret


@pytest.mark.parametrize("args", [[], ["--base-url", "ftp://x"], ["--base-url", "http://127.0.0.1:8000/site"]])
@pytest.mark.django_db
def test_bad_invocations_are_one_clear_error(args):
    argv = ["devidp", "setup", *args] if args else ["devidp"]
    with pytest.raises(CommandError) as excinfo:
        call_command(*argv)
    assert "\n" not in str(excinfo.value)


def test_unknown_subcommand_is_an_error():
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("devidp", "frobnicate")


@pytest.mark.django_db
def test_commands_refuse_with_debug_off(settings):
    settings.DEBUG = False
    settings.DEVIDP_ALLOW_WITHOUT_DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("devidp", "setup")
    assert not Client.objects.exists()


def test_base_url_helpers():
    assert normalize_base_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert site_variants("http://127.0.0.1:8000") == ["http://127.0.0.1:8000", "http://localhost:8000"]
    assert site_variants("http://localhost") == ["http://localhost", "http://127.0.0.1"]
    assert site_variants("https://dev.example.test") == ["https://dev.example.test"]
