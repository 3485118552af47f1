"""``manage.py oidc_provider``: add, list, check, refresh; wrong input is one line and a non-zero exit."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Provider
from accounts.oidc import discovery

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("oidc_provider", *args, stdout=out)
    return out.getvalue()


def test_add_creates_an_enabled_provider(op):
    output = run(
        "add",
        "corp",
        "--issuer",
        op.issuer,
        "--client-id",
        "cid",
        "--client-secret",
        "sec",
        "--name",
        "Corp SSO",
        "--scopes",
        "openid email",
    )
    provider = Provider.objects.get(slug="corp")
    assert (provider.name, provider.issuer, provider.client_id, provider.reveal_client_secret()) == (
        "Corp SSO",
        op.issuer,
        "cid",
        "sec",
    )
    assert provider.scopes == "openid email" and provider.enabled
    assert "Added provider 'corp'" in output


def test_add_sets_when_to_call_userinfo(op):
    run("add", "corp", "--issuer", op.issuer, "--client-id", "cid", "--userinfo", "never")
    run("add", "plain", "--issuer", op.issuer, "--client-id", "cid")
    assert Provider.objects.get(slug="corp").userinfo == Provider.Userinfo.NEVER
    assert Provider.objects.get(slug="plain").userinfo == Provider.Userinfo.WHEN_NEEDED
    run("add", "corp", "--issuer", op.issuer, "--client-id", "cid", "--userinfo", "always", "--update")
    assert Provider.objects.get(slug="corp").userinfo == Provider.Userinfo.ALWAYS
    with pytest.raises(CommandError, match="invalid choice"):
        run("add", "odd", "--issuer", op.issuer, "--client-id", "cid", "--userinfo", "sometimes")


def test_add_refuses_an_existing_slug_without_update(op):
    run("add", "corp", "--issuer", op.issuer, "--client-id", "cid")
    with pytest.raises(CommandError, match="already exists"):
        run("add", "corp", "--issuer", op.issuer, "--client-id", "other")


def test_add_with_update_keeps_the_secret_when_none_is_given(op):
    run("add", "corp", "--issuer", op.issuer, "--client-id", "cid", "--client-secret", "sec")
    run("add", "corp", "--issuer", op.issuer, "--client-id", "cid2", "--update")
    provider = Provider.objects.get(slug="corp")
    assert (provider.client_id, provider.reveal_client_secret()) == ("cid2", "sec")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--issuer", "not a url", "--client-id", "x"], "issuer"),
        (["--issuer", "https://idp.example", "--client-id", "x", "--scopes", "email"], "openid"),
    ],
)
def test_add_rejects_invalid_input_in_one_line(args, message):
    with pytest.raises(CommandError, match=message) as info:
        run("add", "bad", *args)
    assert "\n" not in str(info.value)
    assert not Provider.objects.exists()


def test_list_shows_every_provider(provider):
    assert "test-op" in run("list") and provider.issuer in run("list")


def test_check_prints_endpoints_and_keys(op, provider):
    output = run("check", "test-op")
    assert op.issuer + "/token" in output
    assert "kid='rsa-1' kty=RSA" in output and "kid='ec-1' kty=EC" in output


def test_check_reports_problems(op, provider):
    provider.allowed_algorithms = "PS512"
    provider.save()
    op.metadata["id_token_signing_alg_values_supported"] = ["RS256"]
    output = run("check", "test-op")
    assert "problem: the provider signs ID tokens with ['RS256']" in output


def test_check_of_an_unreachable_provider_fails_with_one_line(op, provider):
    op.faults["/.well-known/openid-configuration"] = {"status": 500, "body": "x", "content_type": "text/plain"}
    with pytest.raises(CommandError, match="test-op: discovery document answered HTTP 500"):
        run("check", "test-op")


def test_check_of_an_unknown_slug_fails():
    with pytest.raises(CommandError, match="No provider 'ghost'"):
        run("check", "ghost")


def test_refresh_fetches_the_documents_again(op, provider):
    run("check", "test-op")
    run("check", "test-op")
    assert op.hits["/jwks"] == 1
    run("refresh", "test-op")
    assert op.hits["/jwks"] == 2 and op.hits["/.well-known/openid-configuration"] == 2
    assert discovery.cached_data(op.metadata["jwks_uri"]) is not None


def test_check_reports_malformed_metadata_instead_of_crashing(op, provider):
    op.metadata["code_challenge_methods_supported"] = "S256"
    assert "problem: code_challenge_methods_supported is not a list" in run("check", "test-op")


def test_wrong_input_from_the_shell_is_one_line_and_a_non_zero_exit(tmp_path):
    """What an operator sees: no traceback, one line, exit status 1."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=root, env=env, check=True, timeout=120)
    result = subprocess.run(
        [sys.executable, "manage.py", "oidc_provider", "check", "ghost"],
        cwd=root, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == "CommandError: No provider 'ghost'. See: manage.py oidc_provider list"
