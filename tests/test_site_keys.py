"""The site's own keys: generation, safe rotation, the published JWKS, the admin, client assertions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError
from joserfc import jwt
from joserfc.jwk import KeySet

from accounts import site_keys
from accounts.errors import SiteKeyUnavailable
from accounts.models import Provider, SiteKey
from accounts.oidc import clients

from .conftest import assert_error_page, sign_in, staff_client

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


@pytest.fixture
def site_key(db) -> SiteKey:
    return site_keys.generate()


def test_first_key_signs_at_once_later_ones_are_published_first(db):
    first = site_keys.generate()
    second = site_keys.generate(algorithm="PS256")
    assert (first.state, second.state) == ("current", "next")
    assert first.algorithm == "ES256" and second.algorithm == "PS256"


def test_private_part_is_stored_encrypted(site_key):
    stored = SiteKey.objects.values_list("private_jwk", flat=True).get()
    assert stored.startswith("fernet:") and '"d"' not in stored


def test_jwks_publishes_every_live_key_without_private_members_and_with_cache_headers(client, site_key):
    site_keys.generate(algorithm="RS256")
    response = client.get("/accounts/jwks.json")
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=300"
    keys = response.json()["keys"]
    assert [k["alg"] for k in keys] == ["ES256", "RS256"]
    for key in keys:
        assert key["use"] == "sig" and key["kid"] and not PRIVATE_MEMBERS & key.keys()
    KeySet.import_key_set(response.json())  # usable as it is


@pytest.mark.services
def test_rotate_waits_until_the_next_key_was_published_long_enough(site_key):
    rotation = site_keys.rotate()
    assert rotation.waiting is not None and rotation.current is None  # a next key was made, nothing changed hands
    assert SiteKey.objects.get(state="current") == site_key
    too_early = rotation.waiting.created_at + timedelta(seconds=899)
    assert site_keys.rotate(now=too_early).current is None
    done = site_keys.rotate(now=rotation.waiting.created_at + timedelta(seconds=900))
    assert done.current == rotation.waiting and done.retired == site_key
    assert SiteKey.objects.get(pk=site_key.pk).state == "retiring"


def test_retiring_key_stays_published_until_its_assertions_expired(client, site_key, settings):
    settings.ACCOUNTS_SITE_KEY_PUBLISH_DELAY = 0
    site_keys.rotate()
    site_keys.rotate()
    retiring = SiteKey.objects.get(pk=site_key.pk)
    assert retiring.kid in {k["kid"] for k in client.get("/accounts/jwks.json").json()["keys"]}
    assert site_keys.retire() == []  # its last assertion may still be presented
    with pytest.raises(site_keys.KeyStateError, match="may have signed assertions valid until"):
        site_keys.retire(kid=retiring.kid)
    later = retiring.retiring_since + timedelta(seconds=60 + 60)
    assert site_keys.retire(now=later) == [retiring.kid]
    assert retiring.kid not in {k["kid"] for k in client.get("/accounts/jwks.json").json()["keys"]}


def test_the_current_key_cannot_be_retired(site_key):
    with pytest.raises(site_keys.KeyStateError, match="is the current key"):
        site_keys.retire(kid=site_key.kid)


@pytest.mark.services
def test_two_current_keys_are_impossible(site_key):
    other = site_keys.generate()
    with pytest.raises(IntegrityError):
        SiteKey.objects.filter(pk=other.pk).update(state="current")


def test_admin_lists_keys_without_their_private_part(site_key, django_user_model):
    staff = staff_client(django_user_model, "view_sitekey")
    listing = staff.get("/admin/oidc_signin/sitekey/")
    assert listing.status_code == 200 and site_key.kid in listing.content.decode()
    page = staff.get(f"/admin/oidc_signin/sitekey/{site_key.pk}/change/").content.decode()
    assert site_key.kid in page and "fernet:" not in page and "private" not in page.lower()
    assert staff.get("/admin/oidc_signin/sitekey/?private_jwk__startswith=f").status_code == 400


def test_oidc_keys_command(db, capsys, settings):
    call_command("oidc_keys", "generate")
    call_command("oidc_keys", "rotate", "--alg", "PS256")
    settings.ACCOUNTS_SITE_KEY_PUBLISH_DELAY = 0
    call_command("oidc_keys", "rotate")
    call_command("oidc_keys", "status")
    out = capsys.readouterr().out
    assert "(current)" in out and "run rotate again" in out and "signs now" in out and "is retiring" in out
    assert "PS256  current" in out and "ES256  retiring" in out


# --- private_key_jwt: the assertion ------------------------------------------------------------------


def _assertion_client(provider: Provider, **metadata) -> clients.ProviderClient:
    base = {"issuer": provider.issuer, "token_endpoint": provider.issuer + "/token"}
    client = clients.OpenIDConnectClient(provider, metadata={**base, **metadata})
    client.assertion_signer = site_keys.sign
    return client


def test_client_assertion_by_rfc_7523_with_the_issuer_as_audience(site_key, provider, client):
    provider.token_auth_method = "private_key_jwt"
    oidc = _assertion_client(provider)
    raw = oidc.client_assertion()
    keys = KeySet.import_key_set(client.get("/accounts/jwks.json").json())
    token = jwt.decode(raw, keys, algorithms=["ES256"])
    claims = token.claims
    assert token.header["kid"] == site_key.kid
    assert claims["iss"] == claims["sub"] == provider.client_id
    assert claims["aud"] == provider.issuer != oidc.metadata["token_endpoint"]  # the 2025 advisory
    assert 0 < claims["exp"] - claims["iat"] <= 60
    assert jwt.decode(oidc.client_assertion(), keys).claims["jti"] != claims["jti"]


def test_client_assertion_lifetime_is_bounded_at_60_seconds(site_key, provider, settings):
    settings.ACCOUNTS_PRIVATE_KEY_JWT_LIFETIME = 3600  # refused by the check, and capped anyway
    claims = jwt.decode(_assertion_client(provider).client_assertion(), KeySet.import_key_set(site_keys.public_jwks()))
    assert claims.claims["exp"] - claims.claims["iat"] == 60


def test_client_assertion_uses_only_an_algorithm_the_provider_advertises(site_key, provider):
    oidc = _assertion_client(provider, token_endpoint_auth_signing_alg_values_supported=["PS256"])
    with pytest.raises(SiteKeyUnavailable, match="signs ES256, which the provider does not accept"):
        oidc.client_assertion()


def test_private_key_jwt_sends_no_secret(site_key, provider):
    provider.token_auth_method = "private_key_jwt"
    headers, body = _assertion_client(provider).client_authentication("https://op.example/token", {"a": "b"})
    assert "Authorization" not in headers and "client_secret" not in body
    assert "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer" in body


def test_discovery_picks_private_key_jwt_when_it_is_the_only_method(provider):
    only = _assertion_client(provider, token_endpoint_auth_methods_supported=["private_key_jwt"])
    assert only.token_endpoint_auth_method() == "private_key_jwt"
    both = _assertion_client(provider, token_endpoint_auth_methods_supported=["private_key_jwt", "client_secret_post"])
    assert both.token_endpoint_auth_method() == "client_secret_post"


def test_dpop_sign_in_refuses_a_bearer_token(client, op, provider):
    """A provider that answers a DPoP token request with a bearer token gave out a stealable token."""
    provider.dpop = True
    provider.save()
    assert_error_page(
        sign_in(client, op, provider), 502, code="provider_misconfigured",
        reason="token response lacks a dpop access_token (token_type must be dpop)",
    )  # fmt: skip
    sent = [headers for _method, path, headers, _body in op.requests_log if path == "/token"]
    assert sent and "DPoP" in sent[-1]


def test_jwks_of_a_busy_database_is_a_503(client, db, monkeypatch):
    from django.db import OperationalError

    def busy():
        raise OperationalError("database is locked")

    monkeypatch.setattr(site_keys, "public_jwks", busy)
    response = client.get("/accounts/jwks.json")
    assert response.status_code == 503 and response["Retry-After"] == "5"


def test_check_reports_private_key_jwt_without_a_current_key(provider):
    from accounts.checks import check_site_keys

    Provider.objects.filter(pk=provider.pk).update(token_auth_method="private_key_jwt")
    assert [m.id for m in check_site_keys(None, databases=["default"])] == ["oidc_signin.E040"]
    site_keys.generate()
    assert check_site_keys(None, databases=["default"]) == []
