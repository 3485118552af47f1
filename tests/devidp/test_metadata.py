"""Discovery, JWKS and signing keys: what a relying party reads before any sign-in."""

from __future__ import annotations

import pytest
from authlib.oidc import discovery as oidc_discovery
from authlib.oidc import rpinitiated
from django.core.management import call_command
from joserfc.jwk import KeySet

from devidp import keys
from devidp.models import SigningKey

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.mark.django_db
def test_discovery_document_describes_the_code_flow(client):
    response = client.get("/devidp/.well-known/openid-configuration")

    assert response.status_code == 200
    assert "max-age=300" in response["Cache-Control"]
    data = response.json()
    assert data["issuer"] == "http://localhost/devidp"
    for name, path in {
        "authorization_endpoint": "authorize",
        "token_endpoint": "token",
        "userinfo_endpoint": "userinfo",
        "jwks_uri": "jwks",
        "end_session_endpoint": "logout",
    }.items():
        assert data[name] == f"http://localhost/devidp/{path}"
    assert data["response_types_supported"] == ["code"]
    assert data["code_challenge_methods_supported"] == ["S256"]
    assert data["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    assert set(data["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post"}
    assert data["authorization_response_iss_parameter_supported"] is False
    # Authlib's own validators agree it is well-formed OpenID Provider metadata (they insist on https).
    served_over_https = client.get("/devidp/.well-known/openid-configuration", secure=True).json()
    metadata = oidc_discovery.OpenIDProviderMetadata(served_over_https)
    metadata.validate(metadata_classes=[rpinitiated.OpenIDProviderMetadata])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("host", "secure", "issuer"),
    [
        ("127.0.0.1:8000", False, "http://127.0.0.1:8000/devidp"),
        ("localhost:8123", False, "http://localhost:8123/devidp"),
        ("idp.example.test", True, "https://idp.example.test/devidp"),
    ],
)
def test_issuer_follows_the_requested_host_and_port(client, settings, host, secure, issuer):
    settings.ALLOWED_HOSTS = ["*"]

    data = client.get("/devidp/.well-known/openid-configuration", HTTP_HOST=host, secure=secure).json()

    assert data["issuer"] == issuer
    assert data["token_endpoint"] == f"{issuer}/token"
    assert data["jwks_uri"] == f"{issuer}/jwks"


@pytest.mark.django_db
def test_jwks_publishes_one_rsa_and_one_ec_public_key(client):
    response = client.get("/devidp/jwks")  # keys are created on first use

    assert response.status_code == 200
    assert "max-age=300" in response["Cache-Control"]
    published = response.json()["keys"]
    by_type = {k["kty"]: k for k in published}
    assert sorted(by_type) == ["EC", "RSA"] and len(published) == 2
    assert by_type["RSA"]["alg"] == "RS256"
    assert (by_type["EC"]["alg"], by_type["EC"]["crv"]) == ("ES256", "P-256")
    for jwk in published:
        assert jwk["use"] == "sig" and jwk["kid"]
        assert not PRIVATE_MEMBERS & set(jwk), f"private parts published: {PRIVATE_MEMBERS & set(jwk)}"
    KeySet.import_key_set(response.json())  # parses as a key set
    assert SigningKey.objects.count() == 2


@pytest.mark.django_db
def test_first_use_creates_keys_once(client):
    first = client.get("/devidp/jwks").json()
    second = client.get("/devidp/jwks").json()

    assert first == second
    assert SigningKey.objects.count() == 2
    assert keys.ensure_keys() == []


@pytest.mark.django_db
def test_rotate_keys_replaces_the_rsa_key_and_withdraws_the_old_one(client, capsys):
    keys.ensure_keys()
    old = SigningKey.objects.get(alg="RS256", active=True)
    ec_before = SigningKey.objects.get(alg="ES256", active=True)

    call_command("devidp", "rotate-keys")

    new = SigningKey.objects.get(alg="RS256", active=True)
    assert new.kid != old.kid
    old.refresh_from_db()
    assert not old.active and old.retired_at is not None
    kids = {k["kid"] for k in client.get("/devidp/jwks").json()["keys"]}
    assert kids == {new.kid, ec_before.kid}
    assert keys.signing_keys("RS256").keys[0].kid == new.kid
    out = capsys.readouterr().out
    assert new.kid in out and old.kid in out


@pytest.mark.django_db
def test_rotate_keys_can_rotate_the_ec_key(client):
    keys.ensure_keys()
    rsa = SigningKey.objects.get(alg="RS256", active=True)
    old = SigningKey.objects.get(alg="ES256", active=True)

    call_command("devidp", "rotate-keys", "--alg", "ES256")

    kids = {k["kid"] for k in client.get("/devidp/jwks").json()["keys"]}
    assert old.kid not in kids and rsa.kid in kids and len(kids) == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/devidp/.well-known/openid-configuration", "/devidp/jwks", "/devidp/authorize", "/devidp/logout"]
)
def test_everything_is_refused_with_debug_off(client, settings, path):
    settings.DEBUG = False
    settings.DEVIDP_ALLOW_WITHOUT_DEBUG = False

    assert client.get(path).status_code == 404
    assert client.post("/devidp/token", {"grant_type": "authorization_code"}).status_code == 404
