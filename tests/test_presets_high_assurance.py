"""Presets for providers that accept only private_key_jwt: login.gov and GOV.UK One Login, quirks as data."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from joserfc import jwt
from joserfc.jwk import KeySet

from accounts import site_keys
from accounts.errors import ProviderMisconfigured
from accounts.models import Provider
from accounts.oidc import clients
from accounts.presets import preset_values, quirks_for


def test_login_gov_preset_production_and_sandbox():
    values = preset_values("login-gov")
    assert values["issuer"] == "https://secure.login.gov/"
    assert values["token_auth_method"] == "private_key_jwt"
    assert values["extra_auth_params"]["acr_values"] == "urn:acr.login.gov:auth-only"
    assert values["scopes"] == "openid email"
    sandbox = preset_values("login-gov", base_url="https://idp.int.identitysandbox.gov")
    assert sandbox["issuer"] == "https://idp.int.identitysandbox.gov/"


def test_gov_uk_one_login_preset_production_and_integration():
    values = preset_values("gov-uk-one-login")
    assert values["issuer"] == "https://oidc.account.gov.uk/"
    assert values["token_auth_method"] == "private_key_jwt"
    assert values["extra_auth_params"]["vtr"] == '["Cl.Cm"]'
    assert "phone" in values["scopes"].split()
    integration = preset_values("gov-uk-one-login", base_url="https://oidc.integration.account.gov.uk")
    assert integration["issuer"] == "https://oidc.integration.account.gov.uk/"


def test_command_adds_login_gov_without_a_secret(db):
    call_command("oidc_provider", "add", "login-gov", "--preset", "login-gov", "--client-id", "urn:gov:gsa:site")
    provider = Provider.objects.get(slug="login-gov")
    assert provider.token_auth_method == "private_key_jwt" and provider.client_secret == ""


def test_command_options_token_auth_par_dpop(db):
    call_command(
        "oidc_provider", "add", "bank", "--issuer", "https://bank.example", "--client-id", "site",
        "--token-auth", "private_key_jwt", "--par", "--dpop",
    )  # fmt: skip
    provider = Provider.objects.get(slug="bank")
    assert (provider.token_auth_method, provider.par, provider.dpop) == ("private_key_jwt", True, True)


def _client(preset: str, token_endpoint: str) -> clients.ProviderClient:
    provider = Provider(slug=preset, issuer="https://secure.login.gov/", client_id="urn:gov:gsa:site", preset=preset)
    metadata = {"issuer": "https://secure.login.gov/", "token_endpoint": token_endpoint}
    client = clients.OpenIDConnectClient(provider, metadata=metadata, quirks=quirks_for(preset))
    client.assertion_signer = site_keys.sign
    return client


def test_quirk_addresses_the_assertion_to_the_documented_token_endpoint(db):
    site_keys.generate()
    endpoint = "https://secure.login.gov/api/openid_connect/token"
    raw = _client("login-gov", endpoint).client_assertion()
    assert jwt.decode(raw, KeySet.import_key_set(site_keys.public_jwks())).claims["aud"] == endpoint


@pytest.mark.parametrize("preset", ["login-gov", "gov-uk-one-login"])
def test_no_assertion_for_a_token_endpoint_on_another_origin(db, preset):
    """Audience injection: discovery naming another server's token endpoint must not get it an assertion."""
    site_keys.generate()
    with pytest.raises(ProviderMisconfigured, match="not on the issuer's origin"):
        _client(preset, "https://victim.example/token").client_assertion()
