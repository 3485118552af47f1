"""``oidc_provider add --jwks-uri``: an issuer known by its JWKS URL alone, for bearer access tokens."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Provider
from tests.op_double import DISCOVERY_PATH

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("oidc_provider", *args, stdout=out)
    return out.getvalue()


def add_token_issuer(op, *extra: str) -> str:
    return run("add", "m2m", "--issuer", op.issuer, "--jwks-uri", op.issuer + "/jwks", "--client-id", "proj", *extra)


def test_jwks_uri_adds_a_token_issuer(op):
    output = add_token_issuer(op)
    provider = Provider.objects.get(slug="m2m")
    assert (provider.kind, provider.issuer, provider.jwks_uri) == (
        Provider.Kind.TOKEN_ISSUER,
        op.issuer,
        op.issuer + "/jwks",
    )
    assert provider.enabled
    assert "Added provider 'm2m'" in output


def test_a_token_issuer_needs_its_jwks_uri(op):
    with pytest.raises(CommandError, match="jwks_uri: Required for a token issuer"):
        run("add", "m2m", "--kind", "token-issuer", "--issuer", op.issuer, "--client-id", "proj")


def test_the_jwks_uri_must_be_a_url(op):
    with pytest.raises(CommandError, match="jwks_uri"):
        run("add", "m2m", "--issuer", op.issuer, "--jwks-uri", "not a url", "--client-id", "proj")


def test_check_of_a_token_issuer_fetches_its_keys_and_no_discovery(op):
    op.faults[DISCOVERY_PATH] = {"status": 404, "body": "none"}
    add_token_issuer(op)
    output = run("check", "m2m")
    assert "kid='rsa-1' kty=RSA" in output
    assert op.hits[DISCOVERY_PATH] == 0


def test_refresh_of_a_token_issuer_fetches_its_keys_again(op):
    add_token_issuer(op)
    run("check", "m2m")
    run("refresh", "m2m")
    assert op.hits["/jwks"] == 2
