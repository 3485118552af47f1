"""FAPI 2.0 against panva's certified oidc-provider: private_key_jwt, PAR, DPoP, end to end.

The provider runs as a real process on 127.0.0.1 (tests/fapi/provider.mjs); the site's JWKS is
served by the live test server, so the provider checks the site's assertions with the keys it
fetched from ``/accounts/jwks.json``. Each test signs in through the Django test client, with the
provider's redirects walked like a browser would.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts import site_keys
from accounts.adapter import get_adapter
from accounts.models import Identity, Provider, SiteKey
from accounts.oidc import clients, discovery

from .certified import PLAIN_SECRET, REDIRECT_URI, CertifiedProvider, ensure_installed, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")


@pytest.fixture(scope="session")
def _installed():
    ensure_installed()


@pytest.fixture
def certified(_installed, live_server):
    with CertifiedProvider(site_origin=live_server.url) as op:
        yield op


@pytest.fixture
def fapi(certified, transactional_db) -> Provider:
    site_keys.generate()  # the site's first key signs at once
    return Provider.objects.create(
        slug="fapi", name="FAPI", issuer=certified.issuer, client_id="fapi-site",
        token_auth_method="private_key_jwt", par=True, dpop=True, userinfo=Provider.Userinfo.ALWAYS,
        allowed_algorithms="PS256 ES256",
    )  # fmt: skip


def start(client, provider: Provider) -> str:
    response = client.get(f"/accounts/{provider.slug}/login/")
    assert response.status_code == 302, response.content
    return response["Location"]


def sign_in(client, op: CertifiedProvider, provider: Provider):
    back = op.walk(start(client, provider))
    parts = urlsplit(back)
    return client.get(parts.path, dict(parse_qsl(parts.query)))


def assert_signed_in(response, client) -> None:
    assert response.status_code == 302, response.content.decode()[:2000]
    assert "_auth_user_id" in client.session


@pytest.mark.services
def test_fapi_sign_in_with_private_key_jwt_par_and_dpop(client, certified, fapi, caplog):
    location = start(client, fapi)
    # PAR: the browser carries only the client id and the pushed request's reference.
    assert set(dict(parse_qsl(urlsplit(location).query))) == {"client_id", "request_uri"}
    back = certified.walk(location)
    parts = urlsplit(back)
    params = dict(parse_qsl(parts.query))
    assert params["iss"] == certified.issuer  # RFC 9207
    response = client.get(parts.path, params)
    assert_signed_in(response, client)
    identity = Identity.objects.get()
    # The email came from userinfo, which the provider answers only with a DPoP proof for this token.
    assert identity.email == f"{identity.subject}@example.com"


def test_dpop_bound_token_and_proofs_with_nonce_retry(certified, fapi, monkeypatch):
    sent: list[tuple[str, str, bool]] = []
    real = clients.request_json

    def spy(method, url, *, what, headers=None, **kwargs):
        sent.append((what, (headers or {}).get("Authorization", "").split(" ")[0], "DPoP" in (headers or {})))
        return real(method, url, what=what, headers=headers, **kwargs)

    monkeypatch.setattr(clients, "request_json", spy)
    client = get_adapter().get_client(fapi)
    url, pending = client.authorization_url(redirect_uri=REDIRECT_URI, next_url="/", now=0)
    params = dict(parse_qsl(urlsplit(certified.walk(url)).query))
    verified = client.complete(params, pending)
    assert verified.token_response["token_type"] == "DPoP"
    assert client.dpop_key is not None
    # The provider asked for a nonce: the token request was retried once with it; userinfo used the DPoP scheme.
    assert [w for w, _s, dp in sent if w == "token endpoint" and dp] == ["token endpoint", "token endpoint"]
    assert ("userinfo endpoint", "DPoP", True) in sent


def test_plain_code_flow_with_a_client_secret_and_par_from_discovery(client, certified, transactional_db):
    plain = Provider.objects.create(
        slug="fapi", name="Plain", issuer=certified.issuer, client_id="plain-site", client_secret=PLAIN_SECRET,
        userinfo=Provider.Userinfo.ALWAYS, allowed_algorithms="PS256 ES256",
    )  # fmt: skip
    location = start(client, plain)  # discovery says require_pushed_authorization_requests
    assert set(dict(parse_qsl(urlsplit(location).query))) == {"client_id", "request_uri"}
    assert_signed_in(sign_in(client, certified, plain), client)


def test_site_key_rotation_keeps_signing_in(client, certified, fapi):
    """The next key is in the set the provider fetched at the first sign-in, so it may sign at once after."""
    first = SiteKey.objects.get()
    site_keys.generate()  # published as next, before the provider's first fetch of the set
    assert_signed_in(sign_in(client, certified, fapi), client)
    with override_settings(ACCOUNTS_SITE_KEY_PUBLISH_DELAY=0):
        rotation = site_keys.rotate()
    assert rotation.current is not None and rotation.retired is not None and rotation.retired.pk == first.pk
    client.logout()
    assert_signed_in(sign_in(client, certified, fapi), client)  # the provider's cached set has the new key


def test_a_key_that_signs_before_the_provider_has_it_is_refused(client, certified, fapi):
    """Why rotate waits: a key made current at once is unknown to the provider's cached set."""
    assert_signed_in(sign_in(client, certified, fapi), client)
    client.logout()
    hasty = site_keys.generate()
    SiteKey.objects.filter(state="current").update(state="retiring", retiring_since=timezone.now())
    SiteKey.objects.filter(pk=hasty.pk).update(state="current")  # what rotate refuses to do
    response = client.get(f"/accounts/{fapi.slug}/login/")
    assert response.status_code == 502  # the pushed request's assertion: invalid_client


def test_provider_key_rotation_keeps_signing_in(client, certified, fapi):
    assert_signed_in(sign_in(client, certified, fapi), client)
    client.logout()
    certified.restart(new_keys=True)  # new signing keys: the site refetches on the unknown kid
    assert_signed_in(sign_in(client, certified, fapi), client)


def test_assertion_with_the_token_endpoint_as_audience_is_refused(client, certified, fapi, monkeypatch):
    real = clients.ProviderClient.client_assertion

    def token_endpoint_audience(self, *, now=None):
        sign = self.assertion_signer
        self.assertion_signer = lambda claims, algorithms: sign(
            {**claims, "aud": self.metadata["token_endpoint"]}, algorithms=algorithms
        )
        return real(self, now=now)

    monkeypatch.setattr(clients.ProviderClient, "client_assertion", token_endpoint_audience)
    response = client.get(f"/accounts/{fapi.slug}/login/")
    assert response.status_code == 502
    assert b"could not be started" in response.content  # PAR refused the assertion: a typed page


def test_par_refusal_is_a_typed_error_page(client, certified, fapi, caplog):
    Provider.objects.filter(pk=fapi.pk).update(client_id="nobody")
    response = client.get(f"/accounts/{fapi.slug}/login/")
    assert response.status_code == 502
    assert "code=par_failed" in caplog.text


def test_discovery_advertises_what_the_site_needs(certified, fapi):
    metadata = discovery.get_metadata(certified.issuer)
    assert metadata["require_pushed_authorization_requests"] is True
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["authorization_response_iss_parameter_supported"] is True


@pytest.mark.services
def test_vault_keeps_the_dpop_key_and_proves_it_on_refresh_userinfo_and_api_calls(client, certified, fapi):
    from accounts import provider_tokens
    from accounts.models import ProviderToken

    Provider.objects.filter(pk=fapi.pk).update(store_tokens=True)
    assert_signed_in(sign_in(client, certified, fapi), client)
    identity = Identity.objects.get()
    row = ProviderToken.objects.get(identity=identity)
    assert row.token_type == "DPoP" and row.dpop_key.startswith("fernet:") and '"d"' not in row.dpop_key
    old_access = provider_tokens.access_token(identity=identity)
    new_access = provider_tokens.refresh(identity, rejected=old_access)  # a proof of the grant's key
    assert new_access != old_access
    assert ProviderToken.objects.get(identity=identity).token_type == "DPoP"
    assert provider_tokens.fetch_profile(identity)["sub"] == identity.subject  # userinfo with a proof
    metadata = discovery.get_metadata(certified.issuer)
    answer = provider_tokens.api_session(identity).get(metadata["userinfo_endpoint"])
    assert answer.status_code == 200, answer.headers  # the provider API call, nonce retried once
    assert answer.json()["sub"] == identity.subject


def test_a_stolen_dpop_bound_token_is_useless_as_a_bearer_token(client, certified, fapi):
    import requests

    from accounts import provider_tokens

    Provider.objects.filter(pk=fapi.pk).update(store_tokens=True)
    assert_signed_in(sign_in(client, certified, fapi), client)
    token = provider_tokens.access_token(identity=Identity.objects.get())
    metadata = discovery.get_metadata(certified.issuer)
    stolen = requests.get(metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert stolen.status_code in (400, 401)
